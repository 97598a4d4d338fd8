"""LOSS attack (Yeom et al. 2018): members have lower loss than non-members.

The weakest attack with a real model behind it and the floor any stronger attack
must clear. No reference models; the threshold is chosen by the metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attacks.checks import as_labels, check_images
from attacks.signals import cross_entropy, model_logits


def loss_threshold_scores(target_model: nn.Module, x: torch.Tensor, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-example membership scores (N,): the negated cross-entropy loss, higher = member."""
    y = as_labels(y)
    check_images(x, y)
    return -cross_entropy(model_logits(target_model, x), y)
