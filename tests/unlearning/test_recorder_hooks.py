"""The update recorder on torch's optimizer step hooks: a real optimizer, so LR schedulers,
gradient clipping and GradScaler work, and the log stays exact enough to undo steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from unlearning import DatasetWithIds, MissingBatchIds, UpdateLog, UpdateRecorder, amnesiac_unlearn
from unlearning.recorder import recorder_of

from tests.unlearning.log_arithmetic import max_error, model_state, plus_deltas


def _mlp(seed: int = 0) -> nn.Module:
    """A small MLP with BatchNorm, whose running statistics move in every forward pass."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def _loader(digits, batch_size: int = 100, n: int | None = None) -> DataLoader:
    n = n or len(digits.y_train)
    data = DatasetWithIds(TensorDataset(digits.x_train[:n], digits.y_train[:n]))
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))


def test_steplr_and_clipping_identity_and_amnesiac_removal(digits, tmp_path):
    """Adam + StepLR + clip_grad_norm_ in a user's loop: initial + all deltas == final, and
    amnesiac removal leaves initial + the deltas of the steps that never saw a forget id."""
    model = _mlp()
    initial = model_state(model)
    n = len(digits.y_train)
    recorder = UpdateRecorder(model, tmp_path / "log", dtype=torch.float64, all_ids=torch.arange(n))
    optimizer = recorder.attach(torch.optim.Adam(model.parameters(), lr=1e-2))
    assert isinstance(optimizer, torch.optim.Optimizer) and recorder_of(optimizer) is recorder
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    grad_norms, lrs = [], []
    model.train()
    for epoch in range(3):
        lrs.append(scheduler.get_last_lr()[0])
        for ids, xb, yb in _loader(digits):
            recorder.batch(ids, epoch=epoch)
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            grad_norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)))
            optimizer.step()
        scheduler.step()
    summary = recorder.close()
    final = model_state(model)

    assert lrs == [1e-2, 5e-3, 2.5e-3]                       # the scheduler drove the real optimizer
    assert max(grad_norms) > 0.5                            # and clipping did clip
    log = UpdateLog.open_trusted(tmp_path / "log", summary["log_sha256"])
    steps_per_epoch = -(-n // 100)
    assert summary["total_steps"] == summary["recorded"] == len(log.entries) == 3 * steps_per_epoch
    assert [e.epoch for e in log] == [e for e in range(3) for _ in range(steps_per_epoch)]
    ids = torch.cat([log.read(e)[2] for e in log])
    assert torch.equal(torch.bincount(ids, minlength=n), torch.full((n,), 3))
    assert max_error(plus_deltas(initial, log, log.entries), final) == 0.0

    forget = torch.tensor([5, 17, 400])
    result = amnesiac_unlearn(model, tmp_path / "log", forget, log_sha256=summary["log_sha256"])
    removed = {e.step for e in log.steps_touching(forget)}
    assert result.details["batches_removed"] == len(removed) and 0 < len(removed) <= 9
    kept = [e for e in log if e.step not in removed]
    # float64 deltas, float32 weights: the two sides differ by float32 rounding only.
    assert max_error(model_state(result.model), plus_deltas(initial, log, kept)) < 1e-6
    assert max_error(model_state(model), final) == 0.0           # the trained model itself is untouched


def test_grad_scaler_skipped_steps_are_not_recorded(digits, tmp_path):
    """GradScaler skips a step with inf gradients without calling optimizer.step: no entry.
    The skipped batch's ids go with the next step, which carries its BatchNorm update."""
    model = _mlp()
    initial = model_state(model)
    recorder = UpdateRecorder(model, tmp_path / "log", dtype=torch.float64)
    optimizer = recorder.attach(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    scaler = torch.amp.GradScaler("cpu")
    batches = list(torch.arange(250).split(50))   # batches 2 and 4 overflow; 4 is the last
    model.train()
    for i, ids in enumerate(batches):
        recorder.batch(ids)
        before = model_state(model)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(digits.x_train[ids]), digits.y_train[ids])
        scaler.scale(loss * (1e38 if i in (2, 4) else 1.0)).backward()   # 1e38 * 65536 overflows float32
        scaler.step(optimizer)
        scaler.update()
        moved = {k for k in before if not torch.equal(before[k], model_state(model)[k])}
        if i in (2, 4):
            assert not any(k.startswith("p/") for k in moved)   # skipped: the weights did not move...
            assert any("running_mean" in k for k in moved)      # ...but BatchNorm's statistics did
    assert scaler.get_scale() == 65536.0 / 4
    assert recorder.steps == 3
    summary = recorder.close()

    log = UpdateLog.open(tmp_path / "log")
    recorded_ids = [log.read(e)[2] for e in log]
    assert [e.step for e in log] == [0, 1, 2, 3]
    assert torch.equal(recorded_ids[0], batches[0]) and torch.equal(recorded_ids[1], batches[1])
    assert torch.equal(recorded_ids[2], torch.cat([batches[2], batches[3]]))
    # The last batch's step was skipped too: close() records its BatchNorm update alone.
    assert torch.equal(recorded_ids[3], batches[4])
    last_params, last_buffers, _ = log.read(log.entries[3])
    assert all(not d.any() for d in last_params.values()) and any(d.any() for d in last_buffers.values())
    assert summary["total_steps"] == 4
    assert max_error(plus_deltas(initial, log, log.entries), model_state(model)) == 0.0


def test_a_step_without_ids_is_refused_before_it_changes_anything(digits, tmp_path):
    model = _mlp()
    recorder = UpdateRecorder(model, tmp_path / "log")
    optimizer = recorder.attach(torch.optim.SGD(model.parameters(), lr=0.1))
    xb, yb = digits.x_train[:32], digits.y_train[:32]
    F.cross_entropy(model(xb), yb).backward()
    before = model_state(model)
    with pytest.raises(MissingBatchIds) as err:
        optimizer.step()
    assert "recorder.batch(ids)" in str(err.value) and "\n" not in str(err.value)
    assert max_error(model_state(model), before) == 0.0 and recorder.steps == 0

    recorder.batch(torch.arange(32))
    optimizer.step()
    with pytest.raises(MissingBatchIds):   # ids name one step; the next needs its own
        optimizer.step()
    with pytest.raises(TypeError, match="integer example ids"):
        recorder.batch(torch.zeros(4))
    assert recorder.close()["recorded"] == 1


def test_wrap_returns_the_real_optimizer_and_step_ids_keyword_works(digits, tmp_path):
    """The earlier spelling: recorder.wrap(opt) and optimizer.step(ids=..., epoch=...), here under StepLR."""
    model = _mlp()
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=torch.tensor([3]), record="samples")
    optimizer = recorder.wrap(torch.optim.SGD(model.parameters(), lr=0.1))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)   # replaces optimizer.step
    assert isinstance(optimizer, torch.optim.SGD)
    for epoch, ids in enumerate([torch.arange(0, 20), torch.arange(20, 40), torch.tensor([3, 50, 51])]):
        optimizer.zero_grad()
        F.cross_entropy(model(digits.x_train[ids]), digits.y_train[ids]).backward()
        optimizer.step(ids=ids, epoch=epoch)
        scheduler.step()
    recorder.close()
    log = UpdateLog.open(tmp_path / "log")
    assert [(e.step, e.epoch, e.ids) for e in log] == [(0, 0, list(range(20))), (2, 2, [3, 50, 51])]


def test_detach_and_close_remove_the_hooks(digits, tmp_path):
    model = _mlp()
    recorder = UpdateRecorder(model, tmp_path / "log")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert recorder.attach(optimizer) is optimizer and recorder.attach(optimizer) is optimizer
    assert len(optimizer._optimizer_step_pre_hooks) == len(optimizer._optimizer_step_post_hooks) == 1
    with pytest.raises(ValueError, match="already records another optimizer"):
        recorder.attach(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="already has an UpdateRecorder"):
        UpdateRecorder(model, tmp_path / "other").attach(optimizer)
    with pytest.raises(ValueError, match="not parameters of the recorded model"):
        UpdateRecorder(model, tmp_path / "third").attach(torch.optim.SGD(_mlp(1).parameters(), lr=0.1))

    recorder.detach()
    assert recorder_of(optimizer) is None and not optimizer._optimizer_step_pre_hooks
    F.cross_entropy(model(digits.x_train[:16]), digits.y_train[:16]).backward()
    optimizer.step()                           # unrecorded, and no ids needed
    assert recorder.steps == 0

    recorder.attach(optimizer)
    recorder.batch(range(16))
    optimizer.step()
    assert recorder.close()["recorded"] == 1
    assert recorder_of(optimizer) is None
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


def test_dataset_with_ids_yields_ids_first(digits):
    data = TensorDataset(digits.x_train[:10], digits.y_train[:10])
    ids, xb, yb = next(iter(DataLoader(DatasetWithIds(data), batch_size=4)))
    assert ids.dtype == torch.int64 and ids.tolist() == [0, 1, 2, 3] and torch.equal(yb, digits.y_train[:4])
    stable = torch.arange(100, 110)
    ids, xb, yb = next(iter(DataLoader(DatasetWithIds(data, stable), batch_size=4)))
    assert ids.tolist() == [100, 101, 102, 103] and xb.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="one id per example"):
        DatasetWithIds(data, torch.arange(3))
