"""Render a results document (``results.json``, typed in :mod:`reports.document`) to HTML, PDF and JUnit.

Knows nothing of torch or the harness: everything it needs is in the document and the
images beside it. Public API::

    doc = load_results("audit-out/results.json")      # a Document; ReportError if unreadable or of another schema
    html = render_html(doc, base_dir)                  # one self-contained page (Jinja2 templates)
    render_pdf(doc, base_dir, "report.pdf")            # the same page through WeasyPrint
    xml = render_junit(doc)                            # one test case per target and gate
    render_files("audit-out/results.json", ["html", "pdf", "junit"], "audit-out")
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from reports.html import render_html
from reports.junit import render_junit
from reports.pdf import render_pdf, write_pdf
from reports.document import Document, json_schema
from reports.reading import ReportError, load_results, read_results, validate

__all__ = ["Document", "ReportError", "json_schema", "load_results", "read_results", "render_files", "render_html",
           "render_junit", "render_pdf", "validate"]

FORMATS = {"html": "report.html", "pdf": "report.pdf", "junit": "junit.xml"}


def render_files(results: str | os.PathLike[str] | Document, formats: list[str], out_dir: str | os.PathLike[str],
                 base_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Render ``results`` (a results.json path, or a :class:`Document` whose images lie in
    ``base_dir``) to each of ``formats`` ("html", "pdf", "junit") in ``out_dir``.

    Everything is validated and rendered under temporary names first; only when every
    format succeeded are the files renamed into place, so an error leaves no partial
    report (an earlier report, if any, stays as it was). Returns the written paths.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        what = f"unknown report format {', '.join(repr(f) for f in unknown)}" if unknown else "no report format given"
        raise ReportError(f"{what}; choose from {', '.join(FORMATS)}")
    if isinstance(results, Document):
        doc, base_dir = results, Path(base_dir if base_dir is not None else out_dir)
    else:
        doc, base_dir = load_results(results), Path(results).parent
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir}: exists and is not a folder; pass a folder to --out")
    page = render_html(doc, base_dir) if {"html", "pdf"} & set(formats) else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for fmt in dict.fromkeys(formats):
            final = out_dir / FORMATS[fmt]
            tmp = _temporary(final, staged)
            if fmt == "html":
                tmp.write_text(page, encoding="utf-8")
            elif fmt == "junit":
                tmp.write_text(render_junit(doc), encoding="utf-8")
            else:
                write_pdf(page, tmp)  # the same page as report.html, through the print stylesheet
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    return [final for _, final in staged]


def _temporary(final: Path, staged: list[tuple[Path, Path]]) -> Path:
    """A temporary beside ``final``, registered in ``staged`` as soon as it exists (so an interrupt removes it)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    staged.append((Path(name), final))
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600; reports are shared as CI artefacts
    return Path(name)
