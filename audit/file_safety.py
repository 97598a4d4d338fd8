"""Reading a model file nobody vouches for, without running anything inside it.

A zip archive that claims to unpack to far more than it holds is refused before torch
opens it; the kind of archive (TorchScript, torch.export) is told from its listing alone;
``torch.load`` runs only with ``weights_only=True``, and a raw pickle, which only a full
unpickle could load, is refused. torch's long refusals become one line a user can act on.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import NoReturn

import torch

from audit.errors import InputError

# torch.save stores its members uncompressed; an archive that unpacks to many times its
# size on disk is a zip bomb, not a model.
MAX_EXPANSION = 20

# What to do with a file this toolkit will not unpickle, said in every refusal.
RESAVE = ("In a trusted environment re-save it as torch.save(model.state_dict(), 'weights.pt') and pass --arch NAME, "
          "or export TorchScript with torch.jit.script(model).save('model.ts')")


def one_line(exc: Exception, limit: int) -> str:
    """A library's (often multi-line) message squeezed onto one line for the CLI."""
    return " ".join(str(exc).split())[:limit]


def check_archive(path: Path) -> None:
    """Refuse a zip archive whose members claim far more bytes than the file holds."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable model file: a damaged zip archive ({one_line(exc, 100)})") from None
    size = path.stat().st_size
    if unpacked > max(MAX_EXPANSION * size, 1 << 20):
        raise InputError(f"{path} refused: its {size:,} bytes claim to unpack to {unpacked:,} bytes (a zip bomb?); "
                         "a model saved with torch.save is stored uncompressed, so save the model again")


def is_raw_pickle(path: Path) -> bool:
    """Whether the file starts with a pickle's PROTO opcode (protocol 2 to 5)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def archive_kind(path: Path) -> str | None:
    """"torchscript" (``constants.pkl`` and ``code/``), "exported" (a torch.export .pt2:
    ``archive_format`` and ``models/*.json``) or None, from one read of the zip's listing."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names):
        return "exported"
    return None


def weights_only_reason(exc: Exception) -> str:
    """The one informative sentence of torch's long weights-only refusal (ANSI codes removed)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (rest if found else text).splitlines() if ln.strip()]
    reason = lines[0] if lines else "unknown content"
    reason = reason.split(" Please use ")[0].split(" was not an allowed global")[0]
    return reason[:160]


def load_tensors_only(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; whatever it refuses, one-line :class:`InputError`."""
    try:
        with warnings.catch_warnings():  # torch's warnings about a file's pickle protocol: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler says, a bare pickle is refused
        refuse_unreadable(path, exc)


def refuse_unreadable(path: Path, exc: Exception) -> NoReturn:
    """Raise the one-line :class:`InputError` for a ``torch.load(weights_only=True)`` failure."""
    if not zipfile.is_zipfile(path) and is_raw_pickle(path):
        # Only a named global is worth repeating; "Unsupported operand 149" says nothing to a user.
        what = weights_only_reason(exc) if isinstance(exc, pickle.UnpicklingError) else ""
        calls = f" ({what})" if what.startswith("Unsupported global") else ""
        raise InputError(f"{path} refused: the file is a pickle that would run code on load{calls}; this toolkit "
                         f"never does a full unpickle. {RESAVE}") from None
    if isinstance(exc, pickle.UnpicklingError):
        what = weights_only_reason(exc)
        if not what.startswith("Unsupported global"):
            # Random bytes or a damaged file trip the same unpickler on an unknown opcode.
            raise InputError(f"{path} is not a readable model file ({what})") from None
        raise InputError(f"{path} refused: it holds Python objects that only a full unpickle could load ({what}), "
                         f"and a full unpickle runs any code inside the file. {RESAVE}") from None
    # Truncated or foreign files.
    raise InputError(f"{path} is not a readable model file: it is not a torch.save archive or TorchScript "
                     f"(torch says {type(exc).__name__}: {one_line(exc, 100)})") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (hex): model files and a request's ids file."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
