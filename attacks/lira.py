"""LiRA, the likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks
From First Principles").

For each example the attack models the target's logit-scaled confidence phi (eq. 4) as a
Gaussian over reference models that trained on the example (IN) and over those that
did not (OUT), then asks which Gaussian the target's phi is likelier under (online,
eq. 2 / Algorithm 1) or how far into OUT's upper tail it lies (offline, sec. IV-C).
Everything is vectorised over examples: one (M, N) matrix of reference confidences.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from attacks.checks import as_labels, check_images
from attacks.reference import ReferenceModels, inclusion_for, reference_signals
from attacks.signals import model_logits, scaled_confidence

MIN_STD = 1e-3


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = mask.sum(axis=0)
    mean = np.where(count > 0, (values * mask).sum(axis=0) / np.maximum(count, 1), np.nan)
    return mean, count


def _std(values: np.ndarray, mask: np.ndarray, mean: np.ndarray, fixed: bool) -> np.ndarray:
    """Per-example std over the masked models, or one pooled std for all (fixed variance).

    With few reference models per-example variances are noisy, so Carlini et al. (sec.
    VI-A, fig. 9) estimate one global variance; we pool the within-example residuals.
    """
    resid = np.where(mask, values - np.nan_to_num(mean)[None, :], 0.0)
    count = mask.sum(axis=0)
    if fixed:
        dof = max(int(count.sum() - (count > 0).sum()), 1)
        return np.full(values.shape[1], max(float(np.sqrt((resid**2).sum() / dof)), MIN_STD))
    per = np.sqrt((resid**2).sum(axis=0) / np.maximum(count - 1, 1))
    return np.maximum(np.where(count > 1, per, np.nan), MIN_STD)


def _fill(sd: np.ndarray) -> np.ndarray:
    """Examples with too few models for their own std take the median of the others."""
    finite = np.isfinite(sd)
    return np.where(finite, sd, np.median(sd[finite]) if finite.any() else 1.0)


def lira_statistics(
    target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray, online: bool = True, fixed_variance: bool = True
) -> np.ndarray:
    """LiRA scores from confidences: ``target_phi`` (N,), ``reference_phi``/``in_mask`` (M, N).

    Examples that lack IN (or OUT) models borrow the other side's mean shifted by the
    average IN-OUT gap of the examples that have both; their std is the pooled one.
    """
    if reference_phi.shape[0] < 2:
        raise ValueError("LiRA needs at least 2 reference models so examples have IN and OUT models; pass num_models >= 2")
    mu_in, n_in = _masked_mean(reference_phi, in_mask)
    mu_out, n_out = _masked_mean(reference_phi, ~in_mask)
    both = (n_in > 0) & (n_out > 0)
    if not both.all():
        if not both.any():
            raise ValueError(
                "no scored example has both IN and OUT reference models, so LiRA cannot estimate the IN "
                "distribution; score examples of the auditor's data alongside outside ones, or pass more reference models"
            )
        gap = float(np.mean(mu_in[both] - mu_out[both]))
        mu_in = np.where(n_in > 0, mu_in, mu_out + gap)
        mu_out = np.where(n_out > 0, mu_out, mu_in - gap)
    sd_out = _fill(_std(reference_phi, ~in_mask, mu_out, fixed_variance))
    if not online:
        # One-sided test: members have higher confidence than OUT models give them.
        return -norm.logsf(target_phi, loc=mu_out, scale=sd_out)
    sd_in = _fill(_std(reference_phi, in_mask, mu_in, fixed_variance))
    return norm.logpdf(target_phi, loc=mu_in, scale=sd_in) - norm.logpdf(target_phi, loc=mu_out, scale=sd_out)


def lira_scores(
    target_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    reference: ReferenceModels,
    *,
    ids: np.ndarray | None = None,
    online: bool = True,
    fixed_variance: bool = True,
) -> np.ndarray:
    """Per-example LiRA scores (N,), higher = member.

    ``x``/``y`` are the examples to score; ``ids`` their indices in the auditor's data
    that ``reference`` was trained on (``None``: ``x`` is that data; -1: outside it).
    """
    y = as_labels(y)
    check_images(x, y)
    mask = inclusion_for(reference, ids, len(y))
    target_phi = scaled_confidence(model_logits(target_model, x), y)
    reference_phi = reference_signals(reference, x, y, scaled_confidence)
    return lira_statistics(target_phi, reference_phi, mask, online=online, fixed_variance=fixed_variance)
