"""What a recorded step does differently (issue 24): BatchNorm's running statistics, contained momentum.

Real training on the embedded digits with a small BatchNorm network; each test checks the
step's arithmetic against the optimizer's own rules.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from unlearning import PackedBatchSampler, TrainConfig, UpdateLog, UpdateRecorder, amnesiac_unlearn, fit
from unlearning.training import make_optimizer


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def data(digits):
    return digits.x_train[:400], digits.y_train[:400]


def _step(model, optimizer, recorder, x, y, ids):
    recorder.batch(ids)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _warm(model, optimizer, recorder, x, y, steps=5):
    """A few unrecorded steps, so the optimizer has momentum and BatchNorm has running statistics."""
    for k in range(steps):
        idx = torch.arange(100 + 40 * k, 140 + 40 * k)
        _step(model, optimizer, recorder, x[idx], y[idx], idx)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_contained_step_applies_its_gradient_alone_and_leaves_the_momentum(data, tmp_path, kind):
    x, y = data
    model = _net()
    params = list(model.parameters())
    optimizer = {"adam": lambda: torch.optim.Adam(params, lr=1e-2),
                 "adamw": lambda: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
                 "sgd": lambda: torch.optim.SGD(params, lr=0.05, momentum=0.9, dampening=0.2)}[kind]()
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=torch.arange(0, 50), contain_recorded=True)
    recorder.attach(optimizer)
    _warm(model, optimizer, recorder, x, y)
    key = "exp_avg" if kind != "sgd" else "momentum_buffer"
    momentum = [optimizer.state[p][key].clone() for p in params]
    before = [p.detach().clone() for p in params]
    idx = torch.arange(0, 50)  # recordable: a recorded step
    recorder.batch(idx)
    optimizer.zero_grad()
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    grads = [p.grad.clone() for p in params]
    optimizer.step()
    for p, g, b, m in zip(params, grads, before, momentum):
        state = optimizer.state[p]
        assert torch.equal(state[key], m), "the recorded gradient entered the momentum"
        if kind == "sgd":
            expected = b - 0.05 * (1 - 0.2) / (1 - 0.9) * g
        else:
            t = float(state["step"])
            base = b * (1 - 1e-2 * 0.1) if kind == "adamw" else b
            expected = base - 1e-2 * g / ((state["exp_avg_sq"] / (1 - 0.999 ** t)).sqrt() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
    # The optimizer's own rules are back for the next (unrecorded) step.
    group = optimizer.param_groups[0]
    assert (group["betas"] == (0.9, 0.999)) if kind != "sgd" else (group["momentum"] == 0.9 and group["lr"] == 0.05)
    _step(model, optimizer, recorder, x[300:340], y[300:340], torch.arange(300, 340))
    assert not all(torch.equal(optimizer.state[p][key], m) for p, m in zip(params, momentum))
    summary = recorder.close()
    assert summary["recorded"] == 1 and summary["total_steps"] == 7


def test_unrecorded_steps_are_those_of_the_plain_optimizer(data, tmp_path):
    x, y = data
    plain, options = _net(), _net()
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-2)
    opt = torch.optim.Adam(options.parameters(), lr=1e-2)
    recorder = UpdateRecorder(options, tmp_path / "log", record_ids=torch.tensor([399]), contain_recorded=True,
                              normalize_recorded=True)
    recorder.attach(opt)
    for k in range(5):
        idx = torch.arange(40 * k, 40 * k + 40)
        for model, optimizer in ((plain, opt_plain), (options, opt)):
            if optimizer is opt:
                recorder.batch(idx)
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), options.state_dict().values()))
    assert recorder.close()["recorded"] == 0


def test_recorded_batch_is_normalised_with_the_running_statistics(data, tmp_path):
    x, y = data
    model = _net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=torch.arange(0, 50), normalize_recorded=True)
    recorder.attach(optimizer)
    _warm(model, optimizer, recorder, x, y)
    bn = model[2]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    idx = torch.arange(0, 50)
    recorder.batch(idx)
    assert not bn.training  # from batch() to the end of the step
    with torch.no_grad():
        expected = model(x[idx])  # eval mode: what the recorded forward pass must compute
    optimizer.zero_grad()
    logits = model(x[idx])
    torch.testing.assert_close(logits, expected)
    F.cross_entropy(logits, y[idx]).backward()
    optimizer.step()
    assert bn.training
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    recorder.close()
    log = UpdateLog.open(tmp_path / "log")
    step = log.read_step(log.entries[0])
    assert not step["b/2.running_mean"].any() and not step["b/2.running_var"].any()


def test_other_optimizers_are_refused_at_attach(tmp_path):
    model = _net()
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=torch.arange(5), contain_recorded=True)
    with pytest.raises(ValueError, match="Adam, AdamW and SGD, not RMSprop"):
        recorder.attach(torch.optim.RMSprop(model.parameters()))
    recorder.discard()


def test_packed_fit_with_both_removes_the_class_and_keeps_the_others(digits, tmp_path):
    """fit with the sampler and both options: the recorded deltas hold the class's training, so
    subtracting them leaves the class forgotten and the other digits as good as before."""
    x, y = digits.x_train, digits.y_train
    forget = torch.nonzero(y == 3).flatten()
    config = TrainConfig(epochs=8, batch_size=64, lr=3e-3, seed=0)
    model = _net()
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=forget, normalize_recorded=True,
                              contain_recorded=True)
    optimizer = recorder.attach(make_optimizer(model, config))
    fit(model, x, y, config, optimizer=optimizer,
        batch_sampler=PackedBatchSampler(len(y), forget, config.batch_size, seed=0))
    summary = recorder.close()
    assert summary["recorded"] == 8 * PackedBatchSampler(len(y), forget, 64).recordable_batches
    others = digits.y_test != 3
    res = amnesiac_unlearn(copy.deepcopy(model), tmp_path / "log", forget, log_sha256=summary["log_sha256"],
                           x_train=x, y_train=y)
    before = (model(digits.x_test[others]).argmax(1) == digits.y_test[others]).float().mean()
    after = (res.model(digits.x_test[others]).argmax(1) == digits.y_test[others]).float().mean()
    assert (res.model(digits.x_test[~others]).argmax(1) == 3).float().mean() < 0.1
    assert after > before - 0.05
