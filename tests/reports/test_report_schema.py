"""The results document is checked before anything is rendered: one clear line per problem."""

from __future__ import annotations

import json

import pytest

from reports import ReportError, load_results, validate


def test_a_realistic_document_is_valid(results_doc):
    doc, _ = results_doc
    assert validate(doc) is doc


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
    (lambda d: d.update(schema_version="1"), "schema_version \"1\" is not supported"),
    (lambda d: d.update(schema="something/else"), "not an amnesia-audit results document"),
    (lambda d: d.update(verdict="maybe"), "verdict \"maybe\" is not one of pass, fail, error"),
    (lambda d: d.pop("targets"), "targets is missing"),
    (lambda d: d["targets"][1]["gates"][0].update(passed="no"), "targets[1].gates[0].passed should be true or false"),
    (lambda d: d["targets"][0]["membership"][0]["original"].update(auc="high"),
     "targets[0].membership[0].original.auc should be a finite number or null, not text"),
    (lambda d: d["targets"][0]["membership"][1]["unlearned"]["roc"].update(tpr=[0.1]),
     "targets[0].membership[1].unlearned.roc should be two lists"),
    (lambda d: d["targets"][0]["inversion"]["original"].update(images=[3]), "images[0] should be a path"),
    (lambda d: d["targets"].append("class=4"), "targets[2] should be an object, not text"),
])
def test_invalid_documents_name_the_field(results_doc, mutate, expected):
    doc, _ = results_doc
    mutate(doc)
    with pytest.raises(ReportError) as info:
        validate(doc, source="results.json")
    message = str(info.value)
    assert expected in message
    assert message.startswith("results.json: ") and "\n" not in message


def test_report_error_is_a_value_error():
    assert issubclass(ReportError, ValueError)


@pytest.mark.parametrize("text, expected", [
    ('{"schema": ', "not valid JSON (Expecting value at line 1"),
    ('[1, 2]', "expected a JSON object at the top level, not a list"),
    ('{"schema": "amnesia-audit/results", "schema_version": 1, "x": NaN}', "NaN is not allowed"),
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
    assert load_results(path) == doc


def test_a_target_whose_step_failed_is_valid_with_empty_fields(results_doc):
    doc, _ = results_doc
    doc["targets"][0].update(method=None, accuracy={}, timings={}, membership=[], inversion=None,
                             residual_leakage=None, residual_leakage_basis=None, residual_components={},
                             passed=False, error="RuntimeError: out of memory")
    validate(doc)
