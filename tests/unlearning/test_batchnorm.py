"""BatchNorm statistics re-measured from data (what an amnesiac removal cannot subtract)."""

from __future__ import annotations

import torch
from torch import nn

from unlearning.batchnorm import reestimate_batchnorm


def test_running_statistics_become_the_datas_and_no_weight_moves():
    gen = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(96, 4, generator=gen)
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].running_mean.fill_(-5.0)  # stale statistics, as a subtraction leaves them
        model[0].running_var.fill_(0.01)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    assert reestimate_batchnorm(model, x, batch_size=32) == 1
    # A cumulative average over three equal batches: the mean of all 96, the mean of the batch variances.
    assert torch.allclose(model[0].running_mean, x.mean(0), atol=1e-5)
    batch_vars = torch.stack([x[i:i + 32].var(0, unbiased=True) for i in (0, 32, 64)])
    assert torch.allclose(model[0].running_var, batch_vars.mean(0), atol=1e-4)
    assert int(model[0].num_batches_tracked) == 3
    assert all(torch.equal(weights[k], v) for k, v in model.named_parameters())
    assert not model.training and model[0].momentum == 0.1


def test_a_single_leftover_example_joins_the_last_batch_and_no_batchnorm_changes_nothing():
    x = torch.randn(65, 4, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.BatchNorm1d(4))
    reestimate_batchnorm(model, x, batch_size=32)  # 32 + 33: a batch of one would fail in training mode
    assert int(model[0].num_batches_tracked) == 2
    plain = nn.Sequential(nn.Linear(4, 2))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    assert reestimate_batchnorm(plain, x) == 0
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())
