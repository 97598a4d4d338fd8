"""What would decide an undecided request, and what it would cost here, in numbers.

An inconclusive pool-null request is short of evidence in one of two ways: the original
was not detected and its membership AUC's bound is too wide to call it not memorised, or
it was detected but the residual's bound reaches the margin; either way the unlearned
model's own AUC bound is above the margin too (else it would have passed). Each bound narrows as the
per-example difference ``d_i = s_i(model) - mean_OUT s_i(pool)`` gets less noisy. Its
variance over examples is the audited model's own part ``v_t`` plus the pool mean's,
``s2_b / n_out`` (the spread between reference models that left an example out, over how
many did); more pool models raise ``n_out`` (:func:`attacks.reference.leave_part_out_inclusion`
keeps the earlier models, so adding models narrows the evidence rather than redrawing it).
The projection scales each bound's distance from its estimate by the ratio of standard
errors; the forget set's own size is the floor no number of models moves.
"""

from __future__ import annotations

import math

import numpy as np

from attacks.significance import PairedTest

from audit.attacking import AttackContext
from audit.evidence import pool_model_statistics
from audit.scoring import Verdict

#: Pool sizes the advice projects to, as multiples of the current one.
GROWTH = (2, 4)


def _spread(ctx: AttackContext, ms_ids: np.ndarray, tested: np.ndarray) -> tuple[float, float, float]:
    """(v_t, s2_b, mean n_out) over the tested examples, from the pool's own models."""
    per_model, out = pool_model_statistics(ctx.reference_confidence[:, ms_ids],
                                           ctx.reference_models().in_mask[:, ms_ids])
    n_out = out.sum(0)
    several = n_out >= 2
    s2_b = 0.0
    if several.any():
        mean = (per_model * out).sum(0) / np.maximum(n_out, 1)
        dev = ((per_model - mean) ** 2 * out).sum(0) / np.maximum(n_out - 1, 1)
        s2_b = float(dev[several].mean())
    kept = n_out > 0
    mean_out = float(n_out[kept].mean()) if kept.any() else 0.0
    total = float(np.var(tested, ddof=1)) if tested.size > 1 else 0.0
    v_t = max(total - (s2_b / mean_out if mean_out else 0.0), 0.0)
    return v_t, s2_b, mean_out


def _seconds_per_model(ctx: AttackContext) -> float | None:
    ref = ctx.reference_models()
    trained = sum(1 for hit in ref.from_cache if not hit)
    if trained and ref.seconds > 0:
        return ref.seconds / trained
    seconds = (ctx.model_file.metrics or {}).get("train_seconds")
    return float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None


def _cost(seconds: float | None, models: int) -> str:
    if seconds is None:
        return f"{models} more model trainings"
    total = seconds * models
    return f"about {total / 60:.0f} min here" if total >= 90 else f"about {total:.0f} s here"


def pool_advice(ctx: AttackContext, test: PairedTest, ms_ids: np.ndarray, tested_stats: dict[str, np.ndarray],
                verdict: Verdict, num_models: int) -> str | None:
    """One or two sentences: the bound more pool models would give and their cost, or why none would help.

    The bounds that could decide the request: the residual's (original detected) or the original's
    membership AUC's (not detected), and either way the unlearned model's own AUC bound (a request of
    examples passes on it, :func:`audit.scoring.decide`). The advice names the one that more models
    decide soonest, else the first."""
    detected = verdict.power_p_value is not None and verdict.power_p_value <= verdict.alpha
    candidates = []  # (name, estimate, upper, goal, strict, role whose centred statistic it rests on)
    if detected:
        upper, estimate = verdict.residual_leakage_upper, verdict.residual_leakage
        if upper is not None and estimate is not None and math.isfinite(upper):
            candidates.append(("residual-leakage bound", estimate, upper, verdict.max_residual, True, "unlearned"))
    elif verdict.memorised_auc is not None and verdict.memorised_auc_upper is not None:
        candidates.append(("bound on the original's membership AUC", verdict.memorised_auc,
                           verdict.memorised_auc_upper, verdict.max_memorised_auc, False, "original"))
    if verdict.memorised_auc is not None and "unlearned" in test.auc_upper:  # a bound was trusted for this request
        candidates.append(("bound on the unlearned model's membership AUC", test.auc["unlearned"],
                           test.auc_upper["unlearned"], verdict.max_memorised_auc, False, "unlearned"))
    if not candidates:
        if detected:
            return (f"the residual's interval is unbounded because the original's signal is weak next to the "
                    f"noise of {test.n_forget} examples; more reference models narrow only the pool's part of "
                    "it: a larger request, or a model that memorises more, decides it")
        return None
    spreads = {}
    for role in {c[5] for c in candidates}:
        spreads[role] = _spread(ctx, ms_ids, tested_stats[role] - tested_stats["pool"])
    if any(n_out <= 0 for _, _, n_out in spreads.values()):
        return None
    seconds = _seconds_per_model(ctx)
    chosen = None
    for growth in GROWTH:
        for name, estimate, upper, goal, strict, role in candidates:
            v_t, s2_b, n_out = spreads[role]
            now = v_t + s2_b / n_out
            ratio = math.sqrt((v_t + s2_b / (n_out * growth)) / now) if now > 0 else 1.0
            projected = estimate + (upper - estimate) * ratio
            decided = projected < goal if strict else projected <= goal
            if decided or (growth == GROWTH[-1] and chosen is None):
                chosen = (growth, name, upper, goal, projected, decided)
            if decided:
                break
        if chosen is not None and chosen[5]:
            break
    growth, name, upper, goal, projected, decided = chosen
    total, more = num_models * growth, num_models * (growth - 1)
    head = (f"with {total} reference models (--reference-models {total}) the {name} would be about {projected:.2f} "
            f"(now {upper:.2f}; {'within' if decided else 'still outside'} the {goal:g} a decision needs); "
            f"{more} more models, {_cost(seconds, more)}, and later requests reuse them")
    if not decided:
        head += (f". Most of the remaining width comes from the {test.n_forget} forget examples themselves: "
                 "a larger request, or --max-residual / --max-memorised-auc (recorded), decides it")
    return head[0].upper() + head[1:] + "."
