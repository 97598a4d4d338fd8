"""Run the configured attacks on the models of one forget target.

Membership: the forget set are the members, held-out test examples (of the forgotten
classes, for class targets) the non-members; every attack scores every model on the
same examples. Inversion: MI-Face on each forgotten class, judged by an independent
evaluation classifier trained on held-out data. Reference models train on random subsets
of the auditor's pool (training and held-out data together) of the target's training-set
size, so members and held-out non-members alike have models trained with and without them.
Which attacks there are, which need reference models, and the defaults: :mod:`attacks.registry`.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import attacks
from attacks import registry
from attacks.reference import accuracy_check
from audit.data import Dataset
from audit.errors import InputError, StepError
from audit.forget import ForgetSet
from audit.modelfile import ModelFile
from audit.usercode import code_identity
from unlearning import TrainConfig, train_with


def fault(stage: str) -> None:
    """Fault injection for testing CI pipelines: AUDIT_FAULT=<stage> makes that stage fail."""
    if os.environ.get("AUDIT_FAULT") == stage:
        raise StepError(f"{stage} failed (injected by AUDIT_FAULT={stage})")


@dataclass
class AttackContext:
    """What every attack on one audit shares: data, reference models, the recipe."""

    model_file: ModelFile
    data: Dataset
    seed: int
    num_reference_models: int
    cache_dir: Path | None
    mia_attacks: list[str]
    inversion_iterations: int = 400
    use_reference: bool = True
    executor: object = None  # audit.executor.LocalExecutor or RayExecutor; None: here, in order
    _reference: object = None
    _evaluator: nn.Module | None = None
    _predictions: dict = field(default_factory=dict, repr=False)

    def recipe(self) -> TrainConfig:
        return TrainConfig.from_dict(self.model_file.recipe or {})

    @functools.cached_property
    def pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The auditor's data that reference models train on: training ids 0..n-1, then the test split."""
        return torch.cat([self.data.x_train, self.data.x_test]), torch.cat([self.data.y_train, self.data.y_test])

    def test_ids(self, test_index: torch.Tensor | np.ndarray) -> np.ndarray:
        """Pool ids of test-split examples."""
        return len(self.data.y_train) + np.asarray(test_index, dtype=np.int64)

    def train(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        """A fresh model trained from scratch on (x, y) with the target's recipe or the user's training function."""
        model = self.model_file.fresh_model(seed=seed)
        cfg = TrainConfig.from_dict({**self.recipe().to_dict(), "seed": seed})
        return train_with(model, x, y, cfg, self.model_file.train_fn, full_recipe=True)

    def train_reference(self, ids: np.ndarray, seed: int) -> nn.Module:
        idx = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        x, y = self.pool
        return self.train(x[idx], y[idx], seed)

    def cache_key(self) -> str:
        mf = self.model_file
        return json.dumps({"arch": mf.arch, "arch_args": mf.arch_args, "recipe": self.recipe().to_dict(),
                           "mean": mf.mean, "std": mf.std, "data": self.data.sha256(), "pool": "train+test",
                           "factory": code_identity(mf.factory), "train_fn": code_identity(mf.train_fn)},
                          sort_keys=True)

    @property
    def has_reference(self) -> bool:
        """Whether reference models can be trained (a recipe or a training function) and were asked for."""
        return self.use_reference

    @property
    def train_fraction(self) -> float:
        """The share of the pool each reference model trains on (about the target's training-set size)."""
        return 1.0 - 1.0 / self.pool_parts

    @property
    def pool_parts(self) -> int:
        """Reference models leave one part of a random cut of the pool out (attacks.reference.pool_parts)."""
        return attacks.reference.pool_parts(len(self.pool[1]), len(self.data.y_train))

    def cache(self) -> attacks.ReferenceCache | None:
        if self.cache_dir is None:
            return None
        return attacks.ReferenceCache(self.cache_dir, self.model_file.fresh_model, self.cache_key())

    # A cached model must fit its own training ids nearly as well as the target fits its
    # training data: zeroed or random weights score near chance and are retrained.
    CACHE_ACCURACY_MARGIN = 0.25

    def cache_check(self):
        train_accuracy = (self.model_file.metrics or {}).get("train_accuracy")
        floor = max(0.0, (train_accuracy if isinstance(train_accuracy, (int, float)) else 0.0)
                    - self.CACHE_ACCURACY_MARGIN)
        return accuracy_check(*self.pool, floor)

    @property
    def pool_seed(self) -> int:
        """The seed of the pool's cut and of its first model: far from the seeds people train with, so
        that no target's own seed is skipped and every target trained on the same data with the same
        recipe shares one pool (and its cache entries)."""
        return 2_000_003 + 1009 * int(self.seed)

    def reference_models(self):
        """Reference models on random subsets of the pool of the target's training-set size, shared by all targets."""
        if self._reference is None:
            self._reference = attacks.train_reference_models(
                self.train_reference, len(self.pool[1]), num_models=self.num_reference_models,
                seed=self.pool_seed, cache_dir=self.cache_dir, model_factory=self.model_file.fresh_model,
                cache_key=self.cache_key(), parts=self.pool_parts, check=self.cache_check(),
                map_tasks=self._mapper("reference models (trained, or from the cache)"),
                avoid_seeds=() if self.model_file.seed is None else (int(self.model_file.seed),))
        return self._reference

    def _mapper(self, label: str):
        if self.executor is None:
            return None
        return lambda fn, tasks: self.executor.map(fn, tasks, label)

    @functools.cached_property
    def reference_logits(self) -> torch.Tensor:
        """Logits of every reference model on every pool example, (M, N_pool, C).

        Computed once per pool and kept in the cache beside the models (:mod:`audit.pool_signals`),
        so that a later request's audit costs only the audited models' inference.
        """
        from audit.pool_signals import pool_logits

        return pool_logits(self.reference_models(), self.pool[0], self.cache_dir, self.cache_key())

    @functools.cached_property
    def reference_confidence(self) -> np.ndarray:
        """Logit-scaled confidence of every reference model on every pool example, (M, N_pool)."""
        y = self.pool[1]
        return np.stack([attacks.scaled_confidence(logits, y) for logits in self.reference_logits])

    def retrain_seeds(self, count: int) -> list[int]:
        """Seeds of the retrained models: never the target's own seed, so model-to-model spread is measured."""
        own = self.model_file.seed
        seeds, s = [], 1_000_003 + 1009 * int(self.seed)
        while len(seeds) < count:
            if s != own:
                seeds.append(s)
            s += 1
        return seeds

    def retrained_models(self, forget: ForgetSet, count: int) -> list[tuple[nn.Module, int, bool]]:
        """``count`` models retrained from scratch without ``forget`` (cached and checked like reference models).

        Returns (model, seed, loaded from the cache) per model. A retrain is a reference
        model whose ids are the kept training data, so both share the cache.
        """
        keep = np.setdiff1d(np.arange(len(self.data.y_train)), forget.ids.numpy())
        if keep.size == 0:
            raise InputError(f"{forget.spec} would forget every training example; nothing is left to retrain on")
        seeds = self.retrain_seeds(count)
        run_one = functools.partial(attacks.train_one, self.train_reference, self.cache(), self.cache_check())
        tasks = [(keep, seed) for seed in seeds]
        mapper = self._mapper(f"models retrained without {forget.spec} (or from the cache)")
        results = mapper(run_one, tasks) if mapper else [run_one(task) for task in tasks]
        return [(model, seed, hit) for (model, hit), seed in zip(results, seeds)]

    @functools.cached_property
    def original_digest(self) -> str:
        return attacks.model_digest(self.model_file.model)

    @functools.cached_property
    def original_pool_logits(self) -> torch.Tensor:
        """The original's logits on every pool example (N_pool, C), float32: computed once per model and
        kept in the cache (:func:`audit.pool_signals.model_logits_cached`), so that a later request of the
        same model costs no forward pass of it over the pool."""
        from audit.pool_signals import model_logits_cached

        cached = self.cache_dir is not None and self.has_reference  # a model without a recipe has no cache key
        return model_logits_cached(self.model_file.model, self.original_digest, self.pool[0],
                                   self.cache_dir if cached else None, self.cache_key() if cached else "")

    def logits_on(self, model: nn.Module, ids: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """``model``'s logits on the pool examples ``ids`` (whose images are ``x``): the original's (and a
        no-op's unchanged copy's) from :attr:`original_pool_logits`, any other model's computed."""
        if attacks.model_digest(model) == self.original_digest:
            return self.original_pool_logits[torch.as_tensor(np.asarray(ids, dtype=np.int64))]
        return attacks.model_logits(model, x)

    def predictions(self, model: nn.Module):
        """``model``'s predicted labels on both splits, once per set of weights in this audit: the
        original's (from its cached pool logits) serve every request (and a no-op's unchanged copy)."""
        from audit.forget_accuracy import SplitPredictions

        key = attacks.model_digest(model)
        if key not in self._predictions:
            if key == self.original_digest:
                labels = self.original_pool_logits.argmax(1)
                n_train = len(self.data.y_train)
                self._predictions[key] = SplitPredictions(labels[:n_train], labels[n_train:])
            else:
                self._predictions[key] = SplitPredictions.of(model, self.data)
        return self._predictions[key]

    def evaluator(self) -> nn.Module:
        """The independent classifier that judges inversions: another seed, trained on held-out data."""
        if self._evaluator is None:
            self._evaluator = self.train(self.data.x_test, self.data.y_test, self.seed + 7919)
        return self._evaluator


@dataclass
class MembershipSet:
    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray          # pool ids (AttackContext.pool): training ids, then n_train + test index
    is_member: np.ndarray

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())


#: Held-out examples an audit compares a forget set with, at most: a seeded sample of the test split
#: beyond it (Fashion-MNIST's 10,000 would cost more inference than the request's own test gains).
MAX_HELD_OUT = 4000


def membership_set(ctx: AttackContext, forget: ForgetSet) -> MembershipSet:
    """Forget set (members) against held-out examples of the same classes (non-members).

    At most :data:`MAX_HELD_OUT` held-out examples: a sample drawn from the audit's seed,
    the same for every request of the run.
    """
    data = ctx.data
    if forget.classes:
        held = torch.nonzero(torch.isin(data.y_test, torch.tensor(forget.classes))).flatten()
    else:
        held = torch.arange(len(data.y_test))
    if len(held) > MAX_HELD_OUT:
        chosen = torch.randperm(len(held), generator=torch.Generator().manual_seed(int(ctx.seed)))[:MAX_HELD_OUT]
        held = held[chosen.sort().values]
    if len(held) == 0:
        raise InputError(f"the test split holds no example of {forget.spec}, so membership cannot be measured")
    x = torch.cat([data.x_train[forget.ids], data.x_test[held]])
    y = torch.cat([data.y_train[forget.ids], data.y_test[held]])
    ids = np.r_[forget.ids.numpy(), ctx.test_ids(held)]
    is_member = np.r_[np.ones(len(forget), dtype=bool), np.zeros(len(held), dtype=bool)]
    return MembershipSet(x, y, ids, is_member)


def population_sample(ctx: AttackContext) -> torch.Tensor:
    """The test-split examples RMIA compares with (its population z): all of them, or a seeded
    sample of :data:`MAX_HELD_OUT`."""
    n = len(ctx.data.y_test)
    if n <= MAX_HELD_OUT:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(ctx.seed) + 1))[:MAX_HELD_OUT].sort().values


def signals_for(ctx: AttackContext, model: nn.Module, ms: MembershipSet, with_reference: bool,
                logits: torch.Tensor | None = None) -> attacks.Signals:
    """The signals every attack reads: ``model``'s logits on the audited examples (``logits``,
    when the caller has them already), and the reference models' (computed once per audit
    over the pool, sliced here)."""
    signals = attacks.Signals(ms.y, attacks.model_logits(model, ms.x) if logits is None else logits)
    if with_reference:
        ref = ctx.reference_logits
        population = population_sample(ctx)
        test_ids = ctx.test_ids(population)
        signals.reference_logits = ref[:, torch.as_tensor(ms.ids)]
        signals.in_mask = ctx.reference_models().in_mask[:, ms.ids]
        signals.population_y = ctx.data.y_test[population]
        signals.population_logits = attacks.model_logits(model, ctx.data.x_test[population])
        signals.population_reference_logits = ref[:, torch.as_tensor(test_ids)]
        signals.population_in_mask = ctx.reference_models().in_mask[:, test_ids]
    return signals


def membership_scores(ctx: AttackContext, attack: str, model: nn.Module, ms: MembershipSet,
                      signals: attacks.Signals) -> np.ndarray:
    """One attack's scores (higher = member) on every example of ``ms``."""
    fault("attack")
    x_pool, y_pool = ctx.pool
    access = attacks.ModelAccess(model, ms.x, pool_x=x_pool, pool_y=y_pool, ids=ms.ids,
                                 train_reference=ctx.train_reference, num_models=ctx.num_reference_models,
                                 seed=ctx.seed, num_classes=ctx.data.num_classes, cache_dir=ctx.cache_dir,
                                 model_factory=ctx.model_file.fresh_model, cache_key=ctx.cache_key())
    return attacks.registry.score(attack, signals, access)


@dataclass
class MembershipOutcome:
    attack: str
    metrics: dict[str, dict]                 # model role -> MembershipMetrics.to_dict()
    forget_scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        spec = registry.get(self.attack)
        return {"attack": self.attack, "label": spec.label, "assumes": spec.assumes,
                "needs_reference": spec.needs_reference,
                "original": self.metrics.get("original"), "unlearned": self.metrics.get("unlearned"),
                "reference": self.metrics.get("reference")}


def run_membership(ctx: AttackContext, models: dict[str, nn.Module], ms: MembershipSet,
                   advance: Callable[[int], None],
                   logits: dict[str, torch.Tensor] | None = None) -> list[MembershipOutcome]:
    """Every configured attack on every model; each model's signals are computed once and shared
    (``logits``: the models' logits on ``ms``, when the caller computed them already)."""
    with_reference = bool(registry.SIGNAL_REFERENCE & set(ctx.mia_attacks))
    signals = {role: signals_for(ctx, model, ms, with_reference, (logits or {}).get(role))
               for role, model in models.items()}
    outcomes = []
    for attack in ctx.mia_attacks:
        metrics, forget_scores = {}, {}
        for role, model in models.items():
            scores = np.asarray(membership_scores(ctx, attack, model, ms, signals[role]), dtype=np.float64)
            metrics[role] = attacks.membership_metrics(scores, ms.is_member).to_dict()
            forget_scores[role] = scores[ms.is_member]
            advance(1)
        outcomes.append(MembershipOutcome(attack, metrics, forget_scores))
    return outcomes


INVERSION_RESTARTS = 16
IMAGE_ROLES = ("original", "unlearned", "reference")
SHOWN_PER_CLASS = 4


def save_png(image: np.ndarray, path: Path, min_size: int = 96) -> None:
    """One reconstruction (C, H, W) in [0, 1] as a PNG, upscaled without smoothing."""
    from PIL import Image

    arr = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    scale = max(1, min_size // max(pil.size))
    pil = pil.resize((pil.size[0] * scale, pil.size[1] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path, format="PNG")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_inversion(ctx: AttackContext, models: dict[str, nn.Module], classes: list[int],
                  target: str) -> tuple[dict, dict[str, np.ndarray]]:
    """MI-Face on each forgotten class for every model.

    ``models`` holds "original", "unlearned" and the retrained models ("reference" is the
    first retrain; "retrain_<k>" the others). Returns the document part, with the count of
    reconstructions the evaluation classifier recognises per model, and the images of the
    original, unlearned and reference models (the first few per class), with real examples of each
    class from the held-out test split (:func:`real_examples`), by their path relative to the output
    folder (``inversion/<target>/...``).
    """
    images: dict[str, np.ndarray] = {}
    evaluator = ctx.evaluator()
    data = ctx.data
    n = len(classes) * INVERSION_RESTARTS
    doc: dict = {"classes": classes, "restarts": INVERSION_RESTARTS, "iterations": ctx.inversion_iterations,
                 "n_reconstructions": n,
                 "evaluator": "same architecture, another seed, trained on the held-out test split", "retrains": []}
    for role, model in models.items():
        fault("attack")
        res = attacks.model_inversion(
            model, data.num_classes, data.input_shape, evaluation_model=evaluator,
            x_reference=data.x_train, y_reference=data.y_train, classes=classes, restarts=INVERSION_RESTARTS,
            iterations=ctx.inversion_iterations, seed=ctx.seed)
        recognised = int(round(res.attack_accuracy * n))
        if role == "reference" or role.startswith("retrain_"):
            doc["retrains"].append({"attack_accuracy": res.attack_accuracy, "recognised": recognised})
        if role not in IMAGE_ROLES:
            continue
        rel_dir = Path("inversion") / _safe(target)
        paths = []
        for k, (image, cls) in enumerate(zip(res.images, res.target_classes)):
            if k % INVERSION_RESTARTS >= SHOWN_PER_CLASS:
                continue
            rel = rel_dir / f"{role}-class{int(cls)}-{k % INVERSION_RESTARTS}.png"
            images[rel.as_posix()] = image
            paths.append(rel.as_posix())
        sims = [c.similarity_target for c in res.per_class if c.similarity_target is not None]
        others = [c.similarity_other for c in res.per_class if c.similarity_other is not None]
        doc[role] = {
            "attack_accuracy": res.attack_accuracy,
            "recognised": recognised,
            "similarity": float(np.mean(sims)) if sims else None,
            "similarity_other": float(np.mean(others)) if others else None,
            "nearest_is_target": res.nearest_is_target,
            "confidence": res.target_confidence,
            "seconds": res.seconds,
            "images": paths,
        }
    doc.setdefault("reference", None)
    doc["real_examples"] = real_examples(data, classes, Path("inversion") / _safe(target), images)
    return doc, images


def real_examples(data: Dataset, classes: list[int], rel_dir: Path, images: dict[str, np.ndarray]) -> list[dict]:
    """The first ``SHOWN_PER_CLASS`` examples of each class in the held-out test split, for the report
    to show beside the reconstructions; their images are added to ``images`` by relative path.

    From the test split, never the training data: for a class request every training example of the
    class is one the request asked to forget, and the report must not carry it. In the split's order,
    so the same data always shows the same examples (results.json records their indexes).
    """
    labels = data.y_test.numpy()
    found = []
    for cls in classes:
        for index in np.flatnonzero(labels == cls)[:SHOWN_PER_CLASS].tolist():
            rel = (rel_dir / f"real-class{int(cls)}-test{index}.png").as_posix()
            images[rel] = data.x_test[index].numpy()
            found.append({"label": int(cls), "split": "test", "index": index, "image": rel})
    return found
