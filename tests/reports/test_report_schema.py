"""The results document is checked before anything is rendered: one clear line per problem."""

from __future__ import annotations

import re

import copy
import json

import pytest
from tests.reports.report_documents import GATE, build_document, step_failed

from reports import ReportError, load_results, validate


def test_a_realistic_document_is_valid(results_doc):
    doc, _ = results_doc
    assert doc["schema_version"] == 2
    assert [t["verdict"] for t in doc["targets"]] == ["pass", "fail", "inconclusive"]
    typed = validate(doc)
    assert [t.verdict for t in typed.targets] == ["pass", "fail", "inconclusive"]
    assert typed.targets[0].membership[0].unlearned.tpr_at_01pct_fpr == \
        doc["targets"][0]["membership"][0]["unlearned"]["tpr_at_0.1pct_fpr"]


@pytest.mark.parametrize("inconclusive", ["fail", "pass"])
def test_the_fixture_gates_are_those_the_harness_writes(tmp_path, inconclusive):
    """The documents here are only worth testing against if `audit run` could have written them."""
    from audit.gates import gate_target, parse_gates, verdict
    from reports.document import Target

    doc = build_document(tmp_path, inconclusive=inconclusive)
    again = [Target.model_validate(copy.deepcopy(target)) for target in doc["targets"]]
    for typed, target in zip(again, doc["targets"]):
        gate_target(typed, parse_gates(doc["config"]["gates"]), inconclusive)
        assert ([g.model_dump() for g in typed.gates], typed.passed) == (target["gates"], target["passed"]), \
            target["name"]
    assert verdict(again) == (doc["verdict"], doc["exit_code"])
    assert doc["targets"][2]["passed"] is (inconclusive == "pass")


def test_the_fixture_verdicts_are_those_the_harness_decides(results_doc):
    from types import SimpleNamespace

    from audit.scoring import decide

    doc, _ = results_doc
    for target in doc["targets"]:
        tests = [SimpleNamespace(**{"residual_upper": None, **t, "residual_ci95": tuple(t["residual_ci95"])})
                 for t in target["tests"]]
        found = decide(tests, doc["config"]["alpha"]).to_dict()
        found["verdict_reason"] = found.pop("reason")
        found["residual_leakage_ci95"] = list(found["residual_leakage_ci95"] or []) or None
        found["memorised_auc_ci95"] = list(found["memorised_auc_ci95"] or []) or None
        assert {k: target[k] for k in found} == found, target["name"]
        for ours, theirs in zip(target["tests"], tests):
            assert (ours["p_original_holm"], ours["p_unlearned_holm"]) == (theirs.p_original_holm,
                                                                          theirs.p_unlearned_holm)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(schema_version=3), "schema_version 3 is not supported; this amnesia-audit reads version 2"),
    (lambda d: d.update(schema_version="2"), "schema_version \"2\" is not supported"),
    (lambda d: d.update(schema_version=True), "schema_version True is not supported"),
    (lambda d: d.update(schema="something/else"), "not an amnesia-audit results document"),
    (lambda d: d.update(verdict="inconclusive"), "verdict \"inconclusive\" is not one of pass, fail, error"),
    (lambda d: d.pop("targets"), "targets is missing"),
    (lambda d: d["targets"][1]["gates"][0].update(passed="no"), "targets[1].gates[0].passed should be true or false"),
    (lambda d: d["targets"][2].pop("verdict"), "targets[2].verdict is missing"),
    (lambda d: d["targets"][2].update(verdict="unsure"),
     "targets[2].verdict \"unsure\" is not one of pass, fail, not_memorised, inconclusive, error"),
    (lambda d: d["targets"][2].update(verdict_reason=["no power"]), "targets[2].verdict_reason should be text"),
    (lambda d: d["targets"][1].update(residual_leakage_ci95=[0.38]),
     "targets[1].residual_leakage_ci95 should be a pair of numbers [low, high] (high null: unbounded) or null"),
    (lambda d: d["targets"][0]["tests"][1].update(p_original_holm="tiny"),
     "targets[0].tests[1].p_original_holm should be a finite number or null, not text"),
    (lambda d: d["targets"][0]["tests"][2].pop("name"), "targets[0].tests[2].name is missing"),
    (lambda d: d["targets"][0]["per_example"]["retrained"].append("n/a"),
     "targets[0].per_example.retrained[411] should be a finite number or null, not text"),
    (lambda d: d["targets"][0]["membership"][0]["original"].update(auc="high"),
     "targets[0].membership[0].original.auc should be a finite number or null, not text"),
    (lambda d: d["targets"][0]["membership"][1]["unlearned"]["roc"].update(tpr=[0.1]),
     "targets[0].membership[1].unlearned.roc should be two lists"),
    (lambda d: d["targets"][0]["inversion"]["original"].update(images=[3]), "images[0] should be a path"),
    (lambda d: d["targets"].append("class=4"), "targets[3] should be an object, not text"),
])
def test_invalid_documents_name_the_field(results_doc, mutate, expected):
    doc, _ = results_doc
    mutate(doc)
    with pytest.raises(ReportError) as info:
        validate(doc, source="results.json")
    message = str(info.value)
    assert expected in message
    assert message.startswith("results.json: ") and "\n" not in message


@pytest.mark.parametrize("target, field, value, expected", [
    (1, "residual_leakage", -5, "targets[1].residual_leakage is -5, outside its range [0, infinity]"),
    (0, "p_value", 2, "targets[0].p_value is 2, outside its range [0, 1]"),
    (0, "power_p_value", -0.01, "targets[0].power_p_value is -0.01, outside its range [0, 1]"),
    (1, "residual_leakage_upper", -0.5, "targets[1].residual_leakage_upper is -0.5, outside its range [0, infinity]"),
    (2, "alpha", 1.5, "targets[2].alpha is 1.5, outside its range [0, 1]"),
])
def test_out_of_range_numbers_are_refused_with_the_field_named(tmp_path, results_doc, target, field, value, expected):
    doc, _ = results_doc
    doc["targets"][target][field] = value
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError) as info:
        load_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_the_documented_ranges_are_not_narrower_than_they_should_be(results_doc):
    """residual_leakage may exceed 1 (more leakage than before unlearning); over-forgetting is signed."""
    doc, _ = results_doc
    doc["targets"][1].update(residual_leakage=1.7, residual_leakage_ci95=[1.2, 2.4], residual_leakage_upper=2.4,
                             overforgetting=-0.6, p_value=0.0, power_p_value=1.0)
    doc["targets"][0].update(overforgetting=0.8)
    assert validate(doc).targets[1].residual_leakage == 1.7


def test_report_error_is_a_value_error():
    assert issubclass(ReportError, ValueError)


def test_a_version_1_document_gets_one_line_saying_to_rerun_the_audit(tmp_path, results_doc):
    doc, _ = results_doc
    # A version 1 document: no verdict per target, the v1 residual fields. The version is the whole answer:
    # no complaint about a missing field may come first.
    doc["schema_version"] = 1
    for target in doc["targets"]:
        for field in ("verdict", "verdict_reason", "advice", "alpha", "power_p_value", "p_value", "tests",
                      "per_example", "retrains"):
            target.pop(field)
        target.update(residual_leakage_basis="reference", residual_components={"mia:lira": 0.04})
        target["gates"] = target["gates"][1:]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError) as info:
        load_results(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: schema_version 1 ")
    assert "schema_version 1 was written by an earlier amnesia-audit" in message
    assert "rerun `audit run`" in message
    assert "missing" not in message and "targets[" not in message


@pytest.mark.parametrize("text, expected", [
    ('{"schema": ', "not valid JSON (Expecting value at line 1"),
    ('[1, 2]', "expected a JSON object at the top level, not a list"),
    ('{"schema": "amnesia-audit/results", "schema_version": 2, "x": NaN}', "NaN is not allowed"),
    ('{"schema": "amnesia-audit/results", "schema_version": 2, "x": -Infinity}', "-Infinity is not allowed"),
])
def test_load_results_rejects_malformed_files(tmp_path, text, expected):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ReportError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        load_results(path)


def test_load_results_reports_a_missing_file(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        load_results(tmp_path / "nope.json")


def test_load_results_round_trips(tmp_path, results_doc):
    doc, _ = results_doc
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    from reports.document import plain

    assert plain(load_results(path).model_dump(by_alias=True, exclude_unset=True)) == doc


def test_a_target_whose_step_failed_is_valid_with_empty_fields(results_doc):
    doc, _ = results_doc
    step_failed(doc["targets"][0], "RuntimeError: out of memory")
    assert doc["targets"][0]["gates"][1]["expr"] == GATE
    validate(doc)


def test_an_unbounded_residual_interval_as_the_harness_writes_it_is_valid(results_doc):
    from reports import render_html
    from reports.reading import validate as to_document

    doc, folder = results_doc
    # When more than 2.5% of the bootstrap draws show no membership in the original model (e.g. 13 examples,
    # power p = 0.018), the ratio interval's upper end is infinite, and JSON has no infinity.
    doc["targets"][0].update(residual_leakage_ci95=[0.0, None], residual_leakage_upper=None)
    validate(doc)
    page = render_html(to_document(doc), folder)
    assert "(95% interval 0.00 to unbounded;" in page and "inf" not in re.sub(r"<[^>]+>", "", page).split()
