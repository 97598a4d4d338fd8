"""Render a results document (``results.json``, schema in :mod:`reports.schema`) to HTML, PDF and JUnit.

Knows nothing of torch or the harness: everything it needs is in the document and the
images beside it. Public API::

    doc = load_results("audit-out/results.json")      # ReportError if unreadable or of another schema
    html = render_html(doc, base_dir)                  # one self-contained page
    render_pdf(doc, base_dir, "report.pdf")            # the same page through WeasyPrint
    xml = render_junit(doc)                            # one test case per target and gate
    render_files("audit-out/results.json", ["html", "pdf", "junit"], "audit-out")
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from reports.html import render_html
from reports.junit import render_junit
from reports.pdf import render_pdf, write_pdf
from reports.schema import ReportError, validate

__all__ = ["ReportError", "load_results", "render_files", "render_html", "render_junit", "render_pdf", "validate"]

FORMATS = {"html": "report.html", "pdf": "report.pdf", "junit": "junit.xml"}


def load_results(path: str | os.PathLike[str]) -> dict:
    """Read and validate ``results.json``; any problem is a :class:`ReportError` with one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file; pass the results.json written by `audit run`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                          "regenerate it with `audit run`") from None
    except ValueError as exc:
        raise ReportError(f"{path}: {exc}") from None
    return validate(doc, source=str(path))


def _reject_constant(name: str) -> None:
    raise ValueError(f"not valid JSON ({name} is not allowed; the schema writes null for missing numbers)")


def render_files(results_path: str | os.PathLike[str], formats: list[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Render ``results_path`` to each of ``formats`` ("html", "pdf", "junit") in ``out_dir``.

    Everything is validated and rendered under temporary names first; only when every
    format succeeded are the files renamed into place, so an error leaves no partial
    report (an earlier report, if any, stays as it was). Returns the written paths.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        what = f"unknown report format {', '.join(repr(f) for f in unknown)}" if unknown else "no report format given"
        raise ReportError(f"{what}; choose from {', '.join(FORMATS)}")
    results_path = Path(results_path)
    doc = load_results(results_path)
    base_dir = results_path.parent
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
