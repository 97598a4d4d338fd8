"""Weights as a flat dict, and the update log's identity: initial + recorded deltas = trained.
Shared by the update-log and recorder tests."""

from __future__ import annotations

import torch
from torch import nn

from unlearning import UpdateLog


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating-point buffers (BatchNorm running statistics), cloned."""
    out = {f"p/{k}": p.detach().clone() for k, p in model.named_parameters()}
    out.update({f"b/{k}": b.detach().clone() for k, b in model.named_buffers() if b.is_floating_point()})
    return out


def plus_deltas(initial: dict[str, torch.Tensor], log: UpdateLog, entries=None) -> dict[str, torch.Tensor]:
    """initial + the deltas of ``entries`` (default: every recorded step), summed in float64 in step order."""
    total = {k: v.double().clone() for k, v in initial.items()}
    for entry in log.entries if entries is None else entries:
        params, buffers, _ = log.read(entry)
        for k, d in params.items():
            total[f"p/{k}"] += d.double()
        for k, d in buffers.items():
            total[f"b/{k}"] += d.double()
    return total


def max_error(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
