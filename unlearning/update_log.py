"""The amnesiac update log on disk: one safetensors file per recorded batch, a journal.

Layout of a log folder (for example ``model.pt.updates/``)::

    header.json               format, dtype, tensor names, the record spec
    covered.safetensors       ids whose every batch is recorded ("covered" ids)
    batches/s00000042.safetensors   "p/<name>", "b/<name>" deltas and "ids" of one step
    journal.jsonl             one line per complete step, with the file's SHA-256;
                              a last {"closed": ...} line once training has ended

Crash safety: a batch file is written under a temporary name, fsynced and renamed, and
only then is its journal line appended and fsynced. After a kill -9 the journal names
only complete files; a torn last line is ignored, so the log is usable up to the last
complete step and says it was never closed. A journaled file that is missing or whose
checksum differs makes the log refuse to load (:class:`UpdateLogError`).

Trust: :meth:`UpdateLog.open_trusted` is the one way to open a log that a removal relies
on. The owner of the log (``model.pt``) records the log's digest, :func:`log_digest`: one
SHA-256 over the checksums of every file (header, covered ids, journal and each step
file), and ``open_trusted`` checks every file against it, so no file of the log can be
swapped, dropped or rewritten without the log being refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save

FORMAT = "amnesia-audit/update-log"
VERSION = 1
DIGEST_FORMAT = "amnesia-audit/update-log-digest/1"


class UpdateLogError(Exception):
    """The log is missing, incomplete where it must be complete, or fails its checksums."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log_digest(header_sha256: str, covered_sha256: str, journal_sha256: str, steps: list[tuple[str, str]]) -> str:
    """The log's digest: SHA-256 over every file's name and SHA-256, in a fixed order.

    ``steps`` are ``(file, sha256)`` of each journaled step, in journal order. The model
    file records this value; :meth:`UpdateLog.open_trusted` recomputes it from the files.
    """
    h = hashlib.sha256(DIGEST_FORMAT.encode() + b"\n")
    files = [("header.json", header_sha256), ("covered.safetensors", covered_sha256),
             ("journal.jsonl", journal_sha256), *steps]
    for name, sha in files:
        h.update(f"{name} {sha}\n".encode())
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    """Write under a temporary name, then rename. ``sync`` adds an fsync (power-loss safety).

    Per-step files are not fsynced: after a kill -9 the kernel still writes them out in
    order, and after a power cut a damaged file fails its checksum and is refused, so
    the log is never silently wrong either way. ``close`` syncs everything.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # an error or an interrupt (the CLI turns signals into one) leaves no .tmp
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class LogEntry:
    """One recorded optimizer step."""

    step: int
    epoch: int
    file: str
    sha256: str
    bytes: int
    n_ids: int
    ids: list[int] | None = None  # the batch's example ids, also inside the file


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where a log is written until it is closed: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


class UpdateLogWriter:
    """Appends recorded steps to ``<path>.partial``; :meth:`close` swaps it into ``path``.

    An existing log at ``path`` stays untouched until the new one is complete. After a
    crash, ``<path>.partial`` holds the steps recorded up to the last complete one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        param_names: list[str],
        buffer_names: list[str],
        covered_ids: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        record: str = "all",
    ):
        if dtype not in (torch.float32, torch.float16, torch.float64):
            raise ValueError("the update log stores float32, float16 or float64")
        self.final_path = Path(path)
        self.path = partial_path(path)
        if self.path.exists():  # left by an earlier crash
            shutil.rmtree(self.path)
        (self.path / "batches").mkdir(parents=True)
        self.dtype = dtype
        self.bytes = 0
        self.recorded = 0
        header = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": str(dtype).removeprefix("torch."),
            "param_names": param_names,
            "buffer_names": buffer_names,
            "record": record,
        }
        header_bytes = json.dumps(header, indent=1).encode()
        covered_bytes = save({"ids": covered_ids.to(torch.int64).unique().contiguous()})
        _write_atomic(self.path / "header.json", header_bytes, sync=True)
        _write_atomic(self.path / "covered.safetensors", covered_bytes, sync=True)
        self._header_sha256 = hashlib.sha256(header_bytes).hexdigest()
        self._covered_sha256 = hashlib.sha256(covered_bytes).hexdigest()
        self._steps: list[tuple[str, str]] = []
        self._journal = open(self.path / "journal.jsonl", "a", encoding="utf-8")
        self._journal_line({"header_sha256": self._header_sha256, "covered_sha256": self._covered_sha256},
                           sync=True)

    def _journal_line(self, obj: dict, sync: bool = False) -> None:
        # One write of a whole line: a kill can tear only the last line, which readers drop.
        self._journal.write(json.dumps(obj, sort_keys=True) + "\n")
        self._journal.flush()
        if sync:
            os.fsync(self._journal.fileno())

    def append(self, step: int, epoch: int, ids: torch.Tensor,
               param_deltas: dict[str, torch.Tensor], buffer_deltas: dict[str, torch.Tensor]) -> LogEntry:
        tensors = {f"p/{k}": v.detach().to(self.dtype).contiguous() for k, v in param_deltas.items()}
        tensors.update({f"b/{k}": v.detach().to(self.dtype).contiguous() for k, v in buffer_deltas.items()
                        if v.is_floating_point()})
        tensors["ids"] = ids.detach().to(torch.int64).contiguous()
        name = f"batches/s{step:08d}.safetensors"
        target = self.path / name
        blob = save(tensors, metadata={"step": str(step), "epoch": str(epoch)})
        _write_atomic(target, blob)
        entry = LogEntry(step, epoch, name, hashlib.sha256(blob).hexdigest(), len(blob), int(ids.numel()),
                         [int(i) for i in tensors["ids"].tolist()])
        self._journal_line(entry.__dict__)
        self._steps.append((entry.file, entry.sha256))
        self.bytes += entry.bytes
        self.recorded += 1
        return entry

    def close(self, total_steps: int) -> dict:
        """Mark the log complete; returns the summary the model file records.

        ``log_sha256`` (:func:`log_digest`) covers every file of the log and is what
        :meth:`UpdateLog.open_trusted` checks; ``journal_sha256`` is kept for readers of
        older model files.
        """
        os.sync()  # every step file on disk before the journal says the log is complete
        self._journal_line({"closed": True, "total_steps": total_steps, "recorded": self.recorded, "bytes": self.bytes},
                           sync=True)
        self._journal.close()
        journal_sha256 = _sha256(self.path / "journal.jsonl")
        summary = {"total_steps": total_steps, "recorded": self.recorded, "bytes": self.bytes,
                   "journal_sha256": journal_sha256,
                   "log_sha256": log_digest(self._header_sha256, self._covered_sha256, journal_sha256, self._steps)}
        if self.final_path.exists():
            old = self.final_path.with_name(self.final_path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final_path, old)
            os.replace(self.path, self.final_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final_path)
        self.path = self.final_path
        return summary

    def discard(self) -> None:
        """Close the journal and delete the unfinished log folder."""
        if not self._journal.closed:
            self._journal.close()
        shutil.rmtree(self.path, ignore_errors=True)


_ENTRY_TYPES = {"step": int, "epoch": int, "file": str, "sha256": str, "bytes": int, "n_ids": int,
                "ids": (list, type(None))}
_CLOSING_TYPES = {"closed": bool, "total_steps": int, "recorded": int, "bytes": int}


def _journal_record(rec: object, journal: Path, lineno: int) -> LogEntry | dict:
    """One parsed journal line after the first: a :class:`LogEntry`, or the closing record (a dict).

    Exactly the keys the writer writes, with their types; anything else means the journal
    was edited, so the log is refused rather than half-read.
    """
    def refuse(why: str) -> UpdateLogError:
        return UpdateLogError(f"{journal} line {lineno} {why}; the log cannot be trusted")

    if not isinstance(rec, dict):
        raise refuse("is not a JSON object")
    types = _CLOSING_TYPES if "closed" in rec else _ENTRY_TYPES
    required = set(types) - {"ids", "recorded", "bytes"}
    if not required <= rec.keys() <= set(types):
        extra, missing = sorted(rec.keys() - set(types)), sorted(required - rec.keys())
        raise refuse(f"has unexpected keys {extra}" if extra else f"lacks keys {missing}")
    for key, value in rec.items():
        want = types[key]
        if not isinstance(value, want) or (isinstance(value, bool) and want is int):
            raise refuse(f"has a {key!r} that is not a {'whole number' if want is int else 'valid value'}")
    if "closed" in rec:
        if rec["closed"] is not True or rec["total_steps"] < 0:
            raise refuse("is a malformed closing line")
        return rec
    if not re.fullmatch(r"batches/s\d{8,}\.safetensors", rec["file"]):
        raise refuse(f"names a file {rec['file'][:80]!r} outside the log's batches/ folder")
    if rec.get("ids") is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in rec["ids"]):
        raise refuse("lists ids that are not whole numbers")
    return LogEntry(**rec)


@dataclass
class UpdateLog:
    """A log read back from disk (checksums verified on :meth:`open`)."""

    path: Path
    header: dict
    entries: list[LogEntry]
    covered_ids: torch.Tensor
    closed: bool
    total_steps: int | None
    torn_tail: bool = False
    journal_sha256: str = ""
    header_sha256: str = ""   # as the journal's first line records them
    covered_sha256: str = ""
    _by_id: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _file_sha256: dict[str, str] = field(default_factory=dict, repr=False)  # of the bytes open() parsed

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    @property
    def digest(self) -> str:
        """:func:`log_digest` of this log as its journal describes it (the files are checked by ``open_trusted``)."""
        return log_digest(self.header_sha256, self.covered_sha256, self.journal_sha256,
                          [(e.file, e.sha256) for e in self.entries])

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = True) -> "UpdateLog":
        """Read and (by default) verify every file's SHA-256; raise :class:`UpdateLogError` if wrong.

        This checks the log against its own journal only, and accepts a log that was never
        closed. A caller that relies on the log (a removal, a "verified" status) opens it
        with :meth:`open_trusted` instead.
        """
        path = Path(path)
        journal = path / "journal.jsonl"
        if not path.is_dir() or not journal.is_file() or not (path / "header.json").is_file():
            raise UpdateLogError(f"no update log at {path} (expected header.json and journal.jsonl)")
        raw = journal.read_bytes()
        lines = raw.split(b"\n")
        torn = lines[-1] != b""  # a line without its newline was cut by a crash
        records = []
        for i, line in enumerate(lines[:-1]):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UpdateLogError(f"{journal} line {i + 1} is corrupt; the log cannot be trusted") from None
        if not records or not isinstance(records[0], dict) or "header_sha256" not in records[0]:
            raise UpdateLogError(f"{journal} does not start with the header checksums; the log cannot be trusted")
        header_bytes = (path / "header.json").read_bytes()
        try:
            header = json.loads(header_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UpdateLogError(f"{path / 'header.json'} is corrupt") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
            raise UpdateLogError(f"{path} is not a version-{VERSION} update log")
        try:
            covered_bytes = (path / "covered.safetensors").read_bytes()
            covered = load_safetensors(covered_bytes)["ids"]
        except Exception:  # noqa: BLE001 - missing, truncated or without "ids"
            raise UpdateLogError(f"{path / 'covered.safetensors'} is missing or unreadable: the log is incomplete") from None
        # The bytes parsed here are the bytes checked: nothing can be swapped in between.
        actual = {"header.json": hashlib.sha256(header_bytes).hexdigest(),
                  "covered.safetensors": hashlib.sha256(covered_bytes).hexdigest()}
        if verify:
            for fname, key in (("header.json", "header_sha256"), ("covered.safetensors", "covered_sha256")):
                if actual[fname] != records[0].get(key):
                    raise UpdateLogError(f"{path / fname} fails its SHA-256 checksum: the log was modified")
        entries: list[LogEntry] = []
        closed, total, closing = False, None, {}
        for lineno, rec in enumerate(records[1:], start=2):
            rec = _journal_record(rec, journal, lineno)
            if isinstance(rec, dict):
                closed, total, closing = True, rec["total_steps"], rec
                continue
            if closed:
                raise UpdateLogError(f"{journal} has steps after its closing line; the log cannot be trusted")
            entries.append(rec)
        if closed and closing.get("recorded", len(entries)) != len(entries):
            # A step line cut out of a finished journal would otherwise go unnoticed.
            raise UpdateLogError(f"{journal} closes with {closing['recorded']} recorded steps but lists "
                                 f"{len(entries)}; the log cannot be trusted")
        for e in entries:
            f = path / e.file
            if not f.is_file():
                raise UpdateLogError(f"{f} is listed in the journal but missing: the log is incomplete")
            if verify and _sha256(f) != e.sha256:
                raise UpdateLogError(f"{f} fails its SHA-256 checksum: the log was modified or damaged")
        log = cls(path, header, entries, covered, closed, total, torn, hashlib.sha256(raw).hexdigest(),
                  str(records[0].get("header_sha256")), str(records[0].get("covered_sha256")))
        log._file_sha256 = actual
        return log

    @classmethod
    def open_trusted(
        cls,
        path: str | os.PathLike[str],
        log_sha256: str | None,
        *,
        journal_sha256: str | None = None,
        lazy_steps: bool = False,
    ) -> "UpdateLog":
        """The one way to open a log that a removal or a "verified" status relies on.

        ``log_sha256`` is the digest its owner recorded (``recorder.close()["log_sha256"]``,
        kept in model.pt). Checked, or :class:`UpdateLogError` names what is wrong:

        * the log was closed (training ended);
        * header.json, covered.safetensors and journal.jsonl hash to what the digest says;
        * every journaled step file exists with its journaled size and SHA-256. With
          ``lazy_steps`` the SHA-256 of a step file is checked when :meth:`read` reads
          it instead, so a caller that reads a few steps does not hash them all;
        * the digest of all of that equals ``log_sha256``.

        ``journal_sha256`` instead of ``log_sha256`` is for model files written before
        the digest covered every file: the journal is checked against it and every other
        file against the journal (the journal records their SHA-256), a chain as strong as
        the digest. ``log_sha256=None`` with no ``journal_sha256`` checks the log against
        its own journal only: damage is caught, a forger who rewrites the journal is not.
        """
        path = Path(path)
        log = cls.open(path, verify=False)
        if not log.closed:
            raise UpdateLogError(f"the update log {path} was never closed (training stopped before it ended)")
        for fname, want in (("header.json", log.header_sha256), ("covered.safetensors", log.covered_sha256)):
            if log._file_sha256.get(fname) != want:
                raise UpdateLogError(f"{path / fname} fails its SHA-256 checksum: the log was modified")
        for e in log.entries:
            f = path / e.file
            if f.stat().st_size != e.bytes or (not lazy_steps and _sha256(f) != e.sha256):
                raise UpdateLogError(f"{f} fails its SHA-256 checksum: the log was modified or damaged")
        if journal_sha256 is not None and log.journal_sha256 != journal_sha256:
            raise UpdateLogError(f"the update log {path} is not the one its model was saved with "
                                 "(its journal checksum differs)")
        if log_sha256 is not None and log.digest != log_sha256:
            raise UpdateLogError(f"the update log {path} is not the one its model was saved with "
                                 "(its digest differs)")
        return log

    def read_step(self, entry: LogEntry) -> dict[str, torch.Tensor]:
        """Every tensor of one step file ("p/...", "b/...", "ids"), checked against its journaled SHA-256."""
        f = self.path / entry.file
        try:
            blob = f.read_bytes()
        except FileNotFoundError:
            raise UpdateLogError(f"{f} is listed in the journal but missing: the log is incomplete") from None
        if hashlib.sha256(blob).hexdigest() != entry.sha256:
            raise UpdateLogError(f"{f} fails its SHA-256 checksum: the log was modified or damaged")
        return load_safetensors(blob)

    def read(self, entry: LogEntry) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """(parameter deltas, buffer deltas, ids) of one step, in the log's stored dtype."""
        t = self.read_step(entry)
        params = {k[2:]: v for k, v in t.items() if k.startswith("p/")}
        buffers = {k[2:]: v for k, v in t.items() if k.startswith("b/")}
        return params, buffers, t["ids"]

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.entries)

    def steps_touching(self, forget_ids: torch.Tensor) -> list[LogEntry]:
        """The recorded steps whose batch held any of ``forget_ids``."""
        wanted = set(int(i) for i in forget_ids.tolist())
        hits = []
        for e in self.entries:
            if e.ids is None:
                with safe_open(str(self.path / e.file), framework="pt") as f:
                    ids = f.get_tensor("ids").tolist()
            else:
                ids = e.ids
            if wanted.intersection(ids):
                hits.append(e)
        return hits

    def uncovered(self, forget_ids: torch.Tensor) -> torch.Tensor:
        """Forget ids whose batches were not all recorded."""
        return forget_ids[~torch.isin(forget_ids, self.covered_ids)]
