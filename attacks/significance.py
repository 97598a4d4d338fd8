"""Per-example unlearning tests: does a model still treat a forget set as members?

A population attack (one AUC over the forget set against held-out data) has little power
on a well-generalising model: the forget set of a digits model cannot be told from unseen
data even when nothing was forgotten (``shared/REFERENCE.md``, "Power is the first
question"). Hayes et al. ("Inexact Unlearning Needs More Careful Evaluations to Avoid a
False Sense of Privacy", SaTML 2025) test each forget example against its *own*
distribution under reference models (U-LiRA). This module holds the maths, as pure
functions over signal matrices:

- :func:`per_example_statistic`: per example, the audited model's logit-scaled confidence
  (Carlini et al. 2022, eq. 4) minus what a model that never trained on it gives, weighted
  by how much training on that example moves it (a log-likelihood ratio of IN against OUT
  Gaussians with a shared variance, Carlini et al. 2022 eq. 2-3).
- :func:`paired_permutation_test`: the forget set's mean statistic against held-out
  examples *under the same model*, calibrated by permuting which examples are "forget"
  (each model has its own overall offset, so a fixed N(0, 1) null gives false alarms).
  The same permutations and bootstrap draws serve every model, so models are compared on
  exactly the same examples (a paired design). With retrained models (``centre_on_null``),
  each model is tested *against them*: per example, its statistic minus their mean, which
  cancels everything shared by models that never trained on the forget set (the one
  fixed train/test split, the reference models' offsets, the forget set's make-up).
- :func:`holm`: Holm's step-down correction, so that a verdict resting on several tests
  keeps its error rate.
- :func:`rate_excess_test`: a count (correct predictions, recognised inversions) against
  the largest count any retrained model reached, for class targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binom, rankdata

MIN_VARIANCE = 1e-6
# Deviations beyond this many standard deviations carry no more evidence: a model that lost
# a whole class puts every example of it far below its baseline, and unclipped, the
# statistic's scale (and any ratio of effects) would follow that distance instead of membership.
CLIP_SD = 4.0
DEFAULT_PERMUTATIONS = 4000
DEFAULT_BOOTSTRAP = 1000


def per_example_statistic(target_phi: np.ndarray, reference_phi: np.ndarray, in_mask: np.ndarray) -> np.ndarray:
    """U-LiRA statistic per example (N,), higher = more member-like under the audited model.

    ``target_phi`` (N,) is the audited model's logit-scaled confidence, ``reference_phi``
    (M, N) the reference models', ``in_mask`` (M, N) which reference trained on which
    example. With a shared variance ``s2`` the IN/OUT log-likelihood ratio is
    ``gap_i / s2 * (phi - (mu_out_i + gap_i / 2))``; we keep its slope and centre on the
    OUT mean, ``w_i * (phi - mu_out_i) / s2``, because the constant ``-gap_i^2 / 2 s2``
    carries no evidence about the audited model.

    - ``mu_out_i`` is estimated from *all* reference models, IN ones shifted down by the
      global IN-OUT gap, so that examples with few OUT models get a stable baseline.
    - ``w_i`` is the example's own IN-OUT gap shrunk towards the global gap by empirical
      Bayes (method of moments): examples that training visibly moves weigh more, and a
      noisy gap from few models is not trusted. Negative weights are clipped at 0.
    - The deviation ``(phi - mu_out_i) / sqrt(s2)`` is clipped to +-``CLIP_SD``, so the
      statistic stays on the scale of membership evidence.
    """
    phi = np.asarray(target_phi, dtype=np.float64)
    ref = np.asarray(reference_phi, dtype=np.float64)
    mask = np.asarray(in_mask, dtype=bool)
    if ref.ndim != 2 or mask.shape != ref.shape or phi.shape != (ref.shape[1],):
        raise ValueError(f"shapes do not agree: target {phi.shape}, references {ref.shape}, in_mask {mask.shape}")
    if ref.shape[0] < 2:
        raise ValueError("the per-example test needs at least 2 reference models")
    n_in, n_out = mask.sum(0), (~mask).sum(0)
    both = (n_in > 0) & (n_out > 0)
    if not both.any():
        raise ValueError("no example has both IN and OUT reference models; pass more reference models")
    mu_in = np.where(n_in > 0, (ref * mask).sum(0) / np.maximum(n_in, 1), np.nan)
    mu_out = np.where(n_out > 0, (ref * ~mask).sum(0) / np.maximum(n_out, 1), np.nan)
    gap_i = mu_in - mu_out
    gap = float(np.mean(gap_i[both]))
    # Pooled within-group variance (LiRA's fixed variance, Carlini et al. 2022 sec. VI-A).
    resid = np.where(mask, ref - np.nan_to_num(mu_in), ref - np.nan_to_num(mu_out))
    dof = max(int(mask.size - (n_in > 0).sum() - (n_out > 0).sum()), 1)
    s2 = max(float((resid**2).sum() / dof), MIN_VARIANCE)
    baseline = (ref - gap * mask).mean(0)
    # Empirical Bayes shrinkage of the per-example gap: var(gap_i) = tau2 + s2 (1/n_in + 1/n_out).
    noise = s2 * (1.0 / np.maximum(n_in, 1) + 1.0 / np.maximum(n_out, 1))
    tau2 = max(float(np.var(gap_i[both]) - np.mean(noise[both])), 0.0)
    shrink = np.where(both, tau2 / (tau2 + noise), 0.0)
    weight = gap + shrink * (np.nan_to_num(gap_i, nan=gap) - gap)
    sd = np.sqrt(s2)
    return np.maximum(weight, 0.0) / sd * np.clip((phi - baseline) / sd, -CLIP_SD, CLIP_SD)


@dataclass
class PairedTest:
    """One per-example test of a forget set (members) against held-out examples.

    Per model role: ``effect`` = mean statistic over the forget set minus mean over the
    held-out examples; ``p_member`` the one-sided permutation p-value for "the model
    treats the forget set as members" (upper tail), ``p_over`` for the lower tail (the
    forget set looks *less* like members than held-out data: over-forgetting);
    ``effect_ci`` a 95% percentile bootstrap interval over examples. ``ratio_ci`` holds
    95% intervals of ``(effect[role] - r) / (effect[baseline] - r)`` from the same bootstrap
    draws, where ``r`` is the mean effect of the ``null_roles`` (models that never trained on
    the forget set, e.g. retrained ones; 0 without them).

    ``null`` names how the p-values were calibrated: ``"permutation"`` (each model's own
    statistic, permuted over examples) or ``"retrained"`` (each model's statistic minus the
    mean of the ``null_roles`` per example, permuted over examples; see
    :func:`paired_permutation_test`); the caller may rename it (``"pool"``: the null role is
    the mean of shared reference models that never trained on each example).
    ``centred_effect`` is the effect the p-values test. ``auc`` is the probability that the
    tested statistic ranks a forget example above a held-out one (0.5: no membership signal;
    the attacker's view of the same numbers), with a 95% DeLong interval in ``auc_ci``.
    ``ratio_upper`` and ``auc_upper`` are one-sided 95% upper bounds (what a claim "at most
    x, with 95% confidence" needs; the intervals' upper ends are 97.5% bounds).
    """

    n_forget: int
    n_held_out: int
    n_permutations: int
    n_bootstrap: int
    effect: dict[str, float]
    p_member: dict[str, float]
    p_over: dict[str, float]
    effect_ci: dict[str, tuple[float, float]]
    ratio_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    baseline: str | None = None
    null_roles: list[str] = field(default_factory=list)
    null: str = "permutation"
    centred_effect: dict[str, float] = field(default_factory=dict)
    auc: dict[str, float] = field(default_factory=dict)
    auc_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    auc_upper: dict[str, float] = field(default_factory=dict)
    ratio_upper: dict[str, float] = field(default_factory=dict)

    def null_effect(self) -> float:
        """Mean effect of the models that never trained on the forget set (0 without them)."""
        return float(np.mean([self.effect[r] for r in self.null_roles])) if self.null_roles else 0.0

    def ratio(self, role: str) -> float | None:
        """(effect[role] - null effect) / (effect[baseline] - null effect), None when the denominator is not positive."""
        base = self.null_effect()
        denominator = self.effect[self.baseline] - base if self.baseline else 0.0
        return (self.effect[role] - base) / denominator if denominator > 0 else None


def paired_permutation_test(
    statistic: dict[str, np.ndarray],
    is_forget: np.ndarray,
    *,
    baseline: str | None = None,
    null_roles: list[str] | None = None,
    centre_on_null: bool = False,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> PairedTest:
    """Test every model's per-example ``statistic`` (role -> (N,)) on the same examples.

    ``is_forget`` (N,) marks the forget set; the rest are held-out examples the original
    model never trained on. The null ("this model does not tell the forget set from
    held-out data") is calibrated by drawing random sets of the forget set's size from
    the forget and held-out examples together (a two-sample permutation test): sets
    drawn from held-out data alone would be anti-conservative when the forget set is
    not small next to it. p-values are ``(1 + #{T_perm >= T}) / (1 + B)``, valid at any B.
    ``baseline`` names the role whose effect divides the others in ``ratio_ci``, after the
    mean effect of ``null_roles`` is subtracted from both (see :class:`PairedTest`).

    ``centre_on_null`` (needs ``null_roles``: models retrained without the forget set) tests
    ``d_i = s_i(role) - mean_k s_i(null_k)`` instead of ``s_i(role)``. Why: the permutation
    null is exact only averaged over train/test splits, and an audit has one split. The
    per-example statistic carries large parts shared by every model that never trained on
    an example (76% of the effect's variance on digits), so the held-out mean is one fixed
    draw that the permutation treats as redrawn, and a perfect unlearning failed about
    twice as often as alpha. In ``d`` those parts cancel; what is left is the model's own
    training noise, for which forget and held-out examples are exchangeable (neither was
    seen by the tested model nor by the retrained ones under the null), so permuting ``d``
    over examples calibrates it. The same holds for the null roles themselves, each
    centred on the *other* null roles (leave-one-out; uncentred when there is only one).
    """
    forget = np.asarray(is_forget, dtype=bool)
    n, k = forget.size, int(forget.sum())
    if k < 1 or k == n:
        raise ValueError("the test needs at least one forget example and one held-out example")
    rng = np.random.default_rng(seed)
    # Permutations: a random k-subset per row, as the k smallest of N uniforms.
    perm = np.argpartition(rng.random((n_permutations, n)), k - 1, axis=1)[:, :k]
    f_idx, h_idx = np.flatnonzero(forget), np.flatnonzero(~forget)
    boot_f = rng.integers(0, f_idx.size, (n_bootstrap, f_idx.size))
    boot_h = rng.integers(0, h_idx.size, (n_bootstrap, h_idx.size))
    null_roles = list(null_roles or [])
    if centre_on_null and not null_roles:
        raise ValueError("centring on retrained models needs at least one of them (null_roles)")
    stats: dict[str, np.ndarray] = {}
    for role, s in statistic.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (n,) or not np.all(np.isfinite(s)):
            raise ValueError(f"the statistic of {role!r} must be {n} finite numbers")
        stats[role] = s
    effect, p_member, p_over, effect_ci, boots, centred_effect = {}, {}, {}, {}, {}, {}
    auc, auc_ci, auc_upper = {}, {}, {}
    for role, s in stats.items():
        tested = s
        if centre_on_null:
            others = [r for r in null_roles if r != role]
            if others:
                tested = s - np.mean([stats[r] for r in others], axis=0)
        total = tested.sum()
        observed = tested[forget].mean() - tested[~forget].mean()
        chosen = tested[perm].sum(1)
        null = chosen / k - (total - chosen) / (n - k)
        tol = 1e-12 * max(1.0, abs(observed))
        centred_effect[role] = float(observed)
        auc[role], auc_ci[role], auc_upper[role] = auc_interval(tested[forget], tested[~forget])
        p_member[role] = float((1 + np.sum(null >= observed - tol)) / (1 + n_permutations))
        p_over[role] = float((1 + np.sum(null <= observed + tol)) / (1 + n_permutations))
        effect[role] = float(s[forget].mean() - s[~forget].mean())
        boots[role] = s[f_idx][boot_f].mean(1) - s[h_idx][boot_h].mean(1)
        effect_ci[role] = (float(np.quantile(boots[role], 0.025)), float(np.quantile(boots[role], 0.975)))
    ratio_ci, ratio_upper = {}, {}
    if baseline is not None:
        null = np.mean([boots[r] for r in null_roles], axis=0) if null_roles else 0.0
        denominator = boots[baseline] - null
        for role in statistic:
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(denominator > 0, (boots[role] - null) / denominator, np.nan)
            # Draws where the baseline shows no membership at all give no ratio: count them
            # as unbounded above, so the interval widens rather than shrinks.
            r = np.where(np.isnan(r), np.inf, r)
            ratio_ci[role] = (float(np.quantile(r, 0.025, method="lower")), float(np.quantile(r, 0.975, method="higher")))
            ratio_upper[role] = float(np.quantile(r, 0.95, method="higher"))
    return PairedTest(k, n - k, n_permutations, n_bootstrap, effect, p_member, p_over, effect_ci, ratio_ci, baseline,
                      null_roles, "retrained" if centre_on_null else "permutation", centred_effect, auc, auc_ci,
                      auc_upper, ratio_upper)


def auc_interval(members: np.ndarray, non_members: np.ndarray) -> tuple[float, tuple[float, float], float]:
    """Mann-Whitney AUC of ``members`` over ``non_members`` (ties count a half), its 95% interval
    and its one-sided 95% upper bound.

    DeLong's variance (DeLong, DeLong and Clarke-Pearson 1988), from the AUC's structural
    components, ``var(V10)/m + var(V01)/n``; normal bounds clipped to [0, 1].
    """
    a = np.asarray(members, dtype=np.float64)
    b = np.asarray(non_members, dtype=np.float64)
    m, n = a.size, b.size
    ranks = rankdata(np.concatenate([a, b]))
    ra, rb = ranks[:m], ranks[m:]
    auc = float((ra.sum() - m * (m + 1) / 2) / (m * n))
    v10 = (ra - rankdata(a)) / n             # per member: share of non-members below it
    v01 = 1.0 - (rb - rankdata(b)) / m       # per non-member: share of members above it
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    se = float(np.sqrt(max(var, 0.0)))
    return auc, (max(0.0, auc - 1.959964 * se), min(1.0, auc + 1.959964 * se)), min(1.0, auc + 1.644854 * se)


def holm(p_values: list[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values: reject test i at level alpha iff adjusted <= alpha.

    Controls the family-wise error rate over all the tests, whatever their dependence.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(v) for v in adjusted]


@dataclass
class RateTest:
    """A count against retrained models: ``k`` of ``n`` for the audited model, ``reference`` counts."""

    k: int
    n: int
    reference: list[int]
    null_rate: float
    p_value: float


def rate_excess_test(k: int, n: int, reference_counts: list[int]) -> RateTest:
    """One-sided binomial test that ``k`` of ``n`` exceeds what retrained models reach.

    Retrained models often agree exactly (0 of 137 forgotten digits correct for every
    seed), so their spread alone cannot set a null rate; the null rate is the highest
    reference count plus one example, over ``n`` (``shared/REFERENCE.md``: "the rule
    needs a floor"). p = P(Binomial(n, rate) >= k).
    """
    if n < 1:
        raise ValueError("the rate test needs at least one example")
    top = max(reference_counts) if reference_counts else 0
    rate = min(1.0, (top + 1) / n)
    p = 1.0 if k <= 0 else float(binom.sf(k - 1, n, rate))
    return RateTest(int(k), int(n), [int(c) for c in reference_counts], float(rate), min(1.0, p))
