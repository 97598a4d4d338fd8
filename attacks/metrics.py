"""How the field scores a membership attack (Carlini et al. 2022; Jagielski et al. 2020).

Every attack in this package returns one score per example, higher meaning "member".
:func:`membership_metrics` turns scores plus ground truth into the full ROC, AUC, TPR at
low FPR, the operating-point figures, and an empirical epsilon lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta
from sklearn.metrics import roc_auc_score, roc_curve

from attacks.checks import check_membership

ROC_POINTS = 200
DEFAULT_DELTA = 1e-5
CONFIDENCE = 0.95


@dataclass
class MembershipMetrics:
    """Scores of one membership attack against ground truth.

    ``fpr``/``tpr`` are a compact ROC (<= 200 points, log-spaced in FPR so the
    low-FPR region the field cares about is kept). The operating ``threshold`` is the
    score cut (predict "member" when score >= threshold) that maximises TPR - FPR; it is
    chosen on the same scores, so ``balanced_accuracy``/``advantage`` are optimistic.
    The epsilon figures hold for (epsilon, ``delta``)-DP. ``epsilon_lower_bound`` is a
    valid 95% lower bound: the examples are split in two halves at random (seeded), the
    threshold with the largest Clopper-Pearson epsilon is chosen on one half, and the
    bound is computed at that threshold on the other half only (choosing and bounding on
    the same scores would make the maximum over thresholds optimistic). ``epsilon`` is
    the point estimate on all scores at that threshold and ``epsilon_ci`` its 95%
    interval on the held-back half (``inf`` means the rates alone do not bound it).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    balanced_accuracy: float
    advantage: float
    precision: float
    recall: float
    threshold: float
    epsilon: float
    epsilon_lower_bound: float
    epsilon_ci: tuple[float, float]
    delta: float
    n_members: int
    n_non_members: int

    def to_dict(self) -> dict:
        """Plain JSON-able values; infinities become ``None``."""

        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else float(v)

        return {
            "auc": num(self.auc),
            "tpr_at_1pct_fpr": num(self.tpr_at_1pct_fpr),
            "tpr_at_0.1pct_fpr": num(self.tpr_at_01pct_fpr),
            "balanced_accuracy": num(self.balanced_accuracy),
            "advantage": num(self.advantage),
            "precision": num(self.precision),
            "recall": num(self.recall),
            "threshold": num(self.threshold),
            "epsilon": num(self.epsilon),
            "epsilon_lower_bound": num(self.epsilon_lower_bound),
            "epsilon_ci95": [num(self.epsilon_ci[0]), num(self.epsilon_ci[1])],
            "delta": self.delta,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "roc": {"fpr": [float(v) for v in self.fpr], "tpr": [float(v) for v in self.tpr]},
        }


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR among ROC points whose FPR does not exceed ``target`` (Carlini et al. 2022)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def clopper_pearson(k: np.ndarray, n: int, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval for k successes out of n (two-sided, ``confidence``)."""
    k = np.asarray(k, dtype=float)
    a = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, beta.ppf(a, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a, k + 1, n - k), 1.0)
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)


def epsilon_from_rates(tpr: np.ndarray, fpr: np.ndarray, delta: float) -> np.ndarray:
    """The epsilon an attack with these rates rules out for (epsilon, delta)-DP.

    DP bounds every test: TPR <= e^eps FPR + delta and TNR <= e^eps FNR + delta
    (Kairouz et al. 2015; used for auditing by Jagielski et al. 2020, eq. 2), hence
    eps >= max(log((TPR - delta) / FPR), log((1 - FPR - delta) / (1 - TPR))).
    """
    tpr, fpr = np.asarray(tpr, float), np.asarray(fpr, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(tpr - delta > 0, np.log(np.maximum(tpr - delta, 1e-300)) - np.log(fpr), 0.0)
        e2 = np.where(1 - fpr - delta > 0, np.log(np.maximum(1 - fpr - delta, 1e-300)) - np.log(1 - tpr), 0.0)
    return np.maximum(np.maximum(np.nan_to_num(e1, nan=0.0, posinf=np.inf), np.nan_to_num(e2, nan=0.0, posinf=np.inf)), 0.0)


def compact_roc(fpr: np.ndarray, tpr: np.ndarray, n_non_members: int, points: int = ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Resample a step ROC at <= ``points`` FPRs, log-spaced so low FPRs keep their detail."""
    low = min(1.0 / max(n_non_members, 1), 1e-3)
    grid = np.unique(np.concatenate([[0.0], np.logspace(np.log10(low), 0.0, points - 1)]))
    # Step interpolation from below: the TPR actually reached at FPR <= g.
    idx = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
    return grid, np.maximum.accumulate(tpr)[np.clip(idx, 0, len(tpr) - 1)]


def membership_metrics(
    scores: np.ndarray,
    is_member: np.ndarray,
    delta: float = DEFAULT_DELTA,
    threshold: float | None = None,
) -> MembershipMetrics:
    """Score an attack: ``scores`` (N,) higher = member; ``is_member`` (N,) ground truth.

    ``threshold`` fixes the operating point (predict member when score >= threshold);
    by default it is the one maximising TPR - FPR on these scores.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be a 1-D array (one per example), got shape {s.shape}")
    m = check_membership(is_member, n=s.shape[0])
    if not np.all(np.isfinite(s)):
        raise ValueError("scores hold NaN or infinite values; check the attack's inputs (e.g. a diverged model)")
    n_pos, n_neg = int(m.sum()), int((~m).sum())

    fpr, tpr, thr = roc_curve(m, s, drop_intermediate=False)
    auc = float(roc_auc_score(m, s))  # ties count one half, as the Mann-Whitney U does

    if threshold is None:
        best = int(np.argmax(tpr - fpr))
        threshold = float(thr[best]) if math.isfinite(thr[best]) else float(s.max()) + 1.0
    pred = s >= threshold
    tp, fp = int((pred & m).sum()), int((pred & ~m).sum())
    op_tpr, op_fpr = tp / n_pos, fp / n_neg

    eps_cut, eps_lo, eps_hi = _split_epsilon(s, m, delta)
    pred_e = s >= eps_cut
    eps_hat = float(epsilon_from_rates(np.array([(pred_e & m).sum() / n_pos]),
                                       np.array([(pred_e & ~m).sum() / n_neg]), delta)[0])

    roc_fpr, roc_tpr = compact_roc(fpr, tpr, n_neg)
    return MembershipMetrics(
        fpr=roc_fpr,
        tpr=roc_tpr,
        auc=auc,
        tpr_at_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.01),
        tpr_at_01pct_fpr=tpr_at_fpr(fpr, tpr, 0.001),
        balanced_accuracy=0.5 * (op_tpr + 1.0 - op_fpr),
        advantage=op_tpr - op_fpr,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=op_tpr,
        threshold=float(threshold),
        epsilon=eps_hat,
        epsilon_lower_bound=eps_lo,
        epsilon_ci=(eps_lo, eps_hi),
        delta=delta,
        n_members=n_pos,
        n_non_members=n_neg,
    )


def _split_epsilon(s: np.ndarray, m: np.ndarray, delta: float, seed: int = 0) -> tuple[float, float, float]:
    """(threshold, 95% lower bound, upper bound) of epsilon: threshold chosen on one half, bounded on the other.

    Bounds TPR from below and FPR from above with Clopper-Pearson (Jagielski et al. 2020)
    and picks, on the first half, the threshold whose conservative epsilon is largest.
    """
    rng = np.random.default_rng(seed)
    pick = np.zeros(s.size, dtype=bool)
    for group in (np.flatnonzero(m), np.flatnonzero(~m)):
        pick[rng.permutation(group)[: group.size // 2]] = True
    a, b = pick, ~pick
    if min(int((a & m).sum()), int((a & ~m).sum()), int((b & m).sum()), int((b & ~m).sum())) < 1:
        return float(s.max()) + 1.0, 0.0, float("inf")  # too few examples to choose and bound
    fpr_a, tpr_a, thr_a = roc_curve(m[a], s[a], drop_intermediate=False)
    n_pos_a, n_neg_a = int((a & m).sum()), int((a & ~m).sum())
    t_lo, _ = clopper_pearson(np.rint(tpr_a * n_pos_a), n_pos_a)
    _, f_hi = clopper_pearson(np.rint(fpr_a * n_neg_a), n_neg_a)
    at = int(np.argmax(epsilon_from_rates(t_lo, f_hi, delta)))
    cut = float(thr_a[at]) if math.isfinite(thr_a[at]) else float(s.max()) + 1.0
    n_pos_b, n_neg_b = int((b & m).sum()), int((b & ~m).sum())
    k_tp, k_fp = int(((s >= cut) & b & m).sum()), int(((s >= cut) & b & ~m).sum())
    tpr_lo, tpr_hi = clopper_pearson(np.array([k_tp]), n_pos_b)
    fpr_lo, fpr_hi = clopper_pearson(np.array([k_fp]), n_neg_b)
    lower = float(epsilon_from_rates(tpr_lo, fpr_hi, delta)[0])
    upper = float(epsilon_from_rates(tpr_hi, fpr_lo, delta)[0])
    return cut, lower, upper
