"""The Shokri et al. (2017) shadow-model attack, through IBM ART (the paper's attack).

ART's ``ShadowModels`` draws the member/non-member splits of each shadow model and
collects their softmax outputs; ART's ``MembershipInferenceBlackBox`` learns, from
those outputs and the true labels, a classifier that tells members from non-members,
and is then applied to the target's outputs.

We hand ``ShadowModels`` example ids instead of images (a one-column array it only
shuffles and slices), so each shadow model is trained by the auditor's own recipe
``train_reference(ids, seed)`` and lands in the same reference-model cache.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from attacks.checks import as_labels, check_classes, check_images
from attacks.reference import ModelFactory, ReferenceCache, TrainReference, load_or_train
from attacks.signals import model_logits, softmax


class _Float32Input(nn.Module):
    """ART's HopSkipJump hands the model float64 arrays under numpy 2; cast them back."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float())


def art_classifier(model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Wrap a logits model as ART's ``PyTorchClassifier`` (inputs in [0, 1], CPU, float32)."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=_Float32Input(model),
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(int(d) for d in input_shape),
        nb_classes=int(num_classes),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


class _ShadowByIds:
    """The little of an ART estimator that ``ShadowModels`` uses, trained via ids."""

    input_shape = (1,)

    def __init__(self, train_reference: TrainReference, x: torch.Tensor, cache: ReferenceCache | None, seeds: list[int]):
        self._train_reference, self._x, self._cache, self._seeds = train_reference, x, cache, seeds
        self.seed = seeds.pop(0) if seeds else 0
        self.model: nn.Module | None = None
        self.from_cache = False

    def clone_for_refitting(self) -> "_ShadowByIds":
        return _ShadowByIds(self._train_reference, self._x, self._cache, self._seeds)

    def fit(self, ids: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
        self.model, self.from_cache = load_or_train(self._train_reference, ids[:, 0].astype(np.int64), self.seed, self._cache)

    def predict(self, ids: np.ndarray, **kwargs: Any) -> np.ndarray:
        assert self.model is not None
        return softmax(model_logits(self.model, self._x[torch.as_tensor(ids[:, 0].astype(np.int64))]))


def shadow_model_scores(
    target_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    train_reference: TrainReference,
    *,
    ids: np.ndarray | None = None,
    num_shadow_models: int,
    seed: int = 0,
    attack_model_type: str = "nn",
    cache_dir: str | os.PathLike | None = None,
    model_factory: ModelFactory | None = None,
    cache_key: str | None = None,
) -> np.ndarray:
    """Per-example scores (N,): ART's black-box attack model's P(member), higher = member.

    ``x``/``y`` are the auditor's data (the pool ``train_reference`` indexes); shadow
    models train on random halves of it, ``num_shadow_models`` of them
    (:data:`attacks.registry.DEFAULT_REFERENCE_MODELS` is the audit's count). ``ids`` selects which of those examples to
    score (default: all). ``attack_model_type`` is ART's ('nn', 'rf', 'gb', ...).
    """
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox, ShadowModels

    y = as_labels(y)
    check_images(x, y)
    num_classes = check_classes(y)
    n = len(y)
    if not isinstance(num_shadow_models, int) or num_shadow_models < 1:
        raise ValueError(f"num_shadow_models must be a positive integer, got {num_shadow_models!r}")
    if n // 2 < 2 * num_classes:
        raise ValueError(
            f"the shadow-model attack needs at least {4 * num_classes} examples of auditor data "
            f"({num_classes} classes, half of them per shadow model), got {n}"
        )
    cache = ReferenceCache(cache_dir, model_factory, cache_key) if cache_dir is not None else None  # type: ignore[arg-type]
    template = _ShadowByIds(train_reference, x, cache, [seed + 1000 + i for i in range(num_shadow_models + 1)])
    shadows = ShadowModels(template, num_shadow_models=num_shadow_models, random_state=seed)
    pool_ids = np.arange(n, dtype=np.float64).reshape(-1, 1)
    (_, y_in, p_in), (_, y_out, p_out) = shadows.generate_shadow_dataset(pool_ids, y.numpy(), member_ratio=0.5)

    estimator = art_classifier(target_model, tuple(x.shape[1:]), num_classes)
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=attack_model_type)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # ART's attack network draws its init and batches from torch's RNG
        attack.fit(x=None, y=y_in, pred=p_in.astype(np.float32), test_x=None, test_y=y_out, test_pred=p_out.astype(np.float32))

    scored = np.arange(n) if ids is None else np.asarray(ids, dtype=np.int64)
    target_p = softmax(model_logits(target_model, x[torch.as_tensor(scored)])).astype(np.float32)
    inferred = attack.infer(x=None, y=y.numpy()[scored], pred=target_p, probabilities=True)
    return np.asarray(inferred, dtype=np.float64).reshape(len(scored), -1)[:, -1]
