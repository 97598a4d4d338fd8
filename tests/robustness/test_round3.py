"""Issue 23 (hardening, round 3): a gate that recomputes rather than trusts, policy only from
what was named, bounds before allocation, and escaped output. In process and cheap: the
documents are those of ``tests/reports/report_documents.py`` (their membership tests computed
by the run's own code from drawn statistics), the refusals happen before any work."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.cli_runner import assert_one_line_failure, run_audit
from tests.reports.report_documents import build_document

PASSING, FAILING, INCONCLUSIVE = 0, 1, 2
KEY = "AUDIT_TEST_SIGNING_KEY"


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> dict:
    return build_document(tmp_path_factory.mktemp("round3") / "images")


def _only(doc: dict, index: int) -> dict:
    out = copy.deepcopy(doc)
    out["targets"] = [out["targets"][index]]
    return out


def _write(folder: Path, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder / "results.json"


def _cli(args: list, cwd: Path, env: dict | None = None):
    return run_audit([str(a) for a in args], cwd, env=env, in_process=True)


def _redecide(target: dict, alpha: float = 0.05) -> None:
    """The headline figures recomputed from the (edited) tests with the run's own rule, as a forger would."""
    from audit.harness import record_verdict
    from audit.scoring import decide
    from reports.document import Target

    typed = Target.model_validate(target)
    record_verdict(typed, decide(typed.tests, alpha))
    typed.passed = typed.verdict == "pass"
    typed.gates = [g.model_copy(update={"passed": typed.passed}) for g in typed.gates]
    target.clear()
    target.update(json.loads(typed.model_dump_json(by_alias=True)))


def test_an_invented_test_with_recomputed_headline_is_refused(doc, tmp_path):
    forged = _only(doc, FAILING)
    target = forged["targets"][0]
    target["method"]["name"] = "none"
    target["tests"] = [{"name": "invented", "p_original": 0, "p_unlearned": 1, "residual": 0,
                        "residual_ci95": [0, 0.01]}]
    _redecide(target)
    assert target["verdict"] == "pass"  # the forgery is self-consistent by the verdict rule alone
    run = _cli(["gate", _write(tmp_path, forged)], tmp_path)
    assert_one_line_failure(run, 2, "records a test named 'invented'", "regenerate it with `audit run`")


def test_another_targets_passing_tests_are_refused(doc, tmp_path):
    forged = _only(doc, FAILING)
    forged["targets"][0]["tests"] = [t for t in doc["targets"][PASSING]["tests"] if t["name"] == "membership"]
    _redecide(forged["targets"][0])
    run = _cli(["gate", _write(tmp_path, forged)], tmp_path)
    assert_one_line_failure(run, 2, "forgets 50 examples but its membership test has 137")


def test_a_pass_by_the_no_op_is_refused(doc, tmp_path):
    forged = _only(doc, PASSING)
    forged["targets"][0]["method"]["name"] = "none"
    run = _cli(["gate", _write(tmp_path, forged)], tmp_path)
    assert_one_line_failure(run, 2, "no-op control (--method none)")


def test_an_edited_statistic_is_refused_though_the_figures_were_left(doc, tmp_path):
    import base64

    import numpy as np

    forged = _only(doc, FAILING)
    inputs = forged["targets"][0]["tests"][0]["inputs"]
    values = np.frombuffer(base64.b64decode(inputs["statistic"]["unlearned"]), "<f4").copy()
    values[: inputs["n_forget"]] = 0.0  # the forget set made to look unseen
    inputs["statistic"]["unlearned"] = base64.b64encode(values.tobytes()).decode()
    run = _cli(["gate", _write(tmp_path, forged)], tmp_path)
    assert_one_line_failure(run, 2, "its per-example figures are not those of its membership test's statistics")
    forged["targets"][0]["per_example"] = None  # the picture dropped too: the test itself disagrees
    run = _cli(["gate", _write(tmp_path / "again", forged)], tmp_path)
    assert_one_line_failure(run, 2, "which its recorded inputs do not give")


def test_a_pool_test_without_the_examples_every_pool_model_saw_is_taken(doc, tmp_path):
    """With fewer reference models than the pool has parts, the forget examples that every pool model trained on
    are left out of the membership test (audit.evidence.membership_test), so a real run's document tests fewer
    examples than its request holds (a run with --reference-models 2 was refused by gate, exit 2)."""
    import numpy as np

    from audit.evidence import per_example_picture
    from audit.recompute import recorded_membership_evidence
    from reports.document import plain
    from tests.reports.report_documents import MEMBERSHIP_LABEL, forget_ids

    pooled = _only(doc, FAILING)
    target = pooled["targets"][0]
    n_tested, n_held_out = 40, 120  # of the request's 50
    rng = np.random.default_rng(0)
    is_forget = np.r_[np.ones(n_tested, dtype=bool), np.zeros(n_held_out, dtype=bool)]
    stats = {role: np.r_[rng.normal(effect, 1.0, n_tested), rng.normal(0.0, 1.0, n_held_out)]
             for role, effect in {"original": 1.0, "unlearned": 0.8, "pool": 0.0}.items()}
    evidence, rounded = recorded_membership_evidence(stats, is_forget, MEMBERSHIP_LABEL, ["pool"], ["pool"], "pool",
                                                     0, 4000, 1000)
    target.update(tests=[plain(evidence.model_dump(by_alias=True))], retrains=[],
                  per_example=per_example_picture(rounded, is_forget, ["pool"],
                                                  np.r_[forget_ids(50, 0)[:n_tested], 1348 + np.arange(n_held_out)]))
    target["accuracy"]["reference"] = None
    _redecide(target)
    run = _cli(["gate", _write(tmp_path, pooled)], tmp_path)
    assert run.returncode == 1 and "error:" not in run.stderr, run.stderr  # taken: the target fails on its evidence
    target["forget"]["n"] = n_tested - 1  # more examples tested than the request holds: refused
    assert_one_line_failure(_cli(["gate", _write(tmp_path / "more", pooled)], tmp_path), 2,
                            "it forgets 39 examples but its membership test has 40")


def test_a_forged_document_is_not_rendered_by_audit_report(doc, tmp_path):
    forged = _only(doc, FAILING)
    forged["targets"][0].update(verdict="pass", passed=True)
    path = _write(tmp_path, forged)
    run = _cli(["report", path, "--format", "html,junit"], tmp_path)
    assert_one_line_failure(run, 2, "records the verdict 'pass'")
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "junit.xml").exists()


def test_a_signed_document_verifies_and_an_edited_one_does_not(doc, tmp_path, monkeypatch):
    from audit.signing import sign
    from reports import validate

    monkeypatch.setenv(KEY, "k" * 32)
    typed = validate(_only(doc, FAILING))
    sign(typed, KEY)
    path = tmp_path / "results.json"
    path.write_text(typed.to_json())
    run = _cli(["gate", path, "--sign-key-env", KEY], tmp_path)
    assert run.returncode == 1 and "error:" not in run.stderr, run.stderr  # the failing target fails, no refusal
    edited = json.loads(path.read_text())
    edited["config"]["inconclusive"] = "pass"
    run = _cli(["gate", _write(tmp_path / "edited", edited), "--sign-key-env", KEY], tmp_path)
    assert_one_line_failure(run, 2, "its signature does not verify")
    unsigned = _cli(["gate", _write(tmp_path / "unsigned", _only(doc, FAILING)), "--sign-key-env", KEY], tmp_path)
    assert_one_line_failure(unsigned, 2, "carries no signature")
    monkeypatch.delenv(KEY)
    assert_one_line_failure(_cli(["gate", path, "--sign-key-env", KEY], tmp_path), 2, "is not set or empty")


def test_a_document_signed_in_the_earlier_canonical_form_verifies_and_cannot_be_edited(doc, tmp_path, monkeypatch):
    """Signatures written before ``signature.canonical`` existed covered the numbers as the file writes them
    (``2.0``), not as integers; they verify from the file's text, and an edit still breaks them."""
    import hashlib
    import hmac
    import re

    from reports import validate
    from reports.document import Signature, plain

    monkeypatch.setenv(KEY, "k" * 32)
    typed = validate(_only(doc, FAILING))
    # The canonical form as `audit run --sign-key-env` wrote it then (audit/signing.py at 57429e5).
    earlier = json.dumps(plain(typed.model_dump(by_alias=True, exclude={"signature"})), sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    typed.signature = Signature(key_env=KEY, value=hmac.new(b"k" * 32, earlier, hashlib.sha256).hexdigest())
    written = json.loads(typed.to_json())
    del written["signature"]["canonical"]  # the field did not exist
    text = json.dumps(written, indent=1)
    assert re.search(r": -?\d+\.0[,\n]", text), "the document must hold integral floats for this test to mean anything"
    path = tmp_path / "results.json"
    path.write_text(text)
    run = _cli(["gate", path, "--sign-key-env", KEY], tmp_path)
    assert run.returncode == 1 and "error:" not in run.stderr, run.stderr  # verified; the failing target fails
    edited = copy.deepcopy(written)
    edited["targets"][0]["verdict_reason"] = "edited"
    assert_one_line_failure(_cli(["gate", _write(tmp_path / "edited", edited), "--sign-key-env", KEY], tmp_path), 2,
                            "its signature does not verify")
    # The same signature claiming the current form (integral numbers as integers) covers other bytes.
    relabelled = copy.deepcopy(written)
    relabelled["signature"]["canonical"] = 2
    assert_one_line_failure(_cli(["gate", _write(tmp_path / "relabelled", relabelled), "--sign-key-env", KEY],
                                 tmp_path), 2, "its signature does not verify")


def test_a_current_signature_names_its_form_and_relabelling_it_does_not_verify(doc, tmp_path, monkeypatch):
    from audit.signing import sign
    from reports import validate

    monkeypatch.setenv(KEY, "k" * 32)
    typed = validate(_only(doc, FAILING))
    sign(typed, KEY)
    written = json.loads(typed.to_json())
    assert written["signature"]["canonical"] == 2
    run = _cli(["report", _write(tmp_path / "signed", written), "--format", "junit", "--sign-key-env", KEY], tmp_path)
    assert run.returncode == 0 and (tmp_path / "signed" / "junit.xml").exists(), run.stderr
    written["signature"]["canonical"] = 1
    run = _cli(["report", _write(tmp_path / "relabelled", written), "--format", "junit", "--sign-key-env", KEY],
               tmp_path)
    assert_one_line_failure(run, 2, "its signature does not verify")
    assert not (tmp_path / "relabelled" / "junit.xml").exists()


def test_an_unnamed_config_cannot_loosen_the_gate_even_with_replace(doc, tmp_path):
    results = _write(tmp_path / "run", _only(doc, INCONCLUSIVE))
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\ninconclusive = "pass"\n')
    run = _cli(["gate", results, "--replace-recorded-gates", "--fail-on", "p_value<0", "--quiet"], tmp_path)
    assert run.returncode == 1, run.stderr
    assert "a file not named with --config may not" in run.stderr


def test_an_unnamed_config_cannot_loosen_a_run_and_says_so_under_quiet(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\ninconclusive = "pass"\nmax_residual = 1.0\n'
                                             'alpha = 1e-300\nretrains = 2\n')
    run = _cli(["run", "missing.pt", "--forget", "class=3", "--quiet"], tmp_path)
    notes = [line for line in run.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "retrains" in notes[0], run.stderr
    for key in ("inconclusive", "max_residual", "alpha"):
        assert f"{key} (a file not named with --config may not loosen the verdict" in notes[0]


@pytest.mark.parametrize("flag, value, expected", [
    ("--cpus-per-model", "1e9", "--cpus-per-model must be a number above 0 and at most 1024"),
    ("--cpus-per-model", "inf", "--cpus-per-model must be a number above 0 and at most 1024"),
    ("--reference-models", "1000000000", "--reference-models must be a whole number from 1 to 1024"),
    ("--retrains", "100000000", "--retrains must be a whole number from 1 to 100"),
])
def test_sizes_are_bounded_before_any_work(tmp_path, flag, value, expected):
    run = _cli(["run", "missing.pt", "--forget", "class=3", flag, value], tmp_path)
    assert_one_line_failure(run, 2, expected)


@pytest.mark.parametrize("value, expected", [
    ("0.05", "--alpha must be a number strictly between 0 and 1 (a significance level such as 0.05), not '0.05' (str)"),
])
def test_the_python_api_says_what_type_was_wrong(tmp_path, value, expected):
    import audit
    from audit.errors import InputError

    with pytest.raises(InputError) as info:
        audit.run(tmp_path / "missing.pt", forget="class=3", alpha=value, out=None)
    assert expected in str(info.value)
    with pytest.raises(InputError, match="--retrains must be a whole number from 1 to 100 .*not '3' \\(str\\)"):
        audit.run(tmp_path / "missing.pt", forget="class=3", retrains="3", out=None)


def test_names_and_paths_cannot_inject_a_ci_command_or_reverse_text(doc, tmp_path):
    from reports import render_junit, validate
    from reports.html import render_html

    hostile = "samples=x\n::error::INJ\u202eevil\ud800\ufffe"
    one = _only(doc, FAILING)
    one["targets"][0]["name"] = hostile
    run = _cli(["gate", _write(tmp_path, one)], tmp_path)
    assert run.returncode == 1, run.stderr
    assert not any(line.startswith("::") for line in run.stderr.splitlines())
    assert "\u202e" not in run.stderr and "\\u202e" in run.stderr
    typed = validate(one)
    import xml.etree.ElementTree as ET

    ET.fromstring(render_junit(typed))  # well-formed with U+FFFE and a lone surrogate in a name
    page = render_html(typed, tmp_path)
    title = page[page.index("<title>"):page.index("</title>")]
    assert "\u202e" not in title and "\\u202e" in title


def test_a_deeply_nested_config_and_a_folder_as_config_are_bad_input(tmp_path):
    (tmp_path / "deep.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_one_line_failure(_cli(["gate", "r.json", "--config", "deep.toml"], tmp_path), 2, "nested too deeply")
    (tmp_path / "folder.toml").mkdir()
    assert_one_line_failure(_cli(["gate", "r.json", "--config", "folder.toml"], tmp_path), 2,
                            "is not a regular file")
