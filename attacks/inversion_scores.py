"""Scores for model-inversion reconstructions, so they are judged by numbers, not by eye.

(a) attack accuracy: the share of reconstructions an independent evaluation classifier
    (other architecture or seed, trained on held-out data) labels as the target class
    (the yardstick of Zhang et al. 2020, "The Secret Revealer", and later MI papers);
(b) similarity to the nearest real image of the target class against the nearest of the
    other classes (1 - RMSE in [0, 1] pixel space), and how often the nearest is of the
    target class;
(c) the target model's own softmax confidence in the target class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from attacks.checks import as_labels, check_images
from attacks.signals import model_logits


@dataclass
class ClassInversionScore:
    """Scores of the reconstructions aimed at one class (means over its restarts)."""

    target_class: int
    num_images: int
    attack_accuracy: float | None
    target_confidence: float
    similarity_target: float | None
    similarity_other: float | None
    nearest_is_target: float | None

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass
class ModelInversionResult:
    """Reconstructions and their scores.

    ``images`` is float32 (K, C, H, W) in [0, 1]; ``target_classes`` (K,) the class each
    image was optimised for. Fields are ``None`` when the input they need (evaluation
    model, reference images) was not given.
    """

    images: np.ndarray
    target_classes: np.ndarray
    per_class: list[ClassInversionScore]
    attack_accuracy: float | None
    target_confidence: float
    nearest_is_target: float | None
    method: str
    iterations: int
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return len(self.images) / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        """JSON-able summary without the images (the report draws those itself)."""
        return {
            "method": self.method,
            "iterations": self.iterations,
            "num_images": int(len(self.images)),
            "seconds": float(self.seconds),
            "images_per_second": float(self.images_per_second),
            "attack_accuracy": self.attack_accuracy,
            "target_confidence": self.target_confidence,
            "nearest_is_target": self.nearest_is_target,
            "settings": dict(self.settings),
            "per_class": [c.to_dict() for c in self.per_class],
        }


def _mean(v: np.ndarray | None) -> float | None:
    return None if v is None or v.size == 0 else float(np.mean(v))


def score_reconstructions(
    images: torch.Tensor,
    target_classes: np.ndarray,
    target_model: nn.Module,
    evaluation_model: nn.Module | None = None,
    x_reference: torch.Tensor | None = None,
    y_reference: torch.Tensor | np.ndarray | None = None,
) -> tuple[list[ClassInversionScore], float | None, float, float | None]:
    """Per-class scores plus overall (attack accuracy, target confidence, nearest-is-target)."""
    t = np.asarray(target_classes, dtype=np.int64)
    labels = torch.as_tensor(t)
    confidence = torch.softmax(model_logits(target_model, images), 1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()
    correct = None
    if evaluation_model is not None:
        correct = (model_logits(evaluation_model, images).argmax(1).numpy() == t).astype(np.float64)
    sim_t = sim_o = near = None
    if x_reference is not None:
        if y_reference is None:
            raise ValueError("y_reference is required with x_reference (the class of each real image)")
        y_ref = as_labels(y_reference, "y_reference")
        check_images(x_reference, y_ref, "x_reference", "y_reference")
        if tuple(x_reference.shape[1:]) != tuple(images.shape[1:]):
            raise ValueError(
                f"x_reference images have shape {tuple(x_reference.shape[1:])} but the reconstructions "
                f"have {tuple(images.shape[1:])}; pass real images of the model's input shape"
            )
        d = images.shape[1] * images.shape[2] * images.shape[3]
        rmse = torch.cdist(images.double().flatten(1), x_reference.double().flatten(1)) / math.sqrt(d)
        same = y_ref.view(1, -1) == labels.view(-1, 1)
        inf = torch.tensor(float("inf"), dtype=rmse.dtype)
        d_t = torch.where(same, rmse, inf).min(1).values
        d_o = torch.where(~same, rmse, inf).min(1).values
        sim_t, sim_o = (1 - d_t).numpy(), (1 - d_o).numpy()
        near = (d_t < d_o).double().numpy()

    per_class = []
    for c in np.unique(t):
        k = t == c
        per_class.append(
            ClassInversionScore(
                target_class=int(c),
                num_images=int(k.sum()),
                attack_accuracy=_mean(correct[k]) if correct is not None else None,
                target_confidence=float(confidence[k].mean()),
                similarity_target=_mean(sim_t[k]) if sim_t is not None else None,
                similarity_other=_mean(sim_o[k]) if sim_o is not None else None,
                nearest_is_target=_mean(near[k]) if near is not None else None,
            )
        )
    return per_class, _mean(correct), float(confidence.mean()), _mean(near)
