"""A model for the hardening tests (issue 11) of this folder alone; the shared fixtures are
in ``tests/conftest.py``. Each test trains on the embedded digits for a few epochs: real
torch, no mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import train


@pytest.fixture(scope="session")
def r5_model(tmp_path_factory) -> Path:
    """Issue 11's model: digits, 3 epochs, recording the batches of 5 random ids (seed 0)."""
    work = tmp_path_factory.mktemp("r5")
    res = train(work, "r5.pt", "--record", "random=5@0", epochs=3)
    assert res.returncode == 0, res.stderr
    return work / "r5.pt"
