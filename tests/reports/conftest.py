"""Fixtures: realistic results documents (schema version 2) with real PNG images on disk.

The documents are built by :mod:`report_documents` (importable from the tests, e.g.
``from report_documents import build_document``): three targets, ``class=3`` (pass),
``samples=forget-ids.txt`` (fail) and ``random=0.01@0`` (inconclusive, failed by the policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.reports.report_documents import build_document, write_results


@pytest.fixture()
def results_doc(tmp_path: Path) -> tuple[dict, Path]:
    """A fresh document and the folder holding its images (mutate freely)."""
    return build_document(tmp_path), tmp_path


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict:
    """results.json rendered once to html, pdf and junit (WeasyPrint takes seconds; share it)."""
    from reports import render_files

    folder = tmp_path_factory.mktemp("audit-out")
    results = write_results(folder)
    files = render_files(results, ["html", "pdf", "junit"], folder)
    return {"folder": folder, "results": results, "doc": json.loads(results.read_text()),
            "files": {p.suffix.lstrip("."): p for p in files}}
