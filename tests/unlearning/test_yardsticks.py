"""Finetune and retrain train on the retained data only, and nothing else."""

from __future__ import annotations

import copy

import pytest
import torch

from audit.models import build_model
from unlearning import TrainConfig, finetune_unlearn, fit, retain_mask, retrain_unlearn


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach() for t in model.state_dict().values()]


def test_retrain_is_training_from_scratch_on_the_retained_examples(digits):
    forget = torch.nonzero(digits.y_train == 5).flatten()
    config = TrainConfig(epochs=1, seed=3)
    stats = digits.channel_stats()
    result = retrain_unlearn(lambda: build_model("smallcnn", 1, 10, *stats, seed=3), digits.x_train,
                             digits.y_train, forget, config)
    keep = ~torch.isin(torch.arange(len(digits.y_train)), forget)
    expected = fit(build_model("smallcnn", 1, 10, *stats, seed=3), digits.x_train[keep], digits.y_train[keep], config)
    assert all(torch.equal(a, b) for a, b in zip(_params(result.model), _params(expected)))
    assert result.details["retained_examples"] == int(keep.sum())
    # Training on everything gives other weights: the forget set really was left out.
    everything = fit(build_model("smallcnn", 1, 10, *stats, seed=3), digits.x_train, digits.y_train, config)
    assert not all(torch.equal(a, b) for a, b in zip(_params(result.model), _params(everything)))


def test_finetune_continues_on_the_retained_examples_and_leaves_the_input(trained_digits):
    data, mf = trained_digits.data, trained_digits.model_file
    forget = torch.tensor([1, 2, 3, 500])
    before = copy.deepcopy(mf.model)
    config = TrainConfig(epochs=1, seed=1)
    result = finetune_unlearn(mf.model, data.x_train, data.y_train, forget, config)
    keep = retain_mask(len(data.y_train), forget)
    expected = fit(copy.deepcopy(before), data.x_train[keep], data.y_train[keep], config)
    assert all(torch.equal(a, b) for a, b in zip(_params(result.model), _params(expected)))
    assert all(torch.equal(a, b) for a, b in zip(_params(mf.model), _params(before)))


def test_retain_mask_rejects_ids_out_of_range():
    assert retain_mask(5, torch.tensor([0, 4])).tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError, match="0..4"):
        retain_mask(5, torch.tensor([5]))
