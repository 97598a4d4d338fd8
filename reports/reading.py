"""Reading a results document: a bounded file read, JSON without NaN, huge numbers or deep
nesting, then strict validation against the typed models of :mod:`reports.document`. Every
problem is a :class:`ReportError` whose ``str()`` is one line that names the file and, for a
malformed document, the field (``targets[1].gates[0].passed should be true or false, not text``).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reports.document import SCHEMA, SCHEMA_VERSION, Document


class ReportError(ValueError):
    """A results document that cannot be read or rendered; ``str()`` is one line a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


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
    return read_results(path)[0]


def read_results(path: str | os.PathLike[str]) -> tuple[Document, str]:
    """:func:`load_results` and the text it was read from (a signature covers what the file says, which the
    typed document reads with integral numbers as integers)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ReportError(f"load_results takes results.json's path, a string or a pathlib.Path; {path!r:.40} "
                          f"({type(path).__name__}) must be a path")
    path = Path(path)
    text = _read_bounded(path)
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
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
    return validate(doc, source=str(path)), text


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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """An object whose keys are unique: with a key twice, which value counts would be the parser's choice."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {json_repr(twice[:60])} appears twice in one object, which `audit run` never "
                         "writes; regenerate it with `audit run`")
    return doc


def _reject_constant(name: str) -> None:
    raise ValueError(f"not valid JSON ({name} is not allowed; the schema writes null for missing numbers)")


# JSON has one kind of number: 138.0 is the integer 138 (as JSON Schema validators read it), and an
# integer literal beyond 64 bits is the float it denotes (a float field takes it, an integer field
# refuses it, as the published schema's bounds do). Only what no 64-bit float holds is refused here.
def _bounded_int(text: str) -> int | float:
    if len(text.lstrip("-")) <= 19 and abs(value := int(text)) <= MAX_INT:
        return value
    return _finite_float(text, integer=True)


def _finite_float(text: str, integer: bool = False) -> int | float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"
        what = "is beyond 64-bit integers and floats" if integer else "overflows a 64-bit float"
        raise ValueError(f"the number {shown} {what}, which no results document holds; regenerate the document "
                         "with `audit run`")
    if value.is_integer() and abs(value) <= MAX_INT:
        return int(value)
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


def validate(doc: Any, source: str = "results document") -> Document:
    """``doc`` (parsed JSON) as a :class:`Document`, or :class:`ReportError` with one line naming the field."""
    if not isinstance(doc, dict):
        raise ReportError(f"{source}: expected a JSON object at the top level, not {_kind(doc)}")
    if doc.get("schema") != SCHEMA:
        raise ReportError(f"{source}: not an amnesia-audit results document "
                          f"(\"schema\" is {json_repr(doc.get('schema'))}, expected \"{SCHEMA}\")")
    version = doc.get("schema_version")
    if version == 1 and not isinstance(version, bool):
        raise ReportError(f"{source}: schema_version 1 was written by an earlier amnesia-audit, before targets had a "
                          "verdict (pass, fail or inconclusive) resting on a power check; rerun `audit run` to "
                          "audit again with this version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ReportError(f"{source}: schema_version {json_repr(version)} is not supported; this amnesia-audit "
                          f"reads version {SCHEMA_VERSION}: rerun `audit run` or use a matching amnesia-audit")
    try:
        return Document.model_validate(doc, strict=True)
    except ValidationError as exc:
        raise ReportError(f"{source}: {describe_error(exc.errors()[0])}; regenerate it with `audit run` or fix the "
                          "file") from None


_EXPECTED = {"float_type": "a finite number or null", "int_type": "a whole number", "bool_type": "true or false",
             "string_type": "text", "list_type": "a list", "dict_type": "an object", "model_type": "an object",
             "model_attributes_type": "an object", "finite_number": "a finite number"}
_PAIR = "a pair of numbers [low, high] (high null: unbounded) or null"


def describe_error(error: dict) -> str:
    """One pydantic error as words: where (``targets[1].gates[0].passed``) and what is wrong."""
    loc = list(error.get("loc") or ())
    kind, value, ctx = error.get("type"), error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return f"{_where(loc)} is missing"
    if kind in ("too_short", "too_long"):
        return f"{_where(loc)} should be {_PAIR}, not {len(value)} values" if isinstance(value, list) else \
            f"{_where(loc)} should be {_PAIR}"
    if kind == "literal_error":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{_where(loc)} {json_repr(value)} is not one of {allowed}"
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _range(loc)
        return f"{_where(loc)} is {value}, outside its range [{low}, {high}]"
    if kind == "value_error":
        return f"{_where(loc)} {ctx.get('error', error.get('msg'))}"
    if kind in _EXPECTED:
        expected = "a path" if "images" in loc else _EXPECTED[kind]
        return f"{_where(loc)} should be {expected}, not {_kind(value)}"
    return f"{_where(loc)}: {error.get('msg')}"


def _where(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def _range(loc: list) -> tuple[str, str]:
    """The documented range of the field at ``loc``, as written in messages."""
    name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if name in ("residual_leakage", "residual_leakage_upper"):
        return "0", "infinity"
    if name == "advantage":
        return "-1", "1"
    return "0", "1"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def json_repr(value: Any) -> str:
    """A short JSON-ish rendering of a value for error messages."""
    text = "null" if value is None else \
        repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."
