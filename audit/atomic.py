"""Write every artefact under a temporary name, then rename it into place.

A crash, a kill or an error half-way leaves either the old file or none, never a
half-written one. An error or an interrupt (the CLI turns SIGINT and SIGTERM into an
exception) also removes the staged temporary; only a kill -9 can leave one behind, and
the next write of the same artefact sweeps it (:func:`sweep_stale`).

Crash tests: ``AUDIT_FAULT_STOP=<stage>`` makes the process die with ``os._exit(137)``
(what a kill -9 looks like to its parent) when it reaches :func:`crash_point` of that
stage. The stages of ``audit train`` are listed in :mod:`audit.training`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    try:
        os.close(fd)
        # mkstemp creates 0600; the renamed artefact gets the usual mode (0666 less the umask).
        os.chmod(name, 0o666 & ~_umask())
    except BaseException:  # an interrupt between mkstemp and the caller's clean-up
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Path(name)


def crash_point(stage: str) -> None:
    """Die at once, as a kill -9 would, when ``AUDIT_FAULT_STOP`` names ``stage`` (crash tests only)."""
    if os.environ.get("AUDIT_FAULT_STOP") == stage:
        os._exit(137)


def sweep_stale(path: str | os.PathLike[str]) -> None:
    """Remove the temporaries that killed writers of ``path`` left: ``.<name>.*.tmp`` beside it."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _umask() -> int:
    umask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], stage: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    ``stage``: the name of the :func:`crash_point` between the fsync and the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        tmp = _tmp_sibling(path)  # inside the try: an interrupt right after it still removes it
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if stage:
            crash_point(stage)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    old: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        # mkdtemp creates 0700; the renamed folder gets the usual mode (0777 less the umask).
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", suffix=".tmp", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            tmp = None
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            tmp = None
    except BaseException:
        # Interrupted between the two renames: the earlier folder goes back in place.
        if old is not None and (old / "x").exists() and not path.exists():
            os.replace(old / "x", path)
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
