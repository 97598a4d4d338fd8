"""Residual leakage: one number per forget target (README, "Residual leakage").

Each membership attack ``a`` scores the forget set (members) against held-out examples
of the same classes (non-members) on each model; its membership advantage there is
``A = 2 * |AUC - 1/2|`` in [0, 1]. The retrained reference never saw the forget set, so
its ``A`` is what an attack finds on data a model never trained on:

    r_a = clip( (A_unlearned - A_reference - noise) / max(A_original - A_reference - noise, FLOOR), 0, 1 )

``noise`` is NOISE_Z standard errors of ``A`` for these set sizes (Hanley & McNeil 1982
at AUC = 1/2), so sampling noise alone does not count as leakage. For model inversion,
with attack accuracies ``acc`` over ``n`` reconstructions:

    r_inv = clip( (acc_u - acc_r - noise) / max(acc_o - acc_r - noise, FLOOR), 0, 1 )

The headline is the largest component: the strongest attack decides. ``0`` means the
attacks find no more membership signal (or recognisable inversions) in the unlearned
model than in the retrained one, beyond noise; ``1`` means as much as in the original.
Without a reference ("absolute"), chance replaces it: ``A_reference = 0`` and inversion
accuracy ``1/num_classes``.

Separately, as a diagnostic, :func:`distinguishability` says how well an attack's
scores on the forget set tell the unlearned model from the retrained one (as in the
NeurIPS 2023 unlearning challenge); a large value with a small residual leakage means
the deletion itself is visible (unlearned examples look unlike a retrained model's)
even though they no longer look like members.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

FLOOR = 0.05
NOISE_Z = 2.0


def distinguishability(a: np.ndarray, b: np.ndarray) -> float:
    """2 * |AUC - 1/2| of telling score set ``a`` from ``b`` (1 = perfectly apart)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    labels = np.r_[np.ones(len(a)), np.zeros(len(b))]
    auc = roc_auc_score(labels, np.r_[a, b])
    return float(2 * abs(auc - 0.5))


def auc_noise(n1: int, n2: int) -> float:
    """NOISE_Z standard errors of D under "no difference" (Hanley & McNeil 1982)."""
    if n1 < 1 or n2 < 1:
        return 1.0
    se_auc = math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))
    return NOISE_Z * 2 * se_auc


def ratio(excess: float, scale: float, noise: float) -> float:
    """clip((excess - noise) / max(scale - noise, FLOOR), 0, 1)."""
    value = max(0.0, excess - noise) / max(scale - noise, FLOOR)
    return float(min(1.0, max(0.0, value)))


def membership_component(auc_members: dict[str, float], n_members: int, n_nonmembers: int) -> tuple[float, str]:
    """Residual leakage of one attack from its membership AUCs per model role.

    ``auc_members`` maps "original", "unlearned" and optionally "reference" to the AUC
    of the forget set against held-out non-members. Returns (value, basis).
    """
    noise = auc_noise(n_members, n_nonmembers)
    adv = {role: 2 * abs(auc - 0.5) for role, auc in auc_members.items() if auc is not None}
    basis = "reference" if "reference" in adv else "absolute"
    base = adv.get("reference", 0.0)
    return ratio(adv["unlearned"] - base, adv["original"] - base, noise), basis


def inversion_component(acc: dict[str, float], n_images: int, num_classes: int) -> tuple[float, str]:
    """Residual leakage of model inversion from attack accuracies ("original", "unlearned", "reference")."""
    base = acc.get("reference")
    basis = "reference"
    if base is None:
        base, basis = 1.0 / num_classes, "absolute"
    p = min(max(base, 1.0 / max(n_images, 1)), 1 - 1.0 / max(n_images, 1))
    noise = NOISE_Z * math.sqrt(p * (1 - p) / max(n_images, 1))
    return ratio(acc["unlearned"] - base, acc["original"] - base, noise), basis
