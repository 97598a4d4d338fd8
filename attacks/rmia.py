"""RMIA, the robust membership inference attack (Zarifzadeh, Liu and Shokri, ICML 2024).

The attack compares how much the target model prefers x over the reference models,
LR(x) = Pr(x | theta) / Pr(x), with the same ratio for population samples z:
Score(x) = Pr_z[ LR(x) / LR(z) > gamma ]  (eq. 3-4). Pr(x) averages the reference
models' probability of the true label; with OUT models only (offline) it is
approximated as ((1 + a) Pr_OUT(x) + (1 - a)) / 2 (sec. 3, "offline"), where ``a``
accounts for OUT models under-estimating the probability an IN model would give.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from attacks.checks import as_labels, check_images
from attacks.reference import ReferenceModels, inclusion_for, reference_signals
from attacks.signals import model_logits, true_class_probability

DEFAULT_GAMMA = 1.0
DEFAULT_OFFLINE_A = 0.3


def marginal_probability(reference_p: np.ndarray, in_mask: np.ndarray, online: bool, offline_a: float) -> np.ndarray:
    """Pr(x) = E_theta'[Pr(x | theta')] over reference models, per example (N,).

    Online: the mean over all reference models (about half IN, half OUT per example).
    Offline, or an example no reference model trained on: the OUT-only approximation.
    """
    out = ~in_mask
    n_out = out.sum(axis=0)
    p_out = (reference_p * out).sum(axis=0) / np.maximum(n_out, 1)
    p_offline = 0.5 * ((1.0 + offline_a) * p_out + (1.0 - offline_a))
    if not online:
        if (n_out == 0).any():
            raise ValueError("offline RMIA needs an OUT reference model for every example; pass more reference models")
        return p_offline
    online_p = reference_p.mean(axis=0)
    return np.where(in_mask.any(axis=0), online_p, p_offline)


def rmia_statistics(
    target_p_x: np.ndarray,
    marginal_x: np.ndarray,
    target_p_z: np.ndarray,
    marginal_z: np.ndarray,
    gamma: float = DEFAULT_GAMMA,
) -> np.ndarray:
    """Score(x) = fraction of population z with LR(x)/LR(z) > gamma, vectorised by sorting.

    Score is a step function of LR(x); examples inside one step are ordered by LR(x)
    itself (a shift below one step, so the paper's ordering between steps is kept).
    """
    tiny = 1e-300
    log_lr_x = np.log(np.maximum(target_p_x, tiny)) - np.log(np.maximum(marginal_x, tiny))
    log_lr_z = np.sort(np.log(np.maximum(target_p_z, tiny)) - np.log(np.maximum(marginal_z, tiny)))
    # LR(x)/LR(z) > gamma  <=>  log LR(z) < log LR(x) - log gamma
    frac = np.searchsorted(log_lr_z, log_lr_x - np.log(gamma), side="left") / log_lr_z.size
    tie_break = rankdata(log_lr_x) / (log_lr_x.size + 1) / (2.0 * log_lr_z.size)
    return frac + tie_break


def rmia_scores(
    target_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    reference: ReferenceModels,
    *,
    ids: np.ndarray | None = None,
    population: tuple[torch.Tensor, torch.Tensor | np.ndarray, np.ndarray | None] | None = None,
    online: bool = True,
    gamma: float = DEFAULT_GAMMA,
    offline_a: float = DEFAULT_OFFLINE_A,
) -> np.ndarray:
    """Per-example RMIA scores (N,) in [0, 1], higher = member.

    ``ids`` as for :func:`attacks.lira.lira_scores`. ``population`` is ``(x_z, y_z,
    ids_z)``, the samples z to compare against (default: the scored examples
    themselves); the ranking of x depends only on LR(x), the population sets the scale.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a must lie in [0, 1], got {offline_a}")
    y = as_labels(y)
    check_images(x, y)
    mask_x = inclusion_for(reference, ids, len(y))
    p_x = true_class_probability(model_logits(target_model, x), y)
    ref_x = reference_signals(reference, x, y, true_class_probability)
    marginal_x = marginal_probability(ref_x, mask_x, online, offline_a)
    if population is None:
        p_z, marginal_z = p_x, marginal_x
    else:
        x_z, y_z, ids_z = population
        y_z = as_labels(y_z, "population labels")
        check_images(x_z, y_z, "population images", "population labels")
        mask_z = inclusion_for(reference, ids_z, len(y_z))
        p_z = true_class_probability(model_logits(target_model, x_z), y_z)
        marginal_z = marginal_probability(reference_signals(reference, x_z, y_z, true_class_probability), mask_z, online, offline_a)
    return rmia_statistics(p_x, marginal_x, p_z, marginal_z, gamma)
