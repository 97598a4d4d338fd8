"""What a black-box attacker reads off a model: logits, losses and scaled confidences.

All functions run the model in eval mode, without gradients, in batches, and return
float64 numpy arrays so the statistics downstream do not lose precision.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BATCH_SIZE = 1024


@torch.no_grad()
def model_logits(model: nn.Module, x: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Logits (N, num_classes) as float64; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        out = [model(x[i : i + batch_size].to(device, torch.float32)).double().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0, dtype=torch.float64)


def scaled_confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)), the logit-scaled confidence (Carlini et al. 2022, eq. 4).

    Computed as z_y - logsumexp_{j != y} z_j, which equals log(p_y/(1-p_y)) exactly but
    does not saturate when p_y rounds to 1 in floating point.
    """
    z = logits.double()
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


def true_class_probability(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """p(y | x, theta), the softmax probability of the true label (RMIA's Pr(x | theta))."""
    return torch.softmax(logits.double(), dim=1).gather(1, y.view(-1, 1)).squeeze(1).numpy()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per-example cross-entropy loss in nats."""
    return torch.nn.functional.cross_entropy(logits.double(), y, reduction="none").numpy()


def softmax(logits: torch.Tensor) -> np.ndarray:
    """Softmax probability vectors (N, num_classes), as the Shokri attack reads them."""
    return torch.softmax(logits.double(), dim=1).numpy()
