"""The tests a target's verdict rests on (:mod:`audit.scoring` decides from them): the
per-example membership test over every model, and for class targets the forgotten class's
accuracy and model inversion, each against the retrained models.
"""

from __future__ import annotations

import numpy as np
import torch

import attacks
from attacks.signals import cross_entropy

from audit.attacking import AttackContext
from audit.forget import ForgetSet
from audit.scoring import Evidence, rate_evidence
from reports.document import Inversion


#: The membership test's nulls (results.json ``tests[].detail.null``):
NULLS = {
    "pool": "each model against the shared reference pool's models that never trained on each example",
    "retrained": "each model against models retrained without the forget set",
    "permutation": "each model's own statistic permuted over examples (no reference models)",
}


def membership_test(ctx: AttackContext, logits: dict[str, torch.Tensor], ms, seed: int,
                    null: str) -> tuple[attacks.PairedTest, str, dict[str, np.ndarray], np.ndarray]:
    """The per-example paired test over every model on the same examples (attacks.significance).

    ``logits``: each model role's logits on ``ms``. With reference models: U-LiRA's
    per-example statistic. Without (they cannot be trained for a model without a recipe):
    the negative loss, a population test. ``null`` (:data:`NULLS`):

    - ``"pool"``: per example, each model is compared with the mean statistic of the
      reference models that left that example out (role ``"pool"``), so a request needs no
      retraining. Under the null (a model that never saw the forget set) the difference is
      exchangeable between forget and held-out examples: neither was seen by the audited
      model nor by the reference models it is compared with, and the pool's cut does not
      depend on the forget set. Examples no reference model left out are dropped (with
      ``ctx.pool_parts`` or more models there are none).
    - ``"retrained"``: against the roles ``reference`` and ``retrain_k`` (models retrained
      without the forget set).
    """
    if ctx.has_reference:
        ref_phi = ctx.reference_confidence[:, ms.ids]
        in_mask = ctx.reference_models().in_mask[:, ms.ids]
        stats = {role: attacks.per_example_statistic(attacks.scaled_confidence(z, ms.y), ref_phi, in_mask)
                 for role, z in logits.items()}
        label = "per-example membership test (U-LiRA, Hayes et al. 2025)"
    else:
        stats = {role: -cross_entropy(z, ms.y) for role, z in logits.items()}
        label = "membership test on the loss (Yeom et al. 2018; no reference models)"
    is_member, tested = ms.is_member, np.arange(len(ms.is_member))
    if null == "pool":
        stats["pool"], kept = pool_out_statistic(ref_phi, in_mask)
        if not kept[is_member].any() or not kept[~is_member].any():
            raise ValueError("no forget or held-out example was left out of any reference model; "
                             "pass more reference models (--reference-models)")
        stats = {role: s[kept] for role, s in stats.items()}
        is_member, tested = is_member[kept], tested[kept]
        null_roles = ["pool"]
    else:
        null_roles = [role for role in stats if role == "reference" or role.startswith("retrain_")]
    test = attacks.paired_permutation_test(stats, is_member, baseline="original", null_roles=null_roles,
                                           centre_on_null=bool(null_roles), seed=seed)
    test.null = null if null_roles else "permutation"
    return test, label, stats, tested


def pool_model_statistics(ref_phi: np.ndarray, in_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each reference model scored like an audited model (its per-example statistic against
    the whole pool), and where it left each example out: (M, N) floats, (M, N) bools."""
    per_model = np.stack([attacks.per_example_statistic(ref_phi[m], ref_phi, in_mask) for m in range(len(ref_phi))])
    return per_model, ~np.asarray(in_mask, dtype=bool)


def pool_out_statistic(ref_phi: np.ndarray, in_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the mean per-example statistic of the reference models that left it out,
    and which examples have any such model ((N,) floats, (N,) bools); only a model's value
    on the examples it never trained on is used."""
    per_model, out = pool_model_statistics(ref_phi, in_mask)
    n_out = out.sum(0)
    kept = n_out > 0
    return np.where(kept, (per_model * out).sum(0) / np.maximum(n_out, 1), 0.0), kept


def per_example_picture(stats: dict[str, np.ndarray], is_forget: np.ndarray, retrain_roles: list[str],
                        ids: np.ndarray | None = None) -> dict:
    """The forget examples' statistic under the original, unlearned and retrained models (for the report's
    figure); with the pool null, "retrained" holds the pool's models that left each example out (their mean).
    ``ids``: the training id of every tested example, so that the report can name the most exposed ones
    ("forget_ids", in the order of the forget examples' statistics)."""
    out = {role: [round(float(v), 4) for v in stats[role][is_forget]] for role in ("original", "unlearned")}
    if ids is not None:
        out["forget_ids"] = [int(i) for i in np.asarray(ids)[is_forget]]
    out["retrained"] = [round(float(v), 4) for r in retrain_roles for v in stats[r][is_forget]]
    out["held_out_original"] = [round(float(v), 4) for v in stats["original"][~is_forget]]
    return out


def forget_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """(forget examples classified correctly, mean probability of their true class) from their logits."""
    correct = int((logits.argmax(1) == y).sum())
    confidence = float(torch.softmax(logits, 1).gather(1, y.view(-1, 1)).mean())
    return correct, confidence


def class_accuracy_evidence(forget: ForgetSet, ms, logits: dict[str, torch.Tensor],
                            retrain_roles: list[str]) -> Evidence:
    """How many forget examples each model still classifies correctly, against the retrained models."""
    n = len(forget)  # the forget set leads the membership set, in its own order
    counts = {role: forget_correct(z[:n], ms.y[:n]) for role, z in logits.items()}
    ref_counts = [counts[r][0] for r in retrain_roles]
    ev = rate_evidence("class_accuracy", "accuracy on the forgotten class against retrained models",
                       attacks.rate_excess_test(counts["original"][0], n, ref_counts),
                       attacks.rate_excess_test(counts["unlearned"][0], n, ref_counts))
    ev.detail["confidence"] = {"original": counts["original"][1], "unlearned": counts["unlearned"][1],
                               "retrained": [counts[r][1] for r in retrain_roles]}
    return ev


def inversion_evidence(inv: Inversion) -> Evidence:
    """How many MI-Face reconstructions an independent classifier recognises, against the retrained models."""
    n = inv.n_reconstructions
    ref_counts = [r.recognised for r in inv.retrains]
    return rate_evidence("inversion", "model inversion (MI-Face) recognised against retrained models",
                         attacks.rate_excess_test(inv.original.recognised, n, ref_counts),
                         attacks.rate_excess_test(inv.unlearned.recognised, n, ref_counts))
