"""Issue 16, items 7 and 2: `audit gate` recomputes each target's verdict from the evidence
the document records and refuses one that disagrees (a forged verdict or figure); gates
recorded in results.json are never dropped by a config file in the current folder
without a flag, and every change a file makes to the gates is said in one line.

The documents are the realistic ones of ``tests/reports/report_documents.py`` (three
targets: pass, fail, inconclusive, their figures computed by the harness's rule) and one
written by a real ``audit run``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.cli_runner import assert_one_line_failure, run_audit, train
from tests.reports.report_documents import build_document

PASSING, FAILING, INCONCLUSIVE = 0, 1, 2  # the targets of build_document, in its order


def _only(doc: dict, index: int) -> dict:
    """The document with one of its targets."""
    doc = copy.deepcopy(doc)
    doc["targets"] = [doc["targets"][index]]
    return doc


def _write(folder: Path, doc: dict, name: str = "results.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


@pytest.fixture()
def doc(tmp_path) -> dict:
    return build_document(tmp_path / "images")


def _gate(path: Path, *args: str, cwd: Path | None = None):
    return run_audit(["gate", str(path), *args], cwd or path.parent, in_process=True)


def test_sound_documents_are_gated_as_recorded(doc, tmp_path):
    whole = _gate(_write(tmp_path / "all", doc))
    assert whole.returncode == 1 and "error:" not in whole.stderr, whole.stderr  # fail and inconclusive targets fail
    passing = _gate(_write(tmp_path / "pass", _only(doc, PASSING)))
    assert passing.returncode == 0, passing.stderr


def _set(**fields):
    def edit(target: dict) -> None:
        target.update(fields)
    return edit


def _clear_tests(target: dict) -> None:
    target["tests"] = []


def _raise_power(target: dict) -> None:
    target["power_p_value"] = 1.0


FORGERIES = {
    # the failing target, passed by hand
    "fail made pass": (FAILING, _set(verdict="pass", passed=True), "records the verdict 'pass'"),
    "fail made pass, p_value 0": (FAILING, _set(verdict="pass", p_value=0.0), "records the verdict 'pass'"),
    "inconclusive made pass": (INCONCLUSIVE, _set(verdict="pass"), "records the verdict 'pass'"),
    # the passing target with figures that are not its evidence's
    "pass with p_value 0": (PASSING, _set(p_value=0.0), "records p_value = 0.0"),
    "pass with power_p_value 1": (PASSING, _raise_power, "records power_p_value = 1.0"),
    "pass with no tests": (PASSING, _clear_tests, "records no membership test"),
    "pass with a narrower interval": (PASSING, _set(residual_leakage_upper=0.0), "records residual_leakage_upper = 0.0"),
    "pass at another alpha": (PASSING, _set(alpha=0.5), "alpha"),
}


@pytest.mark.parametrize("case", FORGERIES, ids=list(FORGERIES))
def test_a_forged_verdict_or_figure_is_refused(doc, tmp_path, case):
    index, edit, needle = FORGERIES[case]
    forged = _only(doc, index)
    edit(forged["targets"][0])
    assert_one_line_failure(_gate(_write(tmp_path, forged)), 2, needle, "regenerate it with `audit run`")


def test_a_forged_test_p_value_is_refused(doc, tmp_path):
    """The evidence itself edited to look like a pass, the headline left as it was."""
    forged = _only(doc, FAILING)
    for test in forged["targets"][0]["tests"]:
        test["p_unlearned"] = 0.9
    # No test detects it any more, but its residual interval does not show the removal: inconclusive.
    assert_one_line_failure(_gate(_write(tmp_path, forged)), 2, "membership.p_unlearned = 0.9",
                            "which its recorded inputs do not give")


def test_incomplete_evidence_is_refused_not_a_traceback(doc, tmp_path):
    forged = _only(doc, PASSING)
    del forged["targets"][0]["tests"][0]["p_unlearned"]
    assert_one_line_failure(_gate(_write(tmp_path, forged)), 2, "targets[0].tests[0].p_unlearned is missing")


@pytest.fixture(scope="module")
def real_audit(tmp_path_factory) -> Path:
    """results.json of a real `audit run` (digits, 3 epochs, relabel, the loss test alone)."""
    work = tmp_path_factory.mktemp("real-audit")
    res = train(work, "m.pt", "--record", "none", epochs=3)
    assert res.returncode == 0, res.stderr
    run = run_audit(["run", "m.pt", "--forget", "class=3", "--method", "relabel", "--reference", "none",
                     "--attacks", "mia", "--mia", "loss", "--format", "none", "--quiet", "--out", "out"],
                    work, in_process=True)
    assert run.returncode in (0, 1), run.stderr
    return work / "out" / "results.json"


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_a_real_document_passes_the_check_and_a_forged_copy_does_not(real_audit, tmp_path):
    doc = json.loads(real_audit.read_text())
    again = _gate(real_audit)
    assert again.returncode == doc["exit_code"] and "error:" not in again.stderr, again.stderr
    [target] = doc["targets"]
    target["verdict"] = next(v for v in ("pass", "fail") if v != target["verdict"])
    assert_one_line_failure(_gate(_write(tmp_path, doc)), 2, f"records the verdict '{target['verdict']}'")


# --- item 2: a config file in the current folder never drops a recorded gate silently ------------

def _leaky_pass(doc: dict) -> tuple[dict, str]:
    """The passing target alone, with a recorded gate its residual leakage fails."""
    one = _only(doc, PASSING)
    upper = one["targets"][0]["residual_leakage_upper"]
    assert upper > 0
    gate = f"residual_leakage_upper>{upper / 2:.6g}"
    one["config"]["gates"] = [gate]
    return one, gate


def test_an_empty_fail_on_in_pyproject_keeps_the_recorded_gates(doc, tmp_path):
    one, gate = _leaky_pass(doc)
    results = _write(tmp_path / "run", one)
    assert _gate(results).returncode == 1  # the recorded gate fails the target
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\nfail_on = []\n")
    run = _gate(results, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    notes = [ln for ln in run.stderr.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "pyproject.toml" in notes[0] and gate in notes[0] and "still apply" in notes[0]
    dropped = _gate(results, "--replace-recorded-gates", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert "drops the recorded gate" in dropped.stderr and gate in dropped.stderr


def test_a_config_adding_gates_is_named_and_fail_on_adds_too(doc, tmp_path):
    one, gate = _leaky_pass(doc)
    one["config"]["gates"] = []
    results = _write(tmp_path / "run", one)
    assert _gate(results).returncode == 0
    (tmp_path / "audit.toml").write_text(f'fail_on = ["{gate}"]\n')
    run = _gate(results, cwd=tmp_path)
    assert run.returncode == 1 and "audit.toml adds the gate(s)" in run.stderr, run.stderr
    # --fail-on adds to the recorded gates; it no longer replaces them.
    one["config"]["gates"] = [gate]
    results = _write(tmp_path / "run2", one)
    assert _gate(results, "--fail-on", "residual_leakage>100").returncode == 1


def test_a_config_cannot_loosen_the_recorded_inconclusive_policy(doc, tmp_path):
    results = _write(tmp_path / "run", _only(doc, INCONCLUSIVE))
    assert _gate(results).returncode == 1
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\ninconclusive = "pass"\n')
    run = _gate(results, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "sets inconclusive = 'pass', which a file not named with --config may not" in run.stderr
    assert "pyproject.toml" in run.stderr
    assert _gate(results, "--inconclusive", "pass", cwd=tmp_path).returncode == 0  # the explicit flag does
    # A config may tighten it, and says so.
    loose = _only(doc, INCONCLUSIVE)
    loose["config"]["inconclusive"] = "pass"
    results = _write(tmp_path / "loose", loose)
    # An unsigned document's own "pass" is not taken (anyone can edit it): the flag must say it.
    unsigned = _gate(results)
    assert unsigned.returncode == 1 and "which an unsigned document cannot vouch for" in unsigned.stderr
    assert _gate(results, "--inconclusive", "pass").returncode == 0
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\ninconclusive = "fail"\n')
    tightened = _gate(results, cwd=tmp_path)
    assert tightened.returncode == 1 and "cannot vouch for" in tightened.stderr
