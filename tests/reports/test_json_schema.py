"""The published JSON Schema of results.json: generated from the typed document, kept in the
repository (docs/results.schema.json) and usable by CI users' own validators."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from tests.reports.report_documents import build_document

from reports.document import json_schema

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results.schema.json"


def test_the_published_schema_is_the_one_the_models_give():
    assert json.loads(PUBLISHED.read_text()) == json_schema(), \
        "docs/results.schema.json is stale: regenerate it with `audit schema > docs/results.schema.json`"


def test_audit_schema_prints_it(tmp_path):
    from audit.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.output) == json.loads(PUBLISHED.read_text())


def test_a_document_as_audit_run_writes_it_validates_against_the_published_schema(tmp_path):
    doc = build_document(tmp_path)
    jsonschema.Draft202012Validator(json.loads(PUBLISHED.read_text())).validate(doc)


@pytest.mark.parametrize("mutate", [
    lambda d: d["targets"][0].update(verdict="unsure"),
    lambda d: d["targets"][1].update(p_value=1.5),
    lambda d: d["targets"][0]["gates"][0].update(passed="yes"),
    lambda d: d.update(schema_version=3),
    lambda d: d["targets"][0].pop("passed"),
])
def test_the_published_schema_refuses_what_audit_gate_refuses(tmp_path, mutate):
    from reports import ReportError, validate

    doc = build_document(tmp_path)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json.loads(PUBLISHED.read_text())).validate(doc)
    with pytest.raises(ReportError):
        validate(doc)
