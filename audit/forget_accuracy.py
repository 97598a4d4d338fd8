"""Accuracy on the forget set, the retained set and the test split (SalUn's measures).

Every figure comes from one pass of the model over the training set and one over the
test split: the forget, retain and per-class figures are shares of those predictions, so
a model costs two forward passes however many figures are asked of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audit.data import Dataset
from audit.forget import ForgetSet
from unlearning import retain_mask
from unlearning.training import predict_logits


@dataclass(frozen=True)
class SplitPredictions:
    """A model's predicted labels on the training set (N_train,) and on the test split (N_test,)."""

    train: torch.Tensor
    test: torch.Tensor

    @classmethod
    def of(cls, model: torch.nn.Module, data: Dataset) -> "SplitPredictions":
        """One logits pass per split (eval mode, batches of 1024, as :func:`unlearning.accuracy`)."""
        with torch.no_grad():
            return cls(predict_logits(model, data.x_train).argmax(1), predict_logits(model, data.x_test).argmax(1))


def _share_correct(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of predictions against labels; NaN for an empty set (as :func:`unlearning.accuracy`)."""
    if len(y) == 0:
        return float("nan")
    return float((predicted == y).float().mean())


def forget_metrics(model: torch.nn.Module, data: Dataset, forget: ForgetSet,
                   predictions: SplitPredictions | None = None) -> dict:
    """SalUn's accuracies (fractions in [0, 1]): forget set, retained set, and test.

    ``test_accuracy_kept_classes`` leaves out the test examples of forgotten classes
    (for sample forgetting it is the whole test set); ``forgotten_classes_test_accuracy``
    is the accuracy on the test examples of the forgotten classes (None for samples).
    ``predictions``: the model's, when the caller has them already.
    """
    p = predictions or SplitPredictions.of(model, data)
    keep = retain_mask(len(data.y_train), forget.ids)
    out = {
        "forget_accuracy": _share_correct(p.train[forget.ids], data.y_train[forget.ids]),
        "retain_accuracy": _share_correct(p.train[keep], data.y_train[keep]),
        "test_accuracy_kept_classes": _share_correct(p.test, data.y_test),
        "forgotten_classes_test_accuracy": None,
    }
    if forget.classes:
        gone = torch.isin(data.y_test, torch.tensor(forget.classes))
        out["test_accuracy_kept_classes"] = _share_correct(p.test[~gone], data.y_test[~gone])
        out["forgotten_classes_test_accuracy"] = _share_correct(p.test[gone], data.y_test[gone])
    return out


def accuracies(model: torch.nn.Module, data: Dataset, forget: ForgetSet,
               predictions: SplitPredictions | None = None) -> dict:
    """Forget, retain and test accuracy (all classes, and classes not forgotten): the audit's
    ``accuracy`` entries, from two forward passes (none with ``predictions``)."""
    p = predictions or SplitPredictions.of(model, data)
    m = forget_metrics(model, data, forget, p)
    return {"forget": m["forget_accuracy"], "retain": m["retain_accuracy"], "test": _share_correct(p.test, data.y_test),
            "test_other_classes": m["test_accuracy_kept_classes"]}
