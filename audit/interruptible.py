"""A TorchScript archive's forward that SIGINT and SIGTERM can still interrupt.

TorchScript runs a forward in C++ without returning to Python, and Python runs signal
handlers only in the main thread between bytecodes: an archive whose forward never ends
(a ``while`` loop in its code) would make ``audit`` ignore a CI cancel until kill -9.
Here the forward runs in a helper thread (TorchScript releases the GIL) while the main
thread waits in short steps, so the CLI's handlers run, clean up and exit 143 or 130. A
forward that never ends is left to the helper thread, which dies with the process.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

WAIT_STEP_SECONDS = 0.05


class InterruptibleForward(nn.Module):
    """Wraps a TorchScript module ``net``: same forward, same weights (under ``net.``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return call_interruptibly(self.net, x)


def call_interruptibly(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` in a helper thread while this (main) thread waits in short steps, so that a
    forward that never ends cannot outlast a SIGTERM: the signal handler runs between steps."""
    if threading.current_thread() is not threading.main_thread():
        return net(x)  # signal handlers run in the main thread only: nothing to keep responsive here
    # Grad mode and the thread count are per thread in torch: the helper thread takes the caller's, so
    # gradients still flow (model inversion) and the figures do not depend on the machine's cores.
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    outcome: dict = {}

    def call() -> None:
        try:
            torch.set_num_threads(threads)
            with torch.set_grad_enabled(grad):
                outcome["value"] = net(x)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc

    helper = threading.Thread(target=call, name="torchscript-forward", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(WAIT_STEP_SECONDS)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
