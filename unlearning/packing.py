"""Packed batches: recordable examples trained in batches of their own.

The amnesiac recorder stores a step when its batch holds any recordable id. With a
share ``p`` of the ids recordable and batches of ``B`` drawn at random, that is
``1 - (1 - p)^B`` of all steps (47% for p = 1%, B = 64; 99.9% for p = 10%), and
forgetting the recordable ids removes that many steps. When the recordable ids are known
before training, :class:`PackedBatchSampler` puts them in batches that hold nothing else,
so about ``p`` of the steps are recorded and a removal touches retained examples only
through the weights, not through shared batches.

Each epoch is a permutation of the whole training set (plus the fill, if any): the recordable examples are
shuffled and cut into batches, the others likewise (both with :func:`batch_bounds`'s rule
that a short last batch joins the one before it), and the recordable batches are spread
through the epoch, one at a random place in each of equal stretches of the epoch, so they
never bunch at its start or end. ``fill`` adds other examples, drawn at random and trained a
second time there, to each recordable batch (see :data:`DEFAULT_FILL` for what it buys and
costs). The same ``seed`` and epoch give the same batches.

In a user's loop::

    sampler = PackedBatchSampler(len(train_set), recordable=forget_ids, batch_size=64, seed=0)
    loader = DataLoader(DatasetWithIds(train_set), batch_sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)      # optional: without it each pass over the loader is the next epoch
        for ids, xb, yb in loader:
            recorder.batch(ids, epoch=epoch)
            ...
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from unlearning.training import batch_bounds

#: Other examples added to each recordable batch, per recordable example (``fill``); 0 by
#: default, because what fill buys depends on the data (and on BatchNorm: see
#: :data:`STATISTICS_FILL`). Trained there (``fill_in_loss=True``) it costs forgetting. Measured
#: (benchmarks/results/packing-cost-*.md): digits, class 3 packed, test accuracy 99.0% against
#: 99.4% unpacked and 99.3% with fill 1 (the one-class BatchNorm statistics are the cause there),
#: but after the removal the class keeps 7-13% accuracy on two of three seeds (0% without fill);
#: Fashion-MNIST (12,000 examples), fill moves accuracy from the class to the others (class
#: 85.9% -> 79.5%, others 84.7% -> 86.5%; unpacked 88.6% / 87.1%).
DEFAULT_FILL = 0.0

#: The fill that trains packed batches as well as random ones where the model has BatchNorm
#: (issue 24), with ``fill_in_loss=False``: each recordable batch is normalised together with 3
#: times as many other examples, which shape BatchNorm's batch statistics only. A batch of one
#: class normalised by its own statistics loses what the class shares. Measured
#: (benchmarks/results/packing-cost-*.md): Fashion-MNIST class 3, seed 0, test accuracy 90.0%
#: (class 89.9%) against 83.3% (16.9%) packed without fill and 91.0% unpacked; digits class 3,
#: seeds 0-2, 99.5% against 99.0% and 99.4%. Not the default of ``audit train``: after the
#: removal the class keeps some accuracy on one digits seed of three (15.6%; 0% without fill), and
#: 37.8% on an 8-epoch digits model. It costs 3 extra forward and backward passes per recorded
#: example (about a third more computation at a 10% share).
STATISTICS_FILL = 3.0

# Mixes the epoch into the seed; any odd constant far from small seeds would do.
_EPOCH_STRIDE = 0x9E3779B97F4A7C15 % (1 << 61)


def _as_ids(ids: Sequence[int] | torch.Tensor, what: str) -> torch.Tensor:
    t = torch.as_tensor(ids)
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.int64)  # an empty list comes in as float32
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{what} must be integer example ids, not {t.dtype}")
    return t.detach().reshape(-1).to("cpu", torch.int64)


class PackedBatchSampler(Sampler[list[int]]):
    """Batches of dataset positions in which recordable examples never share a batch with others (unless ``fill``).

    ``ids``: the number of examples N (ids are then the positions 0..N-1), or the (N,)
    example id of each dataset position (what :class:`~unlearning.recorder.DatasetWithIds`
    is given). ``recordable``: the ids whose batches the recorder stores (ids not in the
    data are ignored). ``batch_size``: examples per batch; a short last batch of either
    kind joins the one before it when it has fewer than ``max(2, batch_size // 8)``
    examples. ``seed``: fixes every epoch's batches. ``fill``: each recordable batch also
    holds ``round(fill * its size)`` other examples, drawn anew each epoch from the
    non-recordable ones (which are trained in their own batches too), so that no step
    trains on recordable examples alone (default :data:`DEFAULT_FILL`, none). The recorded
    steps are as many as without fill; a removal then also takes out those steps' share of
    the fill examples' training. ``fill_in_loss=False``: the fill examples only shape
    BatchNorm's batch statistics, so that a recordable batch is normalised like a mixed one;
    the loss leaves them out (:meth:`loss_mask`, which :func:`~unlearning.training.fit` applies;
    in your own loop ``F.cross_entropy(logits[m], yb[m])`` with ``m = sampler.loss_mask(ids)``).
    Yields lists of positions (what
    ``DataLoader(batch_sampler=...)`` expects); ``len()`` is the number of batches per epoch.
    """

    def __init__(self, ids: int | Sequence[int] | torch.Tensor, recordable: Sequence[int] | torch.Tensor,
                 batch_size: int, seed: int = 0, fill: float = DEFAULT_FILL, fill_in_loss: bool = True):
        if isinstance(ids, int) and not isinstance(ids, bool):
            if ids < 0:
                raise ValueError(f"the number of examples must be 0 or more, not {ids}")
            ids = torch.arange(ids)
        self.ids = _as_ids(ids, "PackedBatchSampler ids")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"the batch size must be a whole number of at least 1, not {batch_size!r}")
        self.batch_size = batch_size
        if not (isinstance(fill, (int, float)) and not isinstance(fill, bool) and 0 <= fill <= 16):
            raise ValueError(f"fill must be a number from 0 to 16 (other examples per recordable one), not {fill!r}")
        self.fill = float(fill)
        self.fill_in_loss = bool(fill_in_loss)
        self.seed = int(seed)
        self.epoch = 0
        marked = torch.isin(self.ids, _as_ids(recordable, "recordable ids"))
        self.recordable_ids = self.ids[marked].unique()
        self.recordable_positions = torch.nonzero(marked).flatten()
        self.other_positions = torch.nonzero(~marked).flatten()
        self._n_recordable = len(batch_bounds(len(self.recordable_positions), batch_size))
        self._n_other = len(batch_bounds(len(self.other_positions), batch_size))

    @property
    def recordable_batches(self) -> int:
        """Batches per epoch that hold recordable examples (and only those)."""
        return self._n_recordable

    def __len__(self) -> int:
        return self._n_recordable + self._n_other

    def loss_mask(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """(B,) bool: which examples of a batch (given by example ``ids``, as the loader yields them)
        count in its loss. All of them, except with ``fill_in_loss=False`` in a batch that holds
        recordable ids: then only those (the fill examples shape BatchNorm's statistics alone)."""
        ids = _as_ids(ids, "batch ids")
        mine = torch.isin(ids, self.recordable_ids)
        if self.fill_in_loss or not bool(mine.any()):
            return torch.ones(len(ids), dtype=torch.bool)
        return mine

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass yield ``epoch``'s batches (then ``epoch + 1``'s, and so on)."""
        self.epoch = int(epoch)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Epoch ``epoch``'s batches, each an int64 tensor of dataset positions; a pure function of seed and epoch."""
        gen = torch.Generator().manual_seed((self.seed + (epoch + 1) * _EPOCH_STRIDE) % (1 << 63))

        def cut(positions: torch.Tensor) -> list[torch.Tensor]:
            shuffled = positions[torch.randperm(len(positions), generator=gen)]
            return [shuffled[a:b] for a, b in batch_bounds(len(shuffled), self.batch_size)]

        packed, others = cut(self.recordable_positions), cut(self.other_positions)
        total = len(packed) + len(others)
        # One recordable batch at a random slot in each of len(packed) equal stretches of the epoch.
        slots = set()
        for k in range(len(packed)):
            lo, hi = (k * total) // len(packed), ((k + 1) * total) // len(packed)
            slots.add(lo + int(torch.randint(hi - lo, (1,), generator=gen)))
        if self.fill and len(self.other_positions):
            # Each recordable batch also trains round(fill * size) other examples, drawn anew (they
            # are trained in their own batches too): the recorded step is no longer one-sided.
            packed = [torch.cat([b, self.other_positions[torch.randperm(len(self.other_positions), generator=gen)
                                                         [: round(self.fill * len(b))]]]) for b in packed]
        out, p, o = [], iter(packed), iter(others)
        for i in range(total):
            out.append(next(p) if i in slots else next(o))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        for batch in self.batches(epoch):
            yield batch.tolist()
