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
- **not_memorised**: no test detects the forget set in either model, *and* the membership
  test bounds what the original held: its per-example AUC (how often its statistic ranks a
  forget example above an unseen one) has a 95% upper bound at most ``max_memorised_auc``
  (default 0.6). A decided outcome, not a pass: there was little to remove, and the bound
  says how little. Gates treat it by the recorded policy ``--not-memorised`` (pass by default);
- **inconclusive**: no test detects it even in the original model and its AUC's bound is
  too wide to say it was not memorised, so the attacks could not have seen its removal; or
  the unlearned model is not detected either, but the removal itself is not shown (the
  residual's 95% upper bound reaches ``max_residual``);
- **pass**: the original was detected, the unlearned model is not, *and* the removal is
  shown: the residual's one-sided 95% upper bound lies below ``max_residual`` (default
  0.5: at most half of the original's membership signal can remain). Without that rule a
  model that forgot nothing passed whenever its p-value crossed alpha by chance. For a
  request of examples (the membership test alone), a weak original signal leaves that
  ratio unbounded; the unlearned model then passes on its own bound instead: its
  membership AUC's 95% upper bound at most ``max_memorised_auc``, the standard "not
  memorised" holds the original to. A no-op cannot pass this way: its unlearned model is
  the original, which was detected.

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
#: "not memorised" needs the original's per-example membership AUC's 95% upper bound at most this.
DEFAULT_MAX_MEMORISED_AUC = 0.6
VERDICTS = ("pass", "fail", "not_memorised", "inconclusive")
#: "not memorised" needs at least this many forget examples: below it DeLong's interval is not to be trusted.
MIN_FORGET_FOR_BOUND = 30


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
    memorised_auc: float | None = None
    memorised_auc_ci95: tuple[float, float] | None = None
    max_memorised_auc: float = DEFAULT_MAX_MEMORISED_AUC
    #: One-sided 95% upper bounds: of the residual leakage (a pass needs it below max_residual; inf:
    #: unbounded) and of the original's membership AUC (not_memorised needs it at most max_memorised_auc).
    residual_leakage_upper: float | None = None
    memorised_auc_upper: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def membership_evidence(test: PairedTest, label: str, retrained_roles: list[str]) -> Evidence:
    """The membership test's evidence from a :class:`PairedTest` over roles original, unlearned, retrained-k."""
    e_o, e_u = test.effect["original"], test.effect["unlearned"]
    residual, ci, upper = None, None, None
    ratio = test.ratio("unlearned")
    if ratio is not None:
        residual = max(ratio, 0.0)
        lo, hi = test.ratio_ci.get("unlearned", (math.nan, math.inf))
        ci = (max(lo, 0.0), max(hi, 0.0))
        upper = max(test.ratio_upper.get("unlearned", math.inf), 0.0)
    return Evidence(
        name="membership", label=label, p_original=test.p_member["original"], p_unlearned=test.p_member["unlearned"],
        effect_original=e_o, effect_unlearned=e_u, effect_retrained=[test.effect[r] for r in retrained_roles],
        residual=residual, residual_ci95=ci, residual_upper=upper,
        detail={"n_forget": test.n_forget, "n_held_out": test.n_held_out, "permutations": test.n_permutations,
                "bootstrap": test.n_bootstrap, "effect_ci95": {k: list(v) for k, v in test.effect_ci.items()},
                "p_member": dict(test.p_member), "p_over": dict(test.p_over), "null": test.null,
                "centred_effect": dict(test.centred_effect), "auc": dict(test.auc),
                "auc_ci95": {k: list(v) for k, v in test.auc_ci.items()}, "auc_upper": dict(test.auc_upper)},
    )


def rate_evidence(name: str, label: str, original: RateTest, unlearned: RateTest) -> Evidence:
    """Evidence from two :class:`RateTest` (same n and retrained counts): counts above the retrained models' level."""
    n, base = unlearned.n, max(unlearned.reference) if unlearned.reference else 0
    scale = original.k - base
    residual, ci, upper = None, None, None
    if scale > 0:
        residual = max(unlearned.k - base, 0) / scale
        lo, hi = clopper_pearson(np.array([unlearned.k]), n)
        ci = (max(float(lo[0]) * n - base, 0.0) / scale, max(float(hi[0]) * n - base, 0.0) / scale)
        one_sided = clopper_pearson(np.array([unlearned.k]), n, confidence=0.90)[1]  # its upper end: a 95% bound
        upper = max(float(one_sided[0]) * n - base, 0.0) / scale
    return Evidence(
        name=name, label=label, p_original=original.p_value, p_unlearned=unlearned.p_value,
        effect_original=original.k / n, effect_unlearned=unlearned.k / n,
        effect_retrained=[c / n for c in unlearned.reference], residual=residual, residual_ci95=ci,
        residual_upper=upper, detail={"n": n, "count_original": original.k, "count_unlearned": unlearned.k,
                "count_retrained": list(unlearned.reference), "null_rate": unlearned.null_rate},
    )


ADVICE = ("To give the attacks power: forget more examples at once (the per-example test's power grows with the "
          "forget set: about 0.4 at 10 examples and 0.9 at 40 on a small, leaky model), train more reference "
          "models (--reference-models), or audit a model that memorises more; a well-generalising model may "
          "simply not leak these data.")


REMOVAL_ADVICE = ("To show the removal: more retrained models (--retrains) and reference models "
                  "(--reference-models) narrow the residual's interval, and so does a larger forget set; or accept a "
                  "weaker proof with --max-residual (recorded in results.json).")


def memorisation(tests: list[Evidence], role: str = "original") -> tuple[float | None, tuple[float, float] | None,
                                                                         float | None]:
    """A model's (the original's by default) per-example membership AUC, its 95% interval and its
    one-sided 95% upper bound, from the membership test."""
    membership = next((t for t in tests if t.name == "membership"), None)
    if membership is None or "auc" not in membership.detail:
        return None, None, None
    # The bound needs the per-example test against models that never saw the data (a population loss test
    # bounds only itself), and enough forget examples for DeLong's normal approximation to hold.
    if membership.detail.get("null") not in ("pool", "retrained") or \
            membership.detail.get("n_forget", 0) < MIN_FORGET_FOR_BOUND:
        return None, None, None
    if role not in membership.detail["auc"] or role not in membership.detail.get("auc_upper", {}):
        return None, None, None
    auc, ci = membership.detail["auc"][role], membership.detail["auc_ci95"][role]
    return float(auc), (float(ci[0]), float(ci[1])), float(membership.detail["auc_upper"][role])


def decide(tests: list[Evidence], alpha: float = DEFAULT_ALPHA, max_residual: float = DEFAULT_MAX_RESIDUAL,
           max_memorised_auc: float = DEFAULT_MAX_MEMORISED_AUC) -> Verdict:
    """Apply Holm over ``tests`` on each model and turn them into a :class:`Verdict` (sets the ``*_holm`` fields)."""
    margins = dict(max_residual=max_residual, max_memorised_auc=max_memorised_auc)
    if not tests:
        return Verdict("inconclusive", "no test could be run on this target, so nothing shows what the model knows",
                       alpha, None, None, None, None, None, None, ADVICE, **margins)
    auc, auc_ci, auc_upper = memorisation(tests)
    margins.update(memorised_auc=auc, memorised_auc_ci95=auc_ci, memorised_auc_upper=auc_upper)
    for t, p in zip(tests, holm([t.p_original for t in tests])):
        t.p_original_holm = p
    for t, p in zip(tests, holm([t.p_unlearned for t in tests])):
        t.p_unlearned_holm = p
    power_p = min(t.p_original_holm for t in tests)
    p_value = min(t.p_unlearned_holm for t in tests)
    powered = [t for t in tests if t.p_original_holm <= alpha and t.residual is not None]
    residual, ci, upper = None, None, None
    if powered:
        top = min(powered, key=lambda t: (t.p_original_holm, -t.residual))
        residual, ci = top.residual, top.residual_ci95
        upper = top.residual_upper
        if upper is None:  # unbounded (null in JSON); a document from before the one-sided bound: its interval's end
            upper = ci[1] if ci is not None and ci[1] is not None else math.inf
    margins["residual_leakage_upper"] = upper
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
        return Verdict("fail", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, **margins)
    # A request's examples (the membership test alone): the unlearned model's own bound can decide what the
    # original's evidence cannot (too weak to detect, or to bound the share removed): with 95% confidence it
    # ranks a forget example above an unseen one no more often than a model that did not memorise them (the
    # bound "not memorised" holds the original to). A no-op never passes this way: its unlearned model is the
    # original, with the original's p-value and bound, so it has failed (detected) or is "not memorised"
    # (bound within the margin) before this rule is reached, and otherwise its bound is above the margin.
    u_auc, _, u_upper = memorisation(tests, "unlearned")
    holds_little = ([t.name for t in tests] == ["membership"] and u_upper is not None
                    and u_upper <= max_memorised_auc)
    little = (f"the unlearned model holds little of it: its per-example membership test ranks a forget example above "
              f"an unseen one with probability {u_auc:.2f}, at most {u_upper:.2f} (95% upper bound; at most "
              f"{max_memorised_auc:g} counts as not memorised)") if holds_little else ""
    if power_p > alpha:
        unseen = (f"even before unlearning no test told the forget set from unseen data (best p = {_p(power_p)} > "
                  f"alpha = {alpha:g})")
        if auc_upper is not None and auc_upper <= max_memorised_auc:
            reason = (f"{unseen}, nor after it, and the original held little to remove: its per-example membership "
                      f"test ranks a forget example above an unseen one with probability {auc:.2f}, at most "
                      f"{auc_upper:.2f} (95% upper bound; 0.50 is no signal, and at most {max_memorised_auc:g} "
                      "counts as not memorised)")
            return Verdict("not_memorised", reason, alpha, power_p, p_value, residual, ci, over, over_p, None,
                           **margins)
        bound = "" if auc_upper is None else (f"; the original's membership AUC is {auc:.2f} with a 95% upper bound "
                                              f"of {auc_upper:.2f}, above the {max_memorised_auc:g} that would show "
                                              "the data were not memorised")
        if holds_little:
            reason = f"{unseen}{bound}; but {little}"
            return Verdict("pass", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, **margins)
        reason = f"{unseen}, so the attacks cannot confirm that these data are gone{bound}"
        return Verdict("inconclusive", reason, alpha, power_p, p_value, residual, ci, over, over_p, ADVICE,
                       **margins)
    best = min(tests, key=lambda t: t.p_original_holm)
    seen = (f"before unlearning the attacks told the forget set from unseen data ({best.label}, p = "
            f"{_p(best.p_original_holm)}); after unlearning no test does (smallest p = {_p(p_value)})")
    if upper is None or not upper < max_residual:
        if holds_little:
            reason = (f"{seen}, and {little}, although the original's signal was too weak to bound the share removed "
                      f"({'unbounded' if upper is None or math.isinf(upper) else f'up to {_bound(upper)}'})")
            return Verdict("pass", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, **margins)
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
                       **margins)
    reason = f"{seen}, and at most {_bound(upper)} of its signal can remain (95% upper bound, below {max_residual:g})"
    return Verdict("pass", reason, alpha, power_p, p_value, residual, ci, over, over_p, None, **margins)


def _p(p: float) -> str:
    return f"{p:.2g}"


def _bound(x: float | None) -> str:
    return "none" if x is None else f"{x:.2f}"
