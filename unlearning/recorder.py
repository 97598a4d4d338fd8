"""Record the exact update of every training batch that may later be forgotten.

Wrap the optimizer, train as usual, get an update log (the way Opacus wraps an
optimizer)::

    recorder = UpdateRecorder(model, "model.pt.updates", record_ids=forget_candidates)
    optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))
    for ids, xb, yb in loader:
        optimizer.zero_grad()
        loss_fn(model(xb), yb).backward()
        optimizer.step(ids=ids)          # the one changed line: pass the batch's ids
    summary = recorder.close()

Each recorded step stores ``weights after - weights before`` of ``optimizer.step()``
(so Adam's moments and scaling are baked in, as in Graves et al. 2021) and the change
of every floating-point buffer since the previous step (BatchNorm running statistics
move during the forward pass, before the step). The notebooks of the paper store
neither buffers nor anything but weight/bias; here the identity
``initial state + sum of all steps' deltas == final state`` holds for parameters and
buffers alike when every step is recorded. Optimizer state (Adam's moments) is not
rewound: after a removal, momentum from forgotten batches still lives in the
optimizer, which matters only if training continues with that same optimizer.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from unlearning.update_log import UpdateLogWriter


def _float_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b for k, b in model.named_buffers() if b.is_floating_point()}


class RecordingOptimizer:
    """Proxies an optimizer; ``step(ids=...)`` also records the step's deltas."""

    records_updates = True

    def __init__(self, optimizer: torch.optim.Optimizer, recorder: "UpdateRecorder"):
        self._optimizer = optimizer
        self._recorder = recorder

    def step(self, closure=None, *, ids: torch.Tensor | None = None, epoch: int = 0):
        loss = self._optimizer.step(closure) if closure is not None else self._optimizer.step()
        self._recorder._after_step(ids, epoch)
        return loss

    def __getattr__(self, name: str) -> Any:  # param_groups, state, zero_grad, state_dict ...
        return getattr(self._optimizer, name)


class UpdateRecorder:
    """Writes an update log for ``model`` while it trains.

    ``record_ids``: the example ids whose batches are recorded (a batch is recorded when
    it holds any of them); ``None`` records every batch. ``dtype`` of the stored deltas:
    float32 (default), float16 (half the bytes, approximate) or float64 (removal of a
    single step restores the earlier weights bit for bit).
    """

    def __init__(
        self,
        model: nn.Module,
        log_dir: str | os.PathLike[str],
        record_ids: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        record: str = "all",
        all_ids: torch.Tensor | None = None,
    ):
        self.model = model
        self._params = dict(model.named_parameters())
        self._buffers = _float_buffers(model)
        self._record_set = None if record_ids is None else set(int(i) for i in record_ids.tolist())
        if record_ids is not None:
            covered = record_ids
        elif all_ids is not None:
            covered = all_ids
        else:
            covered = torch.empty(0, dtype=torch.int64)
        self.record_all = record_ids is None
        self.writer = UpdateLogWriter(log_dir, list(self._params), list(self._buffers), covered, dtype, record)
        self.steps = 0
        self._snapshot = self._state_copy()

    def _state_copy(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            state = {f"p/{k}": p.detach().clone() for k, p in self._params.items()}
            state.update({f"b/{k}": b.detach().clone() for k, b in self._buffers.items()})
        return state

    def wrap(self, optimizer: torch.optim.Optimizer) -> RecordingOptimizer:
        """Return ``optimizer`` wrapped so that each ``step(ids=...)`` is recorded."""
        self._snapshot = self._state_copy()
        return RecordingOptimizer(optimizer, self)

    def _wants(self, ids: torch.Tensor | None) -> bool:
        if self._record_set is None:
            return True
        if ids is None:
            raise ValueError("this recorder records selected examples: call optimizer.step(ids=batch_ids)")
        return not self._record_set.isdisjoint(int(i) for i in ids.tolist())

    @torch.no_grad()
    def _after_step(self, ids: torch.Tensor | None, epoch: int) -> None:
        if self._wants(ids):
            # float64 differences of float32 values are exact, so float64 logs undo bit for bit.
            wide = self.writer.dtype == torch.float64

            def delta(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
                return now.double() - before.double() if wide else now - before

            pd = {k: delta(p.detach(), self._snapshot[f"p/{k}"]) for k, p in self._params.items()}
            bd = {k: delta(b.detach(), self._snapshot[f"b/{k}"]) for k, b in self._buffers.items()}
            batch_ids = ids if ids is not None else torch.empty(0, dtype=torch.int64)
            self.writer.append(self.steps, epoch, batch_ids, pd, bd)
        for k, p in self._params.items():
            self._snapshot[f"p/{k}"].copy_(p.detach())
        for k, b in self._buffers.items():
            self._snapshot[f"b/{k}"].copy_(b.detach())
        self.steps += 1

    def close(self) -> dict:
        """Close the log; returns its summary (steps, recorded batches, bytes, journal checksum)."""
        return self.writer.close(self.steps)

    def discard(self) -> None:
        """Abandon the log: close it and delete its folder (training failed or was interrupted)."""
        self.writer.discard()
