"""Forget specs, one grammar for every command.

``class=3``, ``class=3,7``, ``samples=PATH`` (a text, CSV or .npy file of training
ids), ``random=0.01@SEED`` (a fraction of the training ids) or ``random=50@SEED``
(a count). Every spec resolves to sorted, unique training ids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audit.errors import InputError, closest
from audit.file_safety import file_sha256

GRAMMAR = "class=3, class=3,7, samples=PATH (.txt/.csv/.npy of training ids) or random=0.01@SEED"
# Specs are names in reports and results.json; a longer one is a mistake (or an attack on the renderer).
MAX_SPEC_CHARS = 4096
# Seeds are stored as 64-bit integers in model files and results.
MAX_SEED = 2**63 - 1
# An id is ASCII digits (r"\d" would take "١٢" as 12), with an optional minus so that -5 is
# said to be out of range rather than not an id.
_ID = re.compile(r"-?[0-9]+", re.ASCII)
# More digits than any int64 has: out of range, said before int() (which refuses 4,300 digits
# with advice about sys.set_int_max_str_digits that a user cannot act on).
_MAX_ID_DIGITS = 19
# A header names columns: every cell a word that starts with a letter ("id", "sample_id", "index").
# Anything else on the first line is data, and data that is not an id is refused like on any
# other line: "7x", "1.5", "+5" or "5\x00" as a header would lose the first id without a word.
_HEADER_CELL = re.compile(r"[\"']?[A-Za-z_][A-Za-z0-9_.-]*[\"']?", re.ASCII)


@dataclass(frozen=True)
class ForgetSet:
    """The training ids a spec selects; ``classes`` is set for class specs."""

    spec: str
    ids: torch.Tensor
    classes: tuple[int, ...] | None = None
    #: SHA-256 of the ids file's bytes, for ``samples=PATH`` (what the requester handed over)
    file_sha256: str | None = None

    def __len__(self) -> int:
        return int(self.ids.numel())

    def describe(self) -> dict:
        return {"spec": self.spec, "n": len(self), "classes": list(self.classes) if self.classes else None,
                "ids_sha256": ids_digest(self.ids), "file_sha256": self.file_sha256}


def ids_digest(ids: torch.Tensor) -> str:
    """SHA-256 of the sorted, unique training ids, each in decimal followed by a newline: what the
    audit covered, whatever file or spec named it; ``sort -n -u ids.txt | sha256sum`` gives the same
    for a file of one id per line (docs/reports.md, "Provenance of a request")."""
    text = "".join(f"{int(i)}\n" for i in sorted(set(ids.tolist())))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def parse_forget(spec: str, y_train: torch.Tensor, num_classes: int) -> ForgetSet:
    """Resolve ``spec`` against the training labels; raise :class:`InputError` if it is wrong."""
    if len(spec) > MAX_SPEC_CHARS:
        raise InputError(f"forget spec {spec[:40]!r}... is {len(spec):,} characters long, more than {MAX_SPEC_CHARS:,}; "
                         "put many ids in a file and use samples=PATH")
    spec = spec.strip()
    key, sep, value = spec.partition("=")
    key = key.strip().lower()
    if not sep or not value.strip():
        raise InputError(f"malformed forget spec {spec!r}: use {GRAMMAR}")
    n = len(y_train)
    if key == "class":
        classes = _parse_classes(spec, value, num_classes)
        ids = torch.nonzero(torch.isin(y_train, torch.tensor(classes)), as_tuple=False).flatten()
        return _non_empty(ForgetSet(spec, ids, tuple(classes)))
    if key == "samples":
        path = Path(value.strip())
        ids = _read_ids(path, n)
        return _non_empty(ForgetSet(spec, ids, file_sha256=file_sha256(path)))
    if key == "random":
        return _non_empty(ForgetSet(spec, _random_ids(spec, value, n)))
    near = closest(key, ("class", "samples", "random"))
    raise InputError(f"unknown forget spec {key!r} in {spec!r}{f'; did you mean {near}=? Use' if near else ': use'} "
                     f"{GRAMMAR}")


def _parse_classes(spec: str, value: str, num_classes: int) -> list[int]:
    classes = []
    for part in value.split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]+", part, re.ASCII):
            raise InputError(f"malformed forget spec {spec!r}: class {part[:40]!r} is not a whole number")
        if len(part.lstrip("0")) > len(str(num_classes)):
            raise InputError(f"class {part[:40]}{'...' if len(part) > 40 else ''} in {spec[:80]!r} is out of range: "
                             f"the data has classes 0..{num_classes - 1}")
        c = int(part)
        if c >= num_classes:
            raise InputError(f"class {c} in {spec!r} is out of range: the data has classes 0..{num_classes - 1}")
        classes.append(c)
    return sorted(set(classes))


def _read_ids(path: Path, n: int) -> torch.Tensor:
    if not path.is_file():
        what = "is not a regular file (a folder, pipe or device?)" if path.exists() else "not found"
        raise InputError(f"forget ids file {path} {what}")
    try:
        if path.suffix.lower() == ".npy":
            _check_npy_claim(path)
            arr = np.load(path, allow_pickle=False)
            values = np.asarray(arr).reshape(-1)
            if values.dtype == bool:
                raise ValueError("it holds a boolean mask; save the ids instead, e.g. np.flatnonzero(mask)")
            if values.dtype.kind not in "iuf":
                raise ValueError(f"it holds {values.dtype} values, not integer ids")
            if values.size and values.dtype.kind == "f":
                if not (np.isfinite(values).all() and np.all(np.equal(np.mod(values, 1), 0))):
                    raise ValueError("it holds non-integer values")
            # Range first, in the file's own dtype: a cast would wrap huge ids into valid-looking ones.
            if values.size and (values.min() < 0 or values.max() >= n):
                bad = values.min() if values.min() < 0 else values.max()
                raise InputError(f"training id {bad.item():.0f} in {path} is out of range: ids run from 0 to {n - 1}")
            values = values.astype(np.int64)
        else:
            rows: list[list[str]] = []
            with open(path, newline="", encoding="utf-8") as fh:
                for line in fh:
                    line = line.split("#", 1)[0].strip()  # comments run to the end of the line
                    if line:
                        rows.append([c for c in re.split(r"[,;\s]+", line) if c])
            tokens = _id_column(rows)
            bad = [(i, t) for i, t in enumerate(tokens) if not _ID.fullmatch(t)]
            if bad:
                raise ValueError(f"{bad[0][1][:40]!r} is not a training id (ids are whole numbers in ASCII digits)")
            huge = next((t for t in tokens if len(t.lstrip("-").lstrip("0")) > _MAX_ID_DIGITS), None)
            if huge is not None:
                raise InputError(f"training id {huge[:20]}... ({len(huge):,} digits) in {path} is out of range: "
                                 f"ids run from 0 to {n - 1}")
            numbers = [int(t) for t in tokens]
            # Before the int64 array: 99999999999999999999 does not fit one.
            outside = [v for v in numbers if not 0 <= v < n]
            if outside:
                raise InputError(f"training id {str(outside[0])[:40]} in {path} is out of range: ids run from 0 to {n - 1}")
            values = np.array(numbers, dtype=np.int64)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read training ids from {path}: {exc}; give one integer id per line or a .npy array") from None
    ids = torch.from_numpy(values)
    out_of_range = ids[(ids < 0) | (ids >= n)]
    if out_of_range.numel():
        raise InputError(f"training id {int(out_of_range[0])} in {path} is out of range: ids run from 0 to {n - 1}")
    return ids.unique()


def _check_npy_claim(path: Path) -> None:
    """numpy allocates the shape a .npy header claims before reading: compare it with the file first."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fh)
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = path.stat().st_size - fh.tell()
    if claimed > held:
        raise ValueError(f"its header claims {claimed:,} bytes of ids but it holds {held:,}; the file is damaged")


def _id_column(rows: list[list[str]]) -> list[str]:
    """The ids of a text or CSV file: one per line, one row of them, or the 'id' column under a header."""
    if not rows:
        return []
    header = rows[0] if all(_HEADER_CELL.fullmatch(cell) for cell in rows[0]) else None
    body = rows[1:] if header else rows
    if header and len(header) > 1:
        names = [h.strip("\"'").lower() for h in header]
        if "id" not in names:
            raise ValueError(f"its header {', '.join(header)} has several columns and none is named 'id'")
        col = names.index("id")
        return [r[col] for r in body if len(r) > col]
    if len(body) > 1 and any(len(r) > 1 for r in body):
        raise ValueError("it has several columns; give one id per line, or a header row with an 'id' column")
    return [t for r in body for t in r]


def _random_ids(spec: str, value: str, n: int) -> torch.Tensor:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)\s*(?:@\s*([0-9]+))?\s*", value, re.ASCII)
    if not m:
        raise InputError(f"malformed forget spec {spec!r}: use random=FRACTION@SEED or random=COUNT@SEED")
    amount, digits = m.group(1), (m.group(2) or "0").lstrip("0") or "0"
    seed = int(digits) if len(digits) <= len(str(MAX_SEED)) else MAX_SEED + 1
    if seed > MAX_SEED:
        raise InputError(f"the seed in {spec!r} is too large: use a seed from 0 to {MAX_SEED}")
    if re.fullmatch(r"[0-9]+", amount):
        count = int(amount) if len(amount.lstrip("0")) <= len(str(n)) else n + 1
        if count > n:
            raise InputError(f"{spec[:80]!r} asks for {amount[:20]}{'...' if len(amount) > 20 else ''} ids but the "
                             f"training set has {n}")
    else:
        frac = float(amount)
        if not 0 < frac <= 1:
            raise InputError(f"the fraction in {spec!r} must lie in (0, 1]")
        count = int(round(frac * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:count].sort().values


def _non_empty(fs: ForgetSet) -> ForgetSet:
    if len(fs) == 0:
        raise InputError(f"forget spec {fs.spec!r} selects no training example; check the class or the ids")
    return fs
