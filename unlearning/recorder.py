"""Record the exact update of every training batch that may later be forgotten.

Attach the recorder to your optimizer, say which examples each batch holds, train as
usual, get an update log (the way Opacus's ``make_private`` changes a loop in one line)::

    recorder = UpdateRecorder(model, "model.pt.updates", all_ids=torch.arange(len(train_set)))
    optimizer = recorder.attach(torch.optim.Adam(model.parameters(), lr=1e-3))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    loader = DataLoader(DatasetWithIds(train_set), batch_size=64, shuffle=True)
    for epoch in range(20):
        for ids, xb, yb in loader:
            recorder.batch(ids, epoch=epoch)   # the one added line: this batch's example ids
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()
        scheduler.step()
    summary = recorder.close()

``attach`` returns the same ``torch.optim.Optimizer``: the recorder lives in torch's
optimizer step hooks (``register_step_pre_hook``/``register_step_post_hook``), so LR
schedulers, gradient clipping and AMP's ``GradScaler`` work unchanged. A step that
``GradScaler`` skips (inf or NaN gradients) never calls the optimizer's ``step``, so
nothing is recorded for it.

Which ids a step is recorded with: every id given to :meth:`UpdateRecorder.batch` since
the previous step. They accumulate, because that is what the step's record holds: with
gradient accumulation the step applies several batches, and after a step skipped by
``GradScaler`` the skipped batch's forward pass has still moved BatchNorm's running
statistics, a change the next recorded step carries. A step with no ids raises
:class:`MissingBatchIds` before it changes any weight. ``optimizer.step(ids=..., epoch=...)``
is accepted too (the pre-hook takes the keywords off before the optimizer sees them);
under ``GradScaler`` prefer ``recorder.batch``, since a skipped step never shows its ids.

Each recorded step stores ``weights after - weights before`` of ``optimizer.step()``
(so Adam's moments and scaling, the clipped gradient and the scheduled learning rate are
baked in, as in Graves et al. 2021) and the change of every floating-point buffer since
the previous step (BatchNorm running statistics move during the forward pass, before
the step). The notebooks of the paper store neither buffers nor anything but
weight/bias; here the identity ``initial state + sum of all steps' deltas == final
state`` holds for parameters and buffers alike when every step is recorded. Optimizer
state (Adam's moments) is not rewound: after a removal, momentum from forgotten batches
still lives in the optimizer, which matters only if training continues with that same
optimizer.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from unlearning.update_log import UpdateLogWriter

# Which recorder, if any, is attached to an optimizer (for fit(), which is handed only the optimizer).
_ATTACHED: "weakref.WeakKeyDictionary[torch.optim.Optimizer, UpdateRecorder]" = weakref.WeakKeyDictionary()


class MissingBatchIds(RuntimeError):
    """``optimizer.step()`` ran on a recorded optimizer without the batch's example ids."""


def recorder_of(optimizer: torch.optim.Optimizer) -> "UpdateRecorder | None":
    """The :class:`UpdateRecorder` attached to ``optimizer``, or None."""
    return _ATTACHED.get(optimizer)


def _float_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b for k, b in model.named_buffers() if b.is_floating_point()}


def _as_ids(ids: Any, what: str = "batch ids") -> torch.Tensor:
    """``ids`` (a tensor, array or list of ints) as a flat int64 CPU tensor."""
    t = torch.as_tensor(ids)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{what} must be integer example ids, not {t.dtype}")
    return t.detach().reshape(-1).to("cpu", torch.int64)


class DatasetWithIds(Dataset):
    """``dataset`` whose items come with their example id first: ``(id, x, y)``.

    A ``DataLoader`` over it yields ``(ids, xb, yb)`` batches, ``ids`` an int64 tensor
    (B,) to give :meth:`UpdateRecorder.batch`. ``ids`` (len(dataset),): each item's
    stable example id, the ones a forget request will name; by default its index.
    """

    def __init__(self, dataset: Dataset, ids: Sequence[int] | torch.Tensor | None = None):
        self.dataset = dataset
        self.ids = None if ids is None else _as_ids(ids, "DatasetWithIds ids")
        n = len(dataset)  # type: ignore[arg-type]
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"DatasetWithIds got {len(self.ids)} ids for {n} examples; give one id per example")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        item = self.dataset[index]
        example_id = index if self.ids is None else int(self.ids[index])
        return (example_id, *item) if isinstance(item, tuple) else (example_id, item)


class UpdateRecorder:
    """Writes an update log for ``model`` while it trains.

    ``record_ids``: the example ids whose batches are recorded (a batch is recorded when
    it holds any of them); ``None`` records every batch. ``all_ids``: with
    ``record_ids=None``, the ids of the whole training set, which the log then vouches
    for (without them an amnesiac removal refuses: the log covers no id). ``dtype`` of
    the stored deltas: float32 (default), float16 (half the bytes, approximate) or
    float64 (removal of a single step restores the earlier weights bit for bit).
    ``record``: the record spec stored in the log's header (``"all"``, ``"class=3"``).
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
        self.epoch = 0
        self._pending: list[torch.Tensor] = []
        # Weak: _ATTACHED maps the optimizer to this recorder, and a strong reference back
        # would keep both alive for as long as the program runs.
        self._optimizer_ref: weakref.ReferenceType[torch.optim.Optimizer] | None = None
        self._handles: list[Any] = []
        self._snapshot = self._state_copy()

    def _state_copy(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            state = {f"p/{k}": p.detach().clone() for k, p in self._params.items()}
            state.update({f"b/{k}": b.detach().clone() for k, b in self._buffers.items()})
        return state

    # --- attaching ----------------------------------------------------------------------------

    def attach(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Record every ``optimizer.step()`` from now on; returns ``optimizer`` itself.

        The weights are snapshot here, so attach after loading any checkpoint. One
        recorder records one optimizer; :meth:`detach` (or :meth:`close`) removes the hooks.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"UpdateRecorder.attach needs a torch.optim.Optimizer, not {type(optimizer).__name__}")
        attached = self.optimizer
        if optimizer is attached:
            return optimizer
        if attached is not None:
            raise ValueError("this UpdateRecorder already records another optimizer; call recorder.detach() first")
        if _ATTACHED.get(optimizer) is not None:
            raise ValueError("this optimizer already has an UpdateRecorder attached; detach that one first")
        mine = {id(p) for p in self._params.values()}
        if any(id(p) not in mine for group in optimizer.param_groups for p in group["params"]):
            raise ValueError("the optimizer updates tensors that are not parameters of the recorded model; "
                             "build the optimizer from that model's parameters")
        self._snapshot = self._state_copy()
        self._handles = [optimizer.register_step_pre_hook(self._before_step),
                         optimizer.register_step_post_hook(self._after_step)]
        self._optimizer_ref = weakref.ref(optimizer)
        _ATTACHED[optimizer] = self
        return optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer whose steps are recorded, or None."""
        return None if self._optimizer_ref is None else self._optimizer_ref()

    def wrap(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The earlier name of :meth:`attach`; ``optimizer.step(ids=...)`` keeps working."""
        return self.attach(optimizer)

    def detach(self) -> None:
        """Remove the hooks: later steps of the optimizer are not recorded. The log stays open."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        optimizer = self.optimizer
        if optimizer is not None and _ATTACHED.get(optimizer) is self:
            del _ATTACHED[optimizer]
        self._optimizer_ref = None

    # --- recording ----------------------------------------------------------------------------

    def batch(self, ids: torch.Tensor | Sequence[int], epoch: int | None = None) -> None:
        """Say which examples the coming step trains on: ``ids`` (B,) stable example ids.

        Call once per batch before ``optimizer.step()``. Ids given since the last step
        all go into the next one (see the module docstring). ``epoch`` is stored with
        the step; without it the last epoch given (at first 0) is kept.
        """
        self._pending.append(_as_ids(ids))
        if epoch is not None:
            self.epoch = int(epoch)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> tuple | None:
        result = None
        if "ids" in kwargs or "epoch" in kwargs:  # optimizer.step(ids=..., epoch=...): not the optimizer's
            kwargs = dict(kwargs)
            ids, epoch = kwargs.pop("ids", None), kwargs.pop("epoch", None)
            if ids is not None:
                self.batch(ids, epoch)
            elif epoch is not None:
                self.epoch = int(epoch)
            result = (args, kwargs)
        if not self._pending:
            # Raised before the step: the weights are unchanged and the log is still exact.
            raise MissingBatchIds(f"optimizer.step() #{self.steps} ran without the batch's example ids, so the "
                                  "update log could not say what to remove; call recorder.batch(ids) before "
                                  "each optimizer.step()")
        return result

    def _after_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self._record(self._take_pending())

    def _take_pending(self) -> torch.Tensor:
        ids = self._pending[0] if len(self._pending) == 1 else torch.cat(self._pending)
        self._pending = []
        return ids

    def _wants(self, ids: torch.Tensor) -> bool:
        if self._record_set is None:
            return True
        return not self._record_set.isdisjoint(int(i) for i in ids.tolist())

    @torch.no_grad()
    def _record(self, ids: torch.Tensor) -> None:
        """Append the change since the last snapshot under ``ids`` (if wanted), then snapshot."""
        if self._wants(ids):
            # float64 differences of float32 values are exact, so float64 logs undo bit for bit.
            wide = self.writer.dtype == torch.float64

            def delta(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
                return now.double() - before.double() if wide else now - before

            pd = {k: delta(p.detach(), self._snapshot[f"p/{k}"]) for k, p in self._params.items()}
            bd = {k: delta(b.detach(), self._snapshot[f"b/{k}"]) for k, b in self._buffers.items()}
            self.writer.append(self.steps, self.epoch, ids, pd, bd)
        for k, p in self._params.items():
            self._snapshot[f"p/{k}"].copy_(p.detach())
        for k, b in self._buffers.items():
            self._snapshot[f"b/{k}"].copy_(b.detach())
        self.steps += 1

    @torch.no_grad()
    def _moved(self) -> bool:
        now = {f"p/{k}": p for k, p in self._params.items()}
        now.update({f"b/{k}": b for k, b in self._buffers.items()})
        return any(not torch.equal(t.detach(), self._snapshot[k]) for k, t in now.items())

    # --- ending -------------------------------------------------------------------------------

    def close(self) -> dict:
        """Remove the hooks and close the log; returns its summary (steps, recorded batches, bytes, digests).

        Batches given to :meth:`batch` after the last step (a last step skipped by
        ``GradScaler``) whose forward pass still moved a buffer are recorded as one
        final entry, so no trace of them is left unaccounted for.
        """
        if self._pending and self._moved():
            self._record(self._take_pending())
        self._pending = []
        self.detach()
        return self.writer.close(self.steps)

    def discard(self) -> None:
        """Abandon the log: remove the hooks, close the log and delete its folder (training failed)."""
        self.detach()
        self.writer.discard()
