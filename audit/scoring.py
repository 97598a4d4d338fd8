"""Residual leakage: one number per forget target (README, "Residual leakage").

With a retrained reference, for each membership attack ``a`` we ask how well its
per-example scores on the forget set tell two models apart (Mann-Whitney AUC,
distinguishability ``D = 2 * |AUC - 1/2|`` in [0, 1]):

    r_a = clip( (D(unlearned, reference) - noise) / max(D(original, reference) - noise, FLOOR), 0, 1 )

``noise`` is twice the standard error of ``D`` when both score sets come from one
model (Hanley & McNeil 1982 at AUC = 1/2), so sampling noise alone does not count as
leakage. For model inversion, with attack accuracies ``acc``:

    r_inv = clip( (acc_u - acc_r - noise) / max(acc_o - acc_r - noise, FLOOR), 0, 1 )

The headline is the largest component: the strongest attack decides. ``0`` means no
attack tells the unlearned model from the retrained one beyond noise; ``1`` means the
unlearned model leaks as much as the original. Without a reference ("absolute"), the
reference is replaced by chance: membership AUC 1/2 on forget set against held-out
data, and inversion accuracy 1/num_classes.
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


def membership_component(
    forget_scores: dict[str, np.ndarray], auc_members: dict[str, float], n_members: int, n_nonmembers: int
) -> tuple[float, str]:
    """Residual leakage of one attack.

    ``forget_scores`` maps "original", "unlearned" and optionally "reference" to the
    attack's scores on the forget set; ``auc_members`` the same keys to the membership
    AUC (forget set against held-out non-members). Returns (value, basis).
    """
    if "reference" in forget_scores:
        ref = forget_scores["reference"]
        n = len(ref)
        noise = auc_noise(n, n)
        d_u = distinguishability(forget_scores["unlearned"], ref)
        d_o = distinguishability(forget_scores["original"], ref)
        return ratio(d_u, d_o, noise), "reference"
    noise = auc_noise(n_members, n_nonmembers)
    a_u = 2 * abs(auc_members["unlearned"] - 0.5)
    a_o = 2 * abs(auc_members["original"] - 0.5)
    return ratio(a_u, a_o, noise), "absolute"


def inversion_component(acc: dict[str, float], n_images: int, num_classes: int) -> tuple[float, str]:
    """Residual leakage of model inversion from attack accuracies ("original", "unlearned", "reference")."""
    base = acc.get("reference")
    basis = "reference"
    if base is None:
        base, basis = 1.0 / num_classes, "absolute"
    p = min(max(base, 1.0 / max(n_images, 1)), 1 - 1.0 / max(n_images, 1))
    noise = NOISE_Z * math.sqrt(p * (1 - p) / max(n_images, 1))
    return ratio(acc["unlearned"] - base, acc["original"] - base, noise), basis
