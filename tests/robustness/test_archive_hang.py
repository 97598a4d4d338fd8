"""Issue 16, item 9: a TorchScript archive whose forward never ends does not make `audit run`
deaf to a CI cancel: SIGTERM still exits 143 (and SIGINT 130) within seconds, one line.
(Results documents that are FIFOs: tests/robustness/test_bad_documents.py.)
"""

from __future__ import annotations

import select
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.cli_runner import CliRun, assert_one_line_failure, start_audit

MARKER = "forward-entered"


class EndlessForward(torch.nn.Module):
    """A digits classifier whose forward prints a marker, then loops for ever (in TorchScript's C++)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("forward-entered")
        i = 0
        while i >= 0:
            i = (i + 1) % 1000
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def endless_archive(tmp_path_factory) -> Path:
    import warnings

    path = tmp_path_factory.mktemp("endless") / "endless.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(EndlessForward()).save(str(path))
    return path


def _signal_inside_forward(archive: Path, sig: int) -> tuple[CliRun, float]:
    args = ["run", str(archive), "--data", "digits", "--forget", "class=3", "--method", "none", "--reference", "none",
            "--attacks", "mia", "--mia", "loss", "--format", "none", "--out", "out"]
    proc = start_audit(args, archive.parent)
    try:
        seen, deadline = "", time.monotonic() + 120
        while MARKER not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += proc.stdout.readline()
        assert MARKER in seen, f"the archive's forward never ran: {seen!r}"
        time.sleep(0.5)  # well inside the endless loop
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)  # a hang fails here (TimeoutExpired)
        return CliRun(args, proc.returncode, out, err, archive.parent), time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_an_archive_whose_forward_never_ends(endless_archive, sig, code):
    run, seconds = _signal_inside_forward(endless_archive, sig)
    assert_one_line_failure(run, code, f"interrupted by {signal.Signals(sig).name}")
    assert seconds < 5
    assert not (endless_archive.parent / "out" / "results.json").exists()


def test_an_archive_forward_gives_the_same_logits_and_gradients(tmp_path):
    """The wrapper changes where the forward runs, not what it computes."""
    import warnings

    from audit.interruptible import InterruptibleForward

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(net).save(str(tmp_path / "m.ts"))
        scripted = torch.jit.load(str(tmp_path / "m.ts"))
    wrapped = InterruptibleForward(scripted)
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    assert torch.equal(wrapped(x), scripted(x))
    wrapped(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert not wrapped(x).requires_grad
    with pytest.raises(RuntimeError):  # an error inside the forward reaches the caller
        wrapped(torch.rand(5, 3))
