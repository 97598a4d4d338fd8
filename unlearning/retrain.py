"""Retraining from scratch without the forget set: the gold reference.

An unlearned model is judged against a model that never saw the forget set
(SalUn, Fan et al. ICLR 2024: UA, RA, TA and their "Avg. Gap" to retrain). Same
architecture, same recipe, fresh initial weights, the retained data only.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from unlearning.finetune import ProgressCallback, UnlearningResult, retain_mask, train_steps
from unlearning.training import TrainConfig, TrainFunction


def retrain_unlearn(
    make_model: Callable[[], nn.Module],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    forget_ids: torch.Tensor,
    config: TrainConfig,
    *,
    on_progress: ProgressCallback | None = None,
    train_fn: TrainFunction | None = None,
) -> UnlearningResult:
    """Train ``make_model()`` (a freshly initialised model) with ``config`` on the retained examples.

    ``train_fn``: the user's training function instead of the toolkit's loop, called without
    ``epochs`` (the user's full recipe, their own default).

    ``x_train`` (N, C, H, W) and ``y_train`` (N,) are the full training set; the
    examples at ``forget_ids`` are left out. ``config`` is the original recipe.
    """
    start = time.perf_counter()
    keep = retain_mask(len(y_train), forget_ids)
    model = train_steps(make_model(), x_train[keep], y_train[keep], config, on_progress, train_fn,
                        full_recipe=True)
    return UnlearningResult(model, "retrain", time.perf_counter() - start, {
        "epochs": config.epochs,
        "retained_examples": int(keep.sum()),
        "config": config.to_dict(),
    })
