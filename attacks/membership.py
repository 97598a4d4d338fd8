"""Run several membership attacks on one target and score each the same way.

The library call: the auditor's data ``x``/``y`` (the pool that ``train_reference``
indexes by id), which of it the target trained on, and the recipe. Reference models are
trained (or loaded from the cache) once; their logits and the target's are computed once
(:class:`attacks.registry.Signals`) and every attack of :data:`attacks.registry.ATTACKS`
scores from them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from attacks import registry
from attacks.checks import as_labels, check_classes, check_images, check_membership
from attacks.metrics import DEFAULT_DELTA, MembershipMetrics, membership_metrics
from attacks.reference import ModelFactory, ReferenceModels, TrainReference, train_reference_models
from attacks.registry import DEFAULT_ATTACKS, DEFAULT_REFERENCE_MODELS
from attacks.signals import model_logits

ATTACKS = tuple(registry.ATTACKS)


@dataclass
class AttackResult:
    """One attack's per-example scores (higher = member) and their metrics.

    ``ids`` are the scored examples' indices in the auditor's data (label-only scores a
    subset); ``seconds`` is the attack's own time, reference-model training excluded.
    """

    name: str
    ids: np.ndarray
    scores: np.ndarray
    metrics: MembershipMetrics
    seconds: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "seconds": float(self.seconds), "num_scored": int(len(self.ids)),
                "settings": dict(self.settings), **self.metrics.to_dict()}


@dataclass
class MembershipAudit:
    """Every attack's result, plus the reference models they shared."""

    results: dict[str, AttackResult]
    reference: ReferenceModels | None
    seed: int

    def strongest(self) -> AttackResult:
        """The attack with the highest TPR at 1% FPR (AUC breaks ties), among those that
        scored every example: low-FPR figures on a small subset are too coarse to compare."""
        most = max(len(r.ids) for r in self.results.values())
        full = [r for r in self.results.values() if len(r.ids) == most]
        return max(full, key=lambda r: (r.metrics.tpr_at_1pct_fpr, r.metrics.auc))

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "reference_models": self.reference.to_dict() if self.reference is not None else None,
            "attacks": {name: r.to_dict() for name, r in self.results.items()},
            "strongest": self.strongest().name if self.results else None,
        }


def _balanced_subset(is_member: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Up to ``limit`` ids, half members and half non-members where possible, sorted."""
    rng = np.random.default_rng(seed)
    mem, non = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    k_mem = min(len(mem), max(limit // 2, limit - len(non)))
    k_non = min(len(non), limit - k_mem)
    return np.sort(np.concatenate([rng.choice(mem, k_mem, replace=False), rng.choice(non, k_non, replace=False)]))


def run_membership_attacks(
    target_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    is_member: np.ndarray | torch.Tensor,
    train_reference: TrainReference | None = None,
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    num_reference_models: int = DEFAULT_REFERENCE_MODELS,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    model_factory: ModelFactory | None = None,
    cache_key: str | None = None,
    label_only_max_examples: int = 200,
    shadow_attack_model_type: str = "nn",
    delta: float = DEFAULT_DELTA,
) -> MembershipAudit:
    """Run ``attacks`` against ``target_model`` and score each on ``is_member``.

    ``x`` (N, C, H, W) float in [0, 1] and ``y`` (N,) are the auditor's data, indexed by
    example id; ``is_member`` (N,) marks the ids the target trained on. LiRA, RMIA and the
    shadow attack need ``train_reference(ids, seed) -> nn.Module``; caching needs
    ``cache_dir``, ``model_factory`` and ``cache_key`` (see :mod:`attacks.reference`).
    ``attacks`` and ``num_reference_models`` default to the registry's
    (:data:`attacks.registry.DEFAULT_ATTACKS`, :data:`attacks.registry.DEFAULT_REFERENCE_MODELS`),
    the audit's own.
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"unknown attack(s) {unknown or attacks}; choose from {', '.join(ATTACKS)}")
    y = as_labels(y)
    check_images(x, y)
    check_classes(y)
    member = check_membership(is_member, n=len(y))
    if train_reference is None and set(attacks) & registry.NEEDS_REFERENCE:
        raise ValueError("LiRA, RMIA and the shadow attack need train_reference(ids, seed) -> nn.Module; pass it or choose attacks=('loss',)")
    reference = None
    signals = registry.Signals(y, model_logits(target_model, x))
    if set(attacks) & registry.SIGNAL_REFERENCE:
        reference = train_reference_models(
            train_reference, len(y), num_models=num_reference_models, seed=seed,  # type: ignore[arg-type]
            cache_dir=cache_dir, model_factory=model_factory, cache_key=cache_key,
        )
        signals.reference_logits = registry.reference_logits(reference, x)
        signals.in_mask = reference.in_mask
    all_ids = np.arange(len(y))
    results: dict[str, AttackResult] = {}
    for name in attacks:
        attack = registry.get(name)
        start, ids = time.perf_counter(), all_ids
        settings = dict(attack.settings or {})
        if attack.needs_reference:
            settings["num_reference_models"] = num_reference_models
        if attack.scores_a_subset:
            ids = _balanced_subset(member, label_only_max_examples, seed)
            sub = torch.as_tensor(ids)
            access = registry.ModelAccess(target_model, x[sub], seed=seed, num_classes=int(y.max()) + 1)
            scores = registry.score(name, registry.Signals(y[sub], signals.logits[sub]), access)
            settings["max_examples"] = label_only_max_examples
        else:
            access = registry.ModelAccess(target_model, x, pool_x=x, pool_y=y, train_reference=train_reference,
                                          num_models=num_reference_models, seed=seed, cache_dir=cache_dir,
                                          model_factory=model_factory, cache_key=cache_key,
                                          shadow_attack_model_type=shadow_attack_model_type)
            scores = registry.score(name, signals, access)
            if "attack_model_type" in settings:  # an attack that trains an attack model of its own
                settings["attack_model_type"] = shadow_attack_model_type
        seconds = time.perf_counter() - start
        results[name] = AttackResult(name, ids, scores, membership_metrics(scores, member[ids], delta=delta), seconds, settings)
    return MembershipAudit(results, reference, seed)
