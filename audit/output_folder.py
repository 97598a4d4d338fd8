"""Which files of an output folder this toolkit wrote: only those are ever replaced or removed.

A run's output set (results.json, junit.xml, the reports, the inversion images) is listed
in a manifest, ``.amnesia-audit-outputs.json``, beside it. A later run replaces only the
files the manifest lists; a file of the set's names that it does not list (the user's own
``report.pdf`` or ``inversion/`` in ``--out .``) is refused before any work (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from audit.errors import InputError

OUTPUT_SET = ("results.json", "junit.xml", "report.html", "report.pdf", "inversion")
#: The files this toolkit wrote in an output folder: only these are ever replaced or removed.
MANIFEST = ".amnesia-audit-outputs.json"


def written_before(out: Path) -> set[str]:
    """The files (relative paths) the manifest in ``out`` says an earlier audit wrote there."""
    import json

    path = out / MANIFEST
    if not path.is_file() or path.is_symlink():
        return set()
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str) and ".." not in Path(f).parts and not Path(f).is_absolute()}


def present(out: Path) -> list[str]:
    """The files of the output set now in ``out`` (the inversion folder's, one by one)."""
    found = []
    for name in OUTPUT_SET:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            found += [p.relative_to(out).as_posix() for p in sorted(path.rglob("*")) if not p.is_dir() or p.is_symlink()]
        elif path.exists() or path.is_symlink():
            found.append(name)
    return found


def check_out_folder(out: Path | None) -> None:
    """Refuse (exit 2, before any work) an output folder holding a file of the output set's names
    that no earlier audit wrote there (``--out .`` beside the user's own ``report.pdf``)."""
    if out is None or not out.is_dir():
        return
    ours = written_before(out)
    foreign = [f for f in present(out) if f not in ours]
    if foreign:
        raise InputError(f"--out {out} holds {foreign[0]}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}"
                         f", which no earlier audit wrote there (not in {MANIFEST}), and a run would replace it; "
                         "move it or choose another --out")
