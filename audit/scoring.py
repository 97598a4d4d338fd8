"""The verdict of one forget target: pass, fail or inconclusive (README, "The verdict").

The audit never passes what it cannot see. Every target is judged by a few *tests*, each
asking "does this model still know the forget set?":

- ``membership``: the per-example paired test of :mod:`attacks.significance` (U-LiRA,
  Hayes et al. 2025), the forget set against held-out examples of the same classes;
- for class targets, ``class_accuracy`` (how many forget examples the model still
  classifies correctly, against the retrained models) and ``inversion`` (how many MI-Face
  reconstructions an independent classifier recognises, against the retrained models).

Each test is applied to the *original* model (the power check, a positive control) and
to the *unlearned* one. Holm's correction runs over the tests, so the error rates hold
for the verdict, not per test:

- **fail**: some test still detects the forget set in the unlearned model at ``alpha``;
- **inconclusive**: no test detects it even in the original model, so the attacks could
  not have seen its removal; or the unlearned model is not detected either, but the removal
  itself is not shown (the residual's 95% upper bound reaches ``max_residual``);
- **pass**: the original was detected, the unlearned model is not, *and* the removal is
  shown: the upper end of the residual's 95% interval lies below ``max_residual`` (default
  0.5: at most half of the original's membership signal can remain). Without that rule a
  model that forgot nothing passed whenever its p-value crossed alpha by chance.

With retrained models, the membership test compares each model *with them* (the
"retrained" null of :func:`attacks.significance.paired_permutation_test`); without
them, with its own permutation null ("permutation"). The test's evidence says which.

``residual_leakage`` is (effect(unlearned) - r) / (effect(original) - r) of the test that
detected the forget set most strongly in the original model (the smallest power p-value:
the most sensitive instrument, with the tightest interval), where ``r`` is the retrained
models' mean effect (0 in expectation for the membership test on random samples), with a
95% interval; ``overforgetting`` is signed: how far *below* the retrained models the
unlearned model puts the forget set, on the same scale. Every test still decides the
verdict: a failing test fails the target whatever the headline says.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from attacks.metrics import clopper_pearson
from attacks.significance import PairedTest, RateTest, holm
from reports.document import Evidence  # one test of a target: the document's own type

DEFAULT_ALPHA = 0.05
#: A pass needs the residual leakage's 95% upper bound below this (README, "The verdict").
DEFAULT_MAX_RESIDUAL = 0.5
VERDICTS = ("pass", "fail", "inconclusive")


@dataclass
class Verdict:
    verdict: str
    reason: str
    alpha: float
    power_p_value: float | None
    p_value: float | None
    residual_leakage: float | None
    residual_leakage_ci95: tuple[float, float] | None
    overforgetting: float | None
    overforgetting_p_value: float | None
    advice: str | None = None
    max_residual: float = DEFAULT_MAX_RESIDUAL

    @property
    def residual_leakage_upper(self) -> float | None:
        return None if self.residual_leakage_ci95 is None else self.residual_leakage_ci95[1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["residual_leakage_upper"] = self.residual_leakage_upper
        return d


def membership_evidence(test: PairedTest, label: str, retrained_roles: list[str]) -> Evidence:
    """The membership test's evidence from a :class:`PairedTest` over roles original, unlearned, retrained-k."""
    e_o, e_u = test.effect["original"], test.effect["unlearned"]
    residual, ci = None, None
    ratio = test.ratio("unlearned")
    if ratio is not None:
        residual = max(ratio, 0.0)
        lo, hi = test.ratio_ci.get("unlearned", (math.nan, math.inf))
        ci = (max(lo, 0.0), max(hi, 0.0))
    return Evidence(
        name="membership", label=label, p_original=test.p_member["original"], p_unlearned=test.p_member["unlearned"],
        effect_original=e_o, effect_unlearned=e_u, effect_retrained=[test.effect[r] for r in retrained_roles],
        residual=residual, residual_ci95=ci,
        detail={"n_forget": test.n_forget, "n_held_out": test.n_held_out, "permutations": test.n_permutations,
                "bootstrap": test.n_bootstrap, "effect_ci95": {k: list(v) for k, v in test.effect_ci.items()},
                "p_member": dict(test.p_member), "p_over": dict(test.p_over), "null": test.null,
                "centred_effect": dict(test.centred_effect)},
    )


def rate_evidence(name: str, label: str, original: RateTest, unlearned: RateTest) -> Evidence:
    """Evidence from two :class:`RateTest` (same n and retrained counts): counts above the retrained models' level."""
    n, base = unlearned.n, max(unlearned.reference) if unlearned.reference else 0
    scale = original.k - base
    residual, ci = None, None
    if scale > 0:
        residual = max(unlearned.k - base, 0) / scale
        lo, hi = clopper_pearson(np.array([unlearned.k]), n)
        ci = (max(float(lo[0]) * n - base, 0.0) / scale, max(float(hi[0]) * n - base, 0.0) / scale)
    return Evidence(
        name=name, label=label, p_original=original.p_value, p_unlearned=unlearned.p_value,
        effect_original=original.k / n, effect_unlearned=unlearned.k / n,
        effect_retrained=[c / n for c in unlearned.reference], residual=residual, residual_ci95=ci,
        detail={"n": n, "count_original": original.k, "count_unlearned": unlearned.k,
                "count_retrained": list(unlearned.reference), "null_rate": unlearned.null_rate},
    )


ADVICE = ("To give the attacks power: forget more examples at once (the per-example test's power grows with the "
          "forget set: about 0.4 at 10 examples and 0.9 at 40 on a small, leaky model), train more reference "
          "models (--reference-models), or audit a model that memorises more; a well-generalising model may "
          "simply not leak these data.")


REMOVAL_ADVICE = ("To show the removal: more retrained models (--retrains) and reference models "
                  "(--reference-models) narrow the residual's interval, and so does a larger forget set; or accept a "
                  "weaker proof with --max-residual (recorded in results.json).")


def decide(tests: list[Evidence], alpha: float = DEFAULT_ALPHA,
           max_residual: float = DEFAULT_MAX_RESIDUAL) -> Verdict:
    """Apply Holm over ``tests`` on each model and turn them into a :class:`Verdict` (sets the ``*_holm`` fields)."""
    if not tests:
        return Verdict("inconclusive", "no test could be run on this target, so nothing shows what the model knows",
                       alpha, None, None, None, None, None, None, ADVICE, max_residual)
    for t, p in zip(tests, holm([t.p_original for t in tests])):
        t.p_original_holm = p
    for t, p in zip(tests, holm([t.p_unlearned for t in tests])):
        t.p_unlearned_holm = p
    power_p = min(t.p_original_holm for t in tests)
    p_value = min(t.p_unlearned_holm for t in tests)
    powered = [t for t in tests if t.p_original_holm <= alpha and t.residual is not None]
    residual, ci = None, None
    if powered:
        top = min(powered, key=lambda t: (t.p_original_holm, -t.residual))
        residual, ci = top.residual, top.residual_ci95
    over, over_p = None, None
    membership = next((t for t in tests if t.name == "membership"), None)
    if membership is not None and membership.p_original_holm <= alpha:
        baseline = (sum(membership.effect_retrained) / len(membership.effect_retrained)
                    if membership.effect_retrained else 0.0)
        if membership.effect_original - baseline > 0:
            over = (baseline - membership.effect_unlearned) / (membership.effect_original - baseline)
            over_p = membership.detail["p_over"]["unlearned"]
    failing = [t for t in tests if t.p_unlearned_holm <= alpha]
    if failing:
        words = "; ".join(f"{t.label} (p = {_p(t.p_unlearned_holm)})" for t in failing)
        reason = f"the unlearned model still shows the forget set: {words}, at alpha = {alpha:g} after Holm's correction"
        return Verdict("fail", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, max_residual)
    if power_p > alpha:
        reason = (f"even before unlearning no test told the forget set from unseen data (best p = {_p(power_p)} > "
                  f"alpha = {alpha:g}), so the attacks cannot confirm that these data are gone")
        return Verdict("inconclusive", reason, alpha, power_p, p_value, residual, ci, over, over_p, ADVICE,
                       max_residual)
    best = min(tests, key=lambda t: t.p_original_holm)
    seen = (f"before unlearning the attacks told the forget set from unseen data ({best.label}, p = "
            f"{_p(best.p_original_holm)}); after unlearning no test does (smallest p = {_p(p_value)})")
    upper = None if ci is None else ci[1]
    if upper is None or not upper < max_residual:
        if upper is None:
            shown = "no residual leakage could be measured"
        elif math.isinf(upper):
            shown = f"the residual leakage's 95% interval is unbounded above ({_bound(residual)} measured)"
        else:
            shown = (f"up to {_bound(upper)} of the original's signal may remain (95% upper bound of the residual "
                     f"leakage, {_bound(residual)} measured)")
        reason = (f"{seen}, but the removal itself is not shown: {shown}, and a pass needs that bound below "
                  f"{max_residual:g}")
        return Verdict("inconclusive", reason, alpha, power_p, p_value, residual, ci, over, over_p, REMOVAL_ADVICE,
                       max_residual)
    reason = f"{seen}, and at most {_bound(upper)} of its signal can remain (95% upper bound, below {max_residual:g})"
    return Verdict("pass", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, max_residual)


def _p(p: float) -> str:
    return f"{p:.2g}"


def _bound(x: float | None) -> str:
    return "none" if x is None else f"{x:.2f}"
