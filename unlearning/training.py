"""The supervised training loop every method shares (retrain, finetune, relabel, the recipes).

Plain torch in, plain torch out. Batches are drawn from a seeded permutation of the
examples each epoch, so the same seed gives the same batches; the ids of each batch
reach the update recorder attached to the optimizer, if any (see
:mod:`unlearning.recorder`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from unlearning.recorder import recorder_of

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. ``lr`` is the step size; ``momentum`` applies to SGD only."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 or more, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, not {self.lr}")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    config.validate()
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


StepCallback = Callable[[int, int, int], None]  # (epoch, step_in_epoch, steps_per_epoch)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    ids: torch.Tensor | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    on_step: StepCallback | None = None,
) -> nn.Module:
    """Train ``model`` in place on images ``x`` (N, C, H, W) and labels ``y`` (N,).

    ``ids`` (N,) are the stable example ids given to ``recorder.batch`` when an
    :class:`~unlearning.recorder.UpdateRecorder` is attached to ``optimizer``; by
    default ``arange(N)``. The model is left in eval mode.
    """
    config.validate()
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} examples but y has {n}")
    if ids is None:
        ids = torch.arange(n)
    optimizer = optimizer or make_optimizer(model, config)
    recorder = recorder_of(optimizer)
    torch.manual_seed(config.seed)  # dropout and any other layer randomness
    order_rng = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(n, generator=order_rng)
        for step in range(steps_per_epoch):
            idx = perm[step * config.batch_size : (step + 1) * config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            if recorder is not None:
                recorder.batch(ids[idx], epoch=epoch)
            optimizer.step()
            if on_step is not None:
                on_step(epoch, step, steps_per_epoch)
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, num_classes) in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]; NaN for an empty set."""
    if len(y) == 0:
        return float("nan")
    return float((predict_logits(model, x).argmax(1) == y).float().mean())


def per_class_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy per class (None where a class has no example)."""
    pred = predict_logits(model, x).argmax(1)
    out: list[float | None] = []
    for c in range(num_classes):
        mask = y == c
        out.append(float((pred[mask] == c).float().mean()) if mask.any() else None)
    return out
