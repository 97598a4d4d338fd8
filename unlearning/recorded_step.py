"""What a recorded step of packed training does differently from the others (issue 24).

With :class:`~unlearning.packing.PackedBatchSampler` a recorded step trains recordable
examples alone: one class, for a class record. Two things then go wrong that do not in a
mixed batch, and :class:`~unlearning.recorder.UpdateRecorder` can fix both for the steps it
records (``normalize_recorded``, ``contain_recorded``):

* **BatchNorm in training mode normalises a one-class batch with that class's own mean
  and variance**, so whatever all its examples share is subtracted away in the very step
  that should learn it, while at test time the running statistics of all the data are
  used. ``running_statistics`` puts the BatchNorm layers in eval mode for the recorded
  batch's forward pass: it is normalised as a test image would be (and leaves the running
  statistics alone, so the recorded step stores no buffer change).
* **The optimizer's momentum spreads a step's gradient over the following steps**: with
  Adam (beta1 = 0.9) a recorded step applies a tenth of its own gradient and nine tenths of
  the retained batches' momentum, and its own gradient is applied by the next 20-40
  steps, which are not recorded. Subtracting the step then removes mostly retained
  training and leaves most of the forgotten batch's. ``contain_momentum`` makes the
  recorded step apply its gradient's whole momentum-carried influence at once, without the
  momentum of the others and without leaving its gradient in the momentum: for Adam the
  step is ``-lr * g / (sqrt(v_hat) + eps)`` (what ``(1 - beta1) * sum_k beta1^k`` of the
  same ``g`` would apply over the following steps at a constant ``v``), the second moment
  taking ``g^2`` as usual; for SGD with momentum ``mu`` and dampening ``d`` it is
  ``-lr * (1 - d) / (1 - mu) * g``. Only Adam, AdamW and SGD are known.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Optimizers whose momentum :func:`contain_momentum` knows how to keep out of a step.
CONTAINABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def check_containable(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError unless :func:`contain_momentum` knows ``optimizer``'s kind."""
    if not isinstance(optimizer, CONTAINABLE):
        raise ValueError(f"contain_recorded=True knows Adam, AdamW and SGD, not {type(optimizer).__name__}; "
                         "pass contain_recorded=False to record its steps as they are")


def running_statistics(model: nn.Module) -> list[_BatchNorm]:
    """Put every BatchNorm layer of ``model`` that is in training mode into eval mode; returns them."""
    switched = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    for m in switched:
        m.eval()
    return switched


def batch_statistics(switched: list[_BatchNorm]) -> None:
    """Undo :func:`running_statistics`."""
    for m in switched:
        m.train()


@torch.no_grad()
def contain_momentum(optimizer: torch.optim.Optimizer) -> list[tuple[dict, Any]]:
    """Prepare ``optimizer`` for one step whose gradient stays out of its momentum; returns what
    :func:`release_momentum` needs to put the optimizer back after the step."""
    undo: list[tuple[dict, Any]] = []
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        for group in optimizer.param_groups:
            saved = {p: optimizer.state[p]["exp_avg"].clone() for p in group["params"]
                     if "exp_avg" in optimizer.state.get(p, {})}
            undo.append((group, ("betas", group["betas"], saved)))
            beta1, beta2 = group["betas"]
            # beta1 = 0: the step's first moment is its own gradient (bias correction 1 - 0^t = 1).
            group["betas"] = (0.0, beta2)
    elif isinstance(optimizer, torch.optim.SGD):
        for group in optimizer.param_groups:
            mu, damp = group["momentum"], group["dampening"]
            undo.append((group, ("sgd", group["lr"], mu)))
            if mu:
                group["lr"] = group["lr"] * (1 - damp) / (1 - mu)
                group["momentum"] = 0.0  # SGD then neither reads nor writes its momentum buffer
    return undo


@torch.no_grad()
def release_momentum(optimizer: torch.optim.Optimizer, undo: list[tuple[dict, Any]]) -> None:
    """Put ``optimizer`` back as :func:`contain_momentum` found it (its momentum as it was before the step)."""
    for group, (kind, a, b) in undo:
        if kind == "betas":
            group["betas"] = a
            for p in group["params"]:
                state = optimizer.state.get(p, {})
                if "exp_avg" in state:
                    if p in b:
                        state["exp_avg"].copy_(b[p])
                    else:
                        state["exp_avg"].zero_()  # the step created it: no momentum before
        else:
            group["lr"], group["momentum"] = a, b
