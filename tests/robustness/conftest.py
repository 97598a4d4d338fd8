"""Fixtures for the hardening tests (issue 11); the shared ones come from
``tests/foundation/conftest.py`` and the helpers from ``robustness_helpers.py``.

Each test trains on the embedded digits for two or three epochs: real torch, no mocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.foundation`

from robustness_helpers import train  # noqa: E402

from tests.foundation.conftest import cli, digits, one_torch_thread  # noqa: E402,F401 - shared fixtures


@pytest.fixture(scope="session")
def r5_model(tmp_path_factory) -> Path:
    """Issue 11's model: digits, 3 epochs, recording the batches of 5 random ids (seed 0)."""
    work = tmp_path_factory.mktemp("r5")
    res = train(work, "r5.pt", "--record", "random=5@0", epochs=3)
    assert res.returncode == 0, res.stderr
    return work / "r5.pt"
