"""`audit report` and render_files: everything or nothing, exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reports
from reports import ReportError, render_files

from tests import cli_runner


def run_audit(*args: str) -> cli_runner.CliRun:
    return cli_runner.run_audit(list(args), timeout=120)


@pytest.mark.parametrize("content, expected", [
    ('{"schema": "amnesia-audit/results", "schema_version": 99, "targets": []}', "schema_version 99 is not supported"),
    ('{"schema": "amnesia-audit/results", "schema_version": 2, "targets": [', "not valid JSON"),
    ('{"schema": "amnesia-audit/results", "schema_version": 1, "verdict": "pass", "targets": []}',
     "schema_version 1 was written by an earlier amnesia-audit"),
])
def test_audit_report_rejects_bad_documents_with_exit_2_and_writes_nothing(tmp_path, content, expected):
    results = tmp_path / "results.json"
    results.write_text(content)
    out = tmp_path / "out"
    proc = run_audit("report", str(results), "--format", "html,pdf,junit", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(results) in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_audit_report_regenerates_everything_from_results_json(rendered, tmp_path):
    out = tmp_path / "again"
    proc = run_audit("report", str(rendered["results"]), "--format", "html,junit", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.html"]
    assert (out / "report.html").read_text() == rendered["files"]["html"].read_text()


def test_rendering_writes_nothing_when_a_later_format_fails(results_doc, monkeypatch):
    doc, folder = results_doc
    results = folder / "results.json"
    results.write_text(json.dumps(doc))
    (folder / "report.html").write_text("the previous report")

    def broken(page, out_path):
        Path(out_path).write_bytes(b"%PDF-half")
        raise RuntimeError("pango exploded")

    monkeypatch.setattr(reports, "write_pdf", broken)
    with pytest.raises(RuntimeError, match="pango exploded"):
        render_files(results, ["html", "junit", "pdf"], folder)
    assert (folder / "report.html").read_text() == "the previous report"
    assert not (folder / "junit.xml").exists() and not (folder / "report.pdf").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_unknown_formats_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ReportError, match="unknown report format 'docx'; choose from html, pdf, junit"):
        render_files(tmp_path / "missing.json", ["html", "docx"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
