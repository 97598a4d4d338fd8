"""Embed the inversion images named in a results document as data URIs (no file links in the report)."""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Only raster formats every browser and WeasyPrint read; the signature decides, not the name.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
MAX_BYTES = 5_000_000


@dataclass(frozen=True)
class Embedded:
    """One image: a data URI, or why it could not be embedded (shown in the report)."""

    path: str
    data_uri: str | None
    problem: str | None


def embed(relative: str, base_dir: Path) -> Embedded:
    """Read ``relative`` (a path relative to the folder holding results.json) as a data URI.

    Paths that leave that folder are refused: a results file must not pull arbitrary
    local files into a report that is then shared.
    """
    base = Path(base_dir).resolve()
    try:
        path = (base / relative).resolve()
    except (OSError, ValueError):  # ValueError: a NUL byte, which no path holds
        return Embedded(relative, None, "not a valid path, not embedded")
    if not path.is_relative_to(base):
        return Embedded(relative, None, "outside the results folder, not embedded")
    try:
        # Non-blocking, then checked: opening a FIFO planted in place of an image would
        # otherwise wait forever for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return Embedded(relative, None, "not a regular file, not embedded")
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Embedded(relative, None, "missing")
    except OSError as exc:
        return Embedded(relative, None, f"unreadable ({exc.strerror or exc})")
    if len(data) > MAX_BYTES:
        return Embedded(relative, None, "larger than 5 MB, not embedded")
    mime = next((m for sig, m in SIGNATURES.items() if data.startswith(sig)), None)
    if mime is None:
        return Embedded(relative, None, "not a PNG or JPEG image")
    return Embedded(relative, f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), None)
