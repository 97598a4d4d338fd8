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
import json
import math
import os
import stat
import tempfile
from pathlib import Path

from reports.html import render_html
from reports.junit import render_junit
from reports.pdf import render_pdf, write_pdf
from reports.document import Document, ReportError, json_schema, validate

__all__ = ["Document", "ReportError", "json_schema", "load_results", "render_files", "render_html", "render_junit",
           "render_pdf", "validate"]

FORMATS = {"html": "report.html", "pdf": "report.pdf", "junit": "junit.xml"}


# No results.json that `audit run` writes comes near these; past them a file is not one.
MAX_RESULTS_BYTES = 128 * 2**20
MAX_DEPTH = 64
MAX_INT = 2**63 - 1


def load_results(path: str | os.PathLike[str]) -> Document:
    """Read and validate ``results.json`` as a :class:`Document`; any problem is a :class:`ReportError` with one line.

    Only a regular file of at most :data:`MAX_RESULTS_BYTES` is read (a FIFO, a device such
    as /dev/zero or a huge file would block or exhaust memory); numbers beyond 64-bit
    integers or floats, and nesting deeper than :data:`MAX_DEPTH`, are refused.
    """
    path = Path(path)
    text = _read_bounded(path)
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                          "regenerate it with `audit run`") from None
    except RecursionError:
        raise ReportError(f"{path}: nested too deeply to be a results document; regenerate it with `audit run`") from None
    except ValueError as exc:
        raise ReportError(f"{path}: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise ReportError(f"{path}: nested more than {MAX_DEPTH} levels deep, which no results document is; "
                          "regenerate it with `audit run`")
    return validate(doc, source=str(path))


def _read_bounded(path: Path) -> str:
    """The text of ``path`` if it is a regular file of bounded size; opened without blocking (a FIFO would wait)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file; pass the results.json written by `audit run`") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ReportError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ReportError(f"{path}: is a folder; pass the results.json inside it")
        if not stat.S_ISREG(mode):
            raise ReportError(f"{path}: not a regular file (a pipe, socket or device?); pass the results.json "
                              "written by `audit run`")
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_RESULTS_BYTES + 1)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_RESULTS_BYTES:
        raise ReportError(f"{path}: larger than {MAX_RESULTS_BYTES // 2**20} MB, far more than any results.json "
                          "`audit run` writes; pass the results.json of an audit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: cannot read it (not UTF-8 text: {exc.reason} at byte {exc.start})") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"not valid JSON ({name} is not allowed; the schema writes null for missing numbers)")


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 20 else None
    if value is None or abs(value) > MAX_INT:
        shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"
        raise ValueError(f"the number {shown} is beyond 64-bit integers, which no results document holds; "
                         "regenerate it with `audit run`")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise ValueError(f"the number {shown} overflows a 64-bit float; regenerate the document with `audit run`")
    return value


def _depth(doc) -> int:
    """How deeply lists and objects nest in ``doc`` (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


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
