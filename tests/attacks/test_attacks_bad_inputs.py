"""Each bad input gets one clear ValueError that says what to do."""

import numpy as np
import pytest
import torch

from attacks import lira_scores, model_inversion, run_membership_attacks, train_reference_models


def test_no_non_members(overfit):
    with pytest.raises(ValueError, match="no non-members; pass examples the target model was not trained on"):
        run_membership_attacks(overfit["target"], overfit["x"], overfit["y"], np.ones(len(overfit["y"]), bool), attacks=("loss",))


def test_single_class(overfit):
    y = torch.zeros_like(overfit["y"])
    with pytest.raises(ValueError, match="single class"):
        run_membership_attacks(overfit["target"], overfit["x"], y, overfit["is_member"], attacks=("loss",))


def test_mismatched_shapes(overfit):
    with pytest.raises(ValueError, match="has 160 examples but y has 159 labels"):
        run_membership_attacks(overfit["target"], overfit["x"], overfit["y"][:-1], overfit["is_member"], attacks=("loss",))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        run_membership_attacks(overfit["target"], overfit["x"].flatten(1), overfit["y"], overfit["is_member"], attacks=("loss",))
    with pytest.raises(ValueError, match="is_member has 10 entries but there are 160"):
        run_membership_attacks(overfit["target"], overfit["x"], overfit["y"], overfit["is_member"][:10], attacks=("loss",))


def test_scored_examples_must_match_reference_data(overfit, overfit_reference):
    with pytest.raises(ValueError, match="pass ids"):
        lira_scores(overfit["target"], overfit["x"][:10], overfit["y"][:10], overfit_reference)


def test_more_reference_models_than_data_allows(overfit):
    # 4 examples have only C(4, 2) = 6 distinct halves.
    with pytest.raises(ValueError, match="more than the data allows.*at most 6"):
        train_reference_models(overfit["train_reference"], 4, num_models=7)
    with pytest.raises(ValueError, match="positive integer"):
        train_reference_models(overfit["train_reference"], 100, num_models=0)


def test_reference_attacks_need_a_recipe_and_cache_needs_a_factory(overfit, tmp_path):
    with pytest.raises(ValueError, match="need train_reference"):
        run_membership_attacks(overfit["target"], overfit["x"], overfit["y"], overfit["is_member"], attacks=("lira_online",))
    with pytest.raises(ValueError, match="model_factory is required"):
        train_reference_models(overfit["train_reference"], 160, num_models=2, cache_dir=tmp_path, cache_key="k")
    with pytest.raises(ValueError, match="unknown attack"):
        run_membership_attacks(overfit["target"], overfit["x"], overfit["y"], overfit["is_member"], attacks=("lyra",))


def test_inversion_bad_inputs(overfit):
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        model_inversion(overfit["target"], 1, (1, 8, 8))
    with pytest.raises(ValueError, match="class indices in 0..9"):
        model_inversion(overfit["target"], 10, (1, 8, 8), classes=[10])
    with pytest.raises(ValueError, match="x_reference images have shape"):
        model_inversion(overfit["target"], 10, (1, 8, 8), iterations=1, x_reference=torch.zeros(3, 1, 4, 4), y_reference=torch.arange(3))
    with pytest.raises(ValueError, match="method must be"):
        model_inversion(overfit["target"], 10, (1, 8, 8), method="gan")
