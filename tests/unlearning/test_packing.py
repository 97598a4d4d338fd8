"""Packed batches (issue 18): recordable examples in batches of their own, real training, real logs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearning import (DatasetWithIds, PackedBatchSampler, TrainConfig, UpdateLog, UpdateRecorder,
                        amnesiac_unlearn, fit)
from unlearning.packing import DEFAULT_FILL
from unlearning.training import batch_bounds, make_optimizer


def _recordable(n: int, share: float, seed: int = 3) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: int(n * share)]


def test_every_epoch_is_a_permutation_and_batches_are_pure():
    n, marked = 1000, _recordable(1000, 0.1)
    sampler = PackedBatchSampler(n, marked, batch_size=32, seed=0)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler)
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(n))
        kinds = [bool(torch.isin(b, marked).all()) for b in batches]
        assert all(torch.isin(b, marked).all() or not torch.isin(b, marked).any() for b in batches)
        assert sum(kinds) == sampler.recordable_batches == len(batch_bounds(100, 32))


def test_same_seed_same_batches_other_epoch_or_seed_others():
    marked = _recordable(500, 0.05)
    a = PackedBatchSampler(500, marked, 16, seed=7)
    b = PackedBatchSampler(500, marked, 16, seed=7)
    same = [torch.equal(x, y) for x, y in zip(a.batches(0), b.batches(0))]
    assert all(same)
    assert not torch.equal(torch.cat(a.batches(0)), torch.cat(a.batches(1)))
    assert not torch.equal(torch.cat(a.batches(0)), torch.cat(PackedBatchSampler(500, marked, 16, seed=8).batches(0)))
    # Iterating goes epoch by epoch, set_epoch rewinds: as a DataLoader sees it.
    first, second = list(a), list(a)
    assert first == [t.tolist() for t in b.batches(0)] and second == [t.tolist() for t in b.batches(1)]
    a.set_epoch(0)
    assert list(a) == first


def test_recordable_batches_are_spread_through_the_epoch():
    n, batch = 6400, 64
    sampler = PackedBatchSampler(n, _recordable(n, 0.1), batch, seed=1)
    k, total = sampler.recordable_batches, len(sampler)
    for epoch in range(4):
        marked = torch.isin(torch.arange(n), sampler.recordable_positions)
        places = [i for i, b in enumerate(sampler.batches(epoch)) if marked[b].all()]
        assert len(places) == k == 10
        # One in each tenth of the epoch: never bunched at the start or the end.
        assert all(j * total // k <= p < (j + 1) * total // k for j, p in enumerate(places))


def test_short_last_batches_are_merged_as_fit_merges_them():
    # 66 recordable: 64 + 2 -> one batch of 66; 134 others: 64 + 64 + 6 -> 64 + 70.
    sampler = PackedBatchSampler(200, torch.arange(66), 64, seed=0)
    sizes = sorted(len(b) for b in sampler.batches(0))
    assert sizes == [64, 66, 70] and len(sampler) == 3


def test_no_recordable_ids_and_ids_other_than_positions():
    plain = PackedBatchSampler(130, [], 64)
    assert plain.recordable_batches == 0 and len(plain) == len(batch_bounds(130, 64))
    # Stable example ids that are not positions: recordable ids are matched to the positions holding them.
    ids = torch.arange(1000, 1130)
    sampler = PackedBatchSampler(ids, recordable=[1000, 1005, 1129, 99999], batch_size=4)
    marked = [b for b in sampler.batches(0) if torch.isin(b, torch.tensor([0, 5, 129])).any()]
    assert len(marked) == 1 and sorted(marked[0].tolist()) == [0, 5, 129]
    with pytest.raises(ValueError, match="batch size"):
        PackedBatchSampler(10, [1], 0)
    with pytest.raises(TypeError, match="integer"):
        PackedBatchSampler(10, torch.tensor([0.5]), 4)


def test_fill_adds_other_examples_to_recordable_batches_only():
    n, marked = 1000, _recordable(1000, 0.1)
    plain = PackedBatchSampler(n, marked, batch_size=32, seed=0)
    filled = PackedBatchSampler(n, marked, batch_size=32, seed=0, fill=0.5)
    assert len(filled) == len(plain) and filled.recordable_batches == plain.recordable_batches
    is_marked = torch.isin(torch.arange(n), marked)
    for epoch in range(2):
        batches = filled.batches(epoch)
        # Still every example at least once an epoch; the extra ones are others, in recordable batches.
        assert torch.equal(torch.cat(batches).unique(), torch.arange(n))
        mixed = [b for b in batches if is_marked[b].any()]
        assert len(mixed) == filled.recordable_batches
        for b in mixed:
            own = int(is_marked[b].sum())
            assert len(b) - own == round(0.5 * own) and len(b.unique()) == len(b)
        assert sum(len(b) for b in batches) == n + sum(round(0.5 * int(is_marked[b].sum())) for b in mixed)
    with pytest.raises(ValueError, match="fill"):
        PackedBatchSampler(n, marked, 32, fill=-1)


def _toy(n: int = 400, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=gen)
    y = (x.flatten(1).sum(1) > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    return x, y, model


def test_fit_with_the_sampler_records_only_the_packed_steps(tmp_path):
    x, y, model = _toy()
    marked = _recordable(len(y), 0.05)
    config = TrainConfig(epochs=3, batch_size=32, seed=0)
    sampler = PackedBatchSampler(len(y), marked, config.batch_size, seed=config.seed)
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=marked, dtype=torch.float64, record="random")
    fit(model, x, y, config, optimizer=recorder.attach(make_optimizer(model, config)), batch_sampler=sampler)
    summary = recorder.close()
    assert summary["total_steps"] == config.epochs * len(sampler)
    assert summary["recorded"] == config.epochs * sampler.recordable_batches == 3
    log = UpdateLog.open(tmp_path / "log")
    assert all(set(e.ids) <= set(marked.tolist()) for e in log.entries)
    res = amnesiac_unlearn(model, tmp_path / "log", marked, log_sha256=summary["log_sha256"])
    assert res.details["batches_removed"] == 3 and res.details["retained_examples_in_removed_batches"] == 0
    # With fill 1 each recorded batch is the 20 recordable examples and 20 others: as many steps recorded.
    x, y, model = _toy()
    sampler = PackedBatchSampler(len(y), marked, config.batch_size, seed=config.seed, fill=1)
    recorder = UpdateRecorder(model, tmp_path / "filled", record_ids=marked, dtype=torch.float64, record="random")
    fit(model, x, y, config, optimizer=recorder.attach(make_optimizer(model, config)), batch_sampler=sampler)
    summary = recorder.close()
    assert summary["recorded"] == 3 and summary["total_steps"] == config.epochs * len(sampler)
    entries = UpdateLog.open(tmp_path / "filled").entries
    assert all(len(set(e.ids) & set(marked.tolist())) == 20 and len(e.ids) == 40 for e in entries)
    res = amnesiac_unlearn(model, tmp_path / "filled", marked, log_sha256=summary["log_sha256"])
    assert res.details["batches_removed"] == 3 and 20 <= res.details["retained_examples_in_removed_batches"] <= 60


def test_users_loop_with_a_dataloader(tmp_path):
    """``DataLoader(batch_sampler=...)`` with the recorder attached: one recorded step per packed batch."""
    x, y, model = _toy()
    marked = _recordable(len(y), 0.1)
    sampler = PackedBatchSampler(len(y), marked, batch_size=32, seed=0)
    loader = DataLoader(DatasetWithIds(TensorDataset(x, y)), batch_sampler=sampler)
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=marked)
    optimizer = recorder.attach(torch.optim.Adam(model.parameters(), lr=1e-2))
    for epoch in range(2):
        for ids, xb, yb in loader:
            recorder.batch(ids, epoch=epoch)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    summary = recorder.close()
    assert summary["recorded"] == 2 * sampler.recordable_batches == 4
    assert summary["total_steps"] == 2 * len(sampler)


def test_audit_train_packs_by_default_and_records_it(digits, tmp_path):
    from audit.training import train_model

    config = TrainConfig(epochs=1, seed=0)
    packed = train_model(digits, tmp_path / "p.pt", "smallcnn", config, record="class=3", show_progress=False)
    plain = train_model(digits, tmp_path / "u.pt", "smallcnn", config, record="class=3", packing="off",
                        show_progress=False)
    assert packed.model_file.update_log["packing"] == "on" and plain.model_file.update_log["packing"] == "off"
    threes = int((digits.y_train == 3).sum())
    assert packed.log_batches == len(batch_bounds(threes, 64)) < plain.log_batches
    assert packed.model_file.update_log["fill"] == DEFAULT_FILL == 0
    log = UpdateLog.open(packed.model_file.log_dir)
    assert all(bool((digits.y_train[torch.tensor(e.ids)] == 3).all()) for e in log.entries)
    # "all" records every batch: nothing to pack.
    every = train_model(digits, tmp_path / "a.pt", "smallcnn", config, record="all", show_progress=False)
    assert every.model_file.update_log["packing"] == "off"


def test_bad_packing_value_is_one_line_and_exit_2(tmp_path):
    from tests.cli_runner import run_audit

    run = run_audit(["train", "--epochs", "1", "--record", "class=3", "--packing", "maybe", "--out", tmp_path / "m.pt"],
                    timeout=300)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "--packing" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "m.pt").exists()


def test_fill_out_of_the_loss_shapes_batchnorm_only(tmp_path):
    """fill_in_loss=False: in a recordable batch only the recordable examples count in fit's loss, so
    the fill examples' labels change nothing, while their images still move BatchNorm's statistics."""
    x, y, _ = _toy()
    marked = _recordable(len(y), 0.05)
    sampler = PackedBatchSampler(len(y), marked, 32, seed=0, fill=1, fill_in_loss=False)
    packed = next(b for b in sampler.batches(0) if torch.isin(b, marked).any())
    other = next(b for b in sampler.batches(0) if not torch.isin(b, marked).any())
    assert torch.equal(sampler.loss_mask(packed), torch.isin(packed, marked))
    assert sampler.loss_mask(other).all()
    assert PackedBatchSampler(len(y), marked, 32, seed=0, fill=1).loss_mask(packed).all()

    def train(labels, images):
        _, _, model = _toy()
        config = TrainConfig(epochs=1, batch_size=32, seed=0)
        recorder = UpdateRecorder(model, tmp_path / f"log{len(list(tmp_path.iterdir()))}", record_ids=marked)
        # One epoch of the recordable batches alone: the fill examples appear only as fill.
        only = _OnlyPacked(sampler, marked)
        fit(model, images, labels, config, optimizer=recorder.attach(make_optimizer(model, config)),
            batch_sampler=only)
        recorder.close()
        return torch.cat([t.flatten() for t in model.state_dict().values() if t.is_floating_point()])

    base = train(y, x)
    flipped = y.clone()
    flipped[~torch.isin(torch.arange(len(y)), marked)] ^= 1  # every fill example's label changed
    assert torch.equal(train(flipped, x), base)
    moved = x.clone()
    moved[~torch.isin(torch.arange(len(y)), marked)] += 1.0  # the fill examples' images changed
    assert not torch.equal(train(y, moved), base)


class _OnlyPacked:
    """A batch plan of a sampler's recordable batches only, with its loss mask."""

    def __init__(self, sampler, marked):
        self.sampler, self.marked = sampler, marked

    def batches(self, epoch):
        return [b for b in self.sampler.batches(epoch) if torch.isin(b, self.marked).any()]

    def __len__(self):
        return self.sampler.recordable_batches

    def loss_mask(self, ids):
        return self.sampler.loss_mask(ids)
