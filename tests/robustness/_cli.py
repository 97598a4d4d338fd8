"""The one ``audit`` runner of tests/foundation/conftest.py, importable from this folder.

Test folders are not packages, so ``tests.foundation.conftest`` imports only when the
repository root is on ``sys.path`` (``python -m pytest`` from the root puts it there).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from tests.foundation import conftest as _foundation
except ModuleNotFoundError:  # pytest started another way: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.foundation import conftest as _foundation

CliRun = _foundation.CliRun
MarkerPayload = _foundation.MarkerPayload
one_torch_thread = _foundation.one_torch_thread
run_audit = _foundation.run_audit
run_audit_inprocess = _foundation.run_audit_inprocess
write_cifar_pickle = _foundation.write_cifar_pickle


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted), to show that a refused command wrote nothing."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(run: CliRun, code: int, *needles: str) -> str:
    """Exit ``code`` with exactly one ``error:`` line on stderr that holds every needle."""
    return _foundation.assert_one_line_failure(run, code, *needles)
