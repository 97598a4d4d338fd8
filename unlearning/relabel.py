"""Relabel unlearning: the paper's "Unlearning" (later papers' "RL" / "random labels").

Graves et al. 2021, Sec. 5: every example to forget gets a uniformly random
*incorrect* label, drawn once, and the model keeps training on them together with
the retained data (Adam, lr 1e-3, batch 64, a few epochs; CIFAR-100 target accuracy
~0 within 5 epochs). For individual samples (their membership-inference setting) the
samples are dropped and a few relabelled copies inserted instead; here ``copies``
relabelled copies of each forget example replace it, each copy with its own wrong
label. ``copies=1`` is the class-level method.

Drawing only from the *other* classes (as SSD's variant does; SalUn's draws from all
classes) guarantees that no example keeps its true label, so the training signal
on a forget example always points away from it.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from unlearning.finetune import ProgressCallback, UnlearningResult, retain_mask, train_steps
from unlearning.training import TrainConfig, TrainFunction

#: Default epochs and copies; see benchmarks/results/unlearning.md for why.
RELABEL_EPOCHS = 2
RELABEL_SAMPLE_COPIES = 3


def random_wrong_labels(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A label for each of ``y`` (N,), uniform over the ``num_classes - 1`` other classes.

    ``(y + U{1..C-1}) mod C`` is uniform over the other classes and never ``y`` itself.
    """
    if num_classes < 2:
        raise ValueError("relabelling needs at least two classes")
    y = torch.as_tensor(y, dtype=torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    offset = torch.randint(1, num_classes, y.shape, generator=torch.Generator().manual_seed(seed))
    return (y + offset) % num_classes


def relabelled_training_set(
    x_train: torch.Tensor, y_train: torch.Tensor, forget_ids: torch.Tensor, num_classes: int, seed: int,
    copies: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The retained examples with their labels plus ``copies`` wrongly labelled copies of each forget example."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    keep = retain_mask(len(y_train), forget_ids)
    x_forget = x_train[~keep].repeat(copies, 1, 1, 1)
    y_wrong = random_wrong_labels(y_train[~keep].repeat(copies), num_classes, seed)
    return torch.cat([x_train[keep], x_forget]), torch.cat([y_train[keep], y_wrong])


def relabel_unlearn(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    forget_ids: torch.Tensor,
    config: TrainConfig,
    *,
    num_classes: int,
    seed: int = 0,
    copies: int = 1,
    on_progress: ProgressCallback | None = None,
    train_fn: TrainFunction | None = None,
) -> UnlearningResult:
    """Train a copy of ``model`` for ``config.epochs`` on the retained data plus the relabelled forget data.

    ``seed`` draws the wrong labels (once, before training); ``config.seed`` the batch
    order. ``copies``: relabelled copies per forget example (1 for class forgetting,
    a few for individual samples). A fresh optimizer is used, or the user's ``train_fn``
    (:data:`unlearning.training.TrainFunction`) with ``epochs=config.epochs``.
    """
    start = time.perf_counter()
    x, y = relabelled_training_set(x_train, y_train, forget_ids, num_classes, seed, copies)
    unlearned = train_steps(copy.deepcopy(model), x, y, config, on_progress, train_fn)
    n_forget = len(y_train) - int(retain_mask(len(y_train), forget_ids).sum())
    return UnlearningResult(unlearned, "relabel", time.perf_counter() - start, {
        "epochs": config.epochs,
        "copies": copies,
        "relabelled_examples": n_forget * copies,
        "retained_examples": len(y) - n_forget * copies,
        "label_seed": seed,
        "config": config.to_dict(),
    })
