"""BatchNorm running statistics re-estimated from data, without touching a weight.

Subtracting some of a running average's updates is not an inverse: BatchNorm's running
mean and variance after an amnesiac removal describe neither the trained nor the
unlearned network (a variance can even come out at or below 0). The weights after the
removal are exact, so the statistics that go with them can be measured exactly: one pass
of forward steps in training mode over examples that are not forgotten, with a
cumulative average (``momentum=None``) from a reset, gives each BatchNorm layer the
mean and variance of its inputs under the unlearned weights (the "BN recalibration" of
Li et al. 2016, "Revisiting Batch Normalization For Practical Domain Adaptation").
No gradient is computed and no parameter changes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> int:
    """Reset and re-measure every BatchNorm layer's running mean and variance on images ``x`` (N, C, H, W).

    Forward passes only, in batches of ``batch_size`` (a short last batch joins the one
    before it, so no batch normalises a single image). ``num_batches_tracked`` counts the
    batches seen. The model is left in eval mode. Returns the number of layers re-estimated
    (0 when the model has no BatchNorm, or ``x`` is empty: then nothing changes).
    """
    layers = batchnorm_layers(model)
    if not layers or len(x) == 0:
        model.eval()
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        starts = list(range(0, len(x), batch_size))
        if len(starts) > 1 and len(x) - starts[-1] < 2:
            starts.pop()
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else len(x)
            model(x[start:stop])
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()
    return len(layers)
