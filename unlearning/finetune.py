"""Fine-tuning on the retained data: the paper's "naive retraining" yardstick, and the
result type every unlearning method returns.

Graves et al. 2021 (Amnesiac Machine Learning, Sec. 6) call this baseline naive
retraining: keep training the trained model on the retained data only. It forgets
slowly (MNIST digit-3 accuracy 62, 80, 54, 61, 9, 5, 5, 3, 1, 0 % over ten epochs),
which is why it is a yardstick rather than a method. Amnesiac's optional repair is
the same loop, a few epochs long.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from unlearning.training import TrainConfig, TrainFunction, train_with

#: Default epochs of :func:`finetune_unlearn`; see benchmarks/results/unlearning.md.
FINETUNE_EPOCHS = 5

ProgressCallback = Callable[[int], None]  # advance(n): n more units of work are done


@dataclass
class UnlearningResult:
    """What an unlearning method returns.

    ``model``: the unlearned model (a new object; the input model is left untouched),
    in eval mode. ``seconds``: wall time of the whole method. ``details``: JSON-able
    numbers the method reports (for amnesiac the batches removed and their fraction
    of all batches; for the training methods the epochs and examples trained on).
    """

    model: nn.Module
    method: str
    seconds: float
    details: dict = field(default_factory=dict)


def retain_mask(n_train: int, forget_ids: torch.Tensor) -> torch.Tensor:
    """Boolean mask (n_train,) that is True for the retained examples."""
    forget_ids = torch.as_tensor(forget_ids, dtype=torch.int64).flatten()
    if forget_ids.numel() and (int(forget_ids.min()) < 0 or int(forget_ids.max()) >= n_train):
        raise ValueError(f"forget ids must lie in 0..{n_train - 1}")
    mask = torch.ones(n_train, dtype=torch.bool)
    mask[forget_ids] = False
    return mask


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                on_progress: ProgressCallback | None = None, train_fn: TrainFunction | None = None,
                full_recipe: bool = False) -> nn.Module:
    """``fit`` with a fresh optimizer (or the user's ``train_fn``), reporting one unit per step; returns the model."""
    callback = None if on_progress is None else (lambda *_: on_progress(1))
    return train_with(model, x, y, config, train_fn, on_step=callback, full_recipe=full_recipe)


def finetune_unlearn(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    forget_ids: torch.Tensor,
    config: TrainConfig,
    *,
    on_progress: ProgressCallback | None = None,
    train_fn: TrainFunction | None = None,
) -> UnlearningResult:
    """Continue training a copy of ``model`` on the retained examples for ``config.epochs``.

    ``train_fn``: the user's training function (:data:`unlearning.training.TrainFunction`),
    called with ``epochs=config.epochs``, instead of the toolkit's loop.

    ``x_train`` (N, C, H, W) and ``y_train`` (N,) are the full training set; the
    examples at ``forget_ids`` are left out. A fresh optimizer is used (the original
    one's state is not kept in a model file). ``config.seed`` fixes the batch order.
    """
    start = time.perf_counter()
    keep = retain_mask(len(y_train), forget_ids)
    unlearned = train_steps(copy.deepcopy(model), x_train[keep], y_train[keep], config, on_progress, train_fn)
    return UnlearningResult(unlearned, "finetune", time.perf_counter() - start, {
        "epochs": config.epochs,
        "retained_examples": int(keep.sum()),
        "config": config.to_dict(),
    })
