import json

import numpy as np
import pytest
import torch

from attacks import (
    ReferenceCache,
    lira_scores,
    loss_threshold_scores,
    membership_metrics,
    rmia_scores,
    run_membership_attacks,
    shadow_model_scores,
    train_reference_models,
)
from attacks.label_only import label_only_scores
from attacks.lira import lira_statistics
from attacks.rmia import rmia_statistics


@pytest.mark.parametrize("online", [True, False])
def test_lira_separates_members_on_overfit_model(overfit, overfit_reference, online):
    scores = lira_scores(overfit["target"], overfit["x"], overfit["y"], overfit_reference, online=online)
    m = membership_metrics(scores, overfit["is_member"])
    loss = membership_metrics(loss_threshold_scores(overfit["target"], overfit["x"], overfit["y"]), overfit["is_member"])
    assert scores.shape == (len(overfit["y"]),)
    assert m.auc > 0.8, m.auc
    assert m.tpr_at_1pct_fpr > 0.1, m.tpr_at_1pct_fpr
    assert m.auc > loss.auc  # the per-example calibration is what LiRA adds over LOSS


@pytest.mark.parametrize("online", [True, False])
def test_rmia_separates_members_on_overfit_model(overfit, overfit_reference, online):
    scores = rmia_scores(overfit["target"], overfit["x"], overfit["y"], overfit_reference, online=online)
    m = membership_metrics(scores, overfit["is_member"])
    assert np.all((scores >= 0) & (scores <= 1))
    assert m.auc > 0.8, m.auc
    assert m.tpr_at_1pct_fpr > 0.1, m.tpr_at_1pct_fpr


def test_rmia_with_two_reference_models_still_separates(overfit, overfit_reference):
    # RMIA's selling point (Zarifzadeh et al. 2024): strong with very few reference models.
    few = type(overfit_reference)(overfit_reference.models[:2], overfit_reference.in_mask[:2], overfit_reference.seeds[:2])
    m = membership_metrics(rmia_scores(overfit["target"], overfit["x"], overfit["y"], few), overfit["is_member"])
    loss = membership_metrics(loss_threshold_scores(overfit["target"], overfit["x"], overfit["y"]), overfit["is_member"])
    assert m.auc > 0.75 and m.auc > loss.auc, (m.auc, loss.auc)


def test_scoring_a_subset_and_outside_examples(overfit, overfit_reference, digits):
    x, y = overfit["x"], overfit["y"]
    ids = np.array([0, 5, 7])
    # Per-example variances make a score independent of which other examples are scored
    # (the fixed, pooled variance is estimated over the scored examples).
    full = lira_scores(overfit["target"], x, y, overfit_reference, fixed_variance=False)
    sub_x, sub_y = x[torch.as_tensor(ids)], y[torch.as_tensor(ids)]
    part = lira_scores(overfit["target"], sub_x, sub_y, overfit_reference, ids=ids, fixed_variance=False)
    np.testing.assert_allclose(part, full[ids], rtol=1e-4)
    # Examples outside the auditor's data (id -1) are OUT for every reference model.
    x_mix, y_mix = torch.cat([sub_x, digits[0][-5:]]), torch.cat([sub_y, digits[1][-5:]])
    ids_mix = np.r_[ids, np.full(5, -1)]
    for online in (True, False):
        assert np.isfinite(lira_scores(overfit["target"], x_mix, y_mix, overfit_reference, ids=ids_mix, online=online)).all()
        assert np.isfinite(rmia_scores(overfit["target"], x_mix, y_mix, overfit_reference, ids=ids_mix, online=online)).all()
    with pytest.raises(ValueError, match="no scored example has both IN and OUT"):
        lira_scores(overfit["target"], x_mix[3:], y_mix[3:], overfit_reference, ids=ids_mix[3:])


def test_lira_statistics_hand_made():
    # Two examples, four models. Example 0: IN models say 5, OUT say 0; example 1 the same.
    ref = np.array([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, 5.0]])
    ref = ref + np.array([[0.1, -0.1], [-0.1, 0.1], [0.1, -0.1], [-0.1, 0.1]])
    in_mask = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    s = lira_statistics(np.array([5.0, 0.0]), ref, in_mask)  # example 0 looks IN, 1 looks OUT
    assert s[0] > 0 > s[1]


def test_rmia_statistics_counts_population():
    # LR(x) = p/marginal: x0 = 4, x1 = 1; population LRs 0.5, 2, 3 -> fractions 3/3 and 1/3.
    s = rmia_statistics(np.array([0.8, 0.2]), np.array([0.2, 0.2]), np.array([0.1, 0.4, 0.6]), np.array([0.2, 0.2, 0.2]))
    np.testing.assert_allclose(s, [1.0, 1 / 3], atol=1 / 6)
    assert s[0] > s[1]


def test_reference_cache_reuses_models(overfit, tiny_mlp_factory, tmp_path):
    calls = []

    def counting(ids, seed):
        calls.append(seed)
        return overfit["train_reference"](ids, seed)

    factory = tiny_mlp_factory

    kw = dict(num_models=2, seed=3, cache_dir=tmp_path, model_factory=factory, cache_key="tiny-mlp/400-steps/pool-160")
    first = train_reference_models(counting, len(overfit["y"]), **kw)
    second = train_reference_models(counting, len(overfit["y"]), **kw)
    assert calls == [3, 4] and first.from_cache == [False, False] and second.from_cache == [True, True]
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    with torch.no_grad():
        for a, b in zip(first.models, second.models):
            torch.testing.assert_close(a(overfit["x"]), b(overfit["x"]))
    # A different recipe key must not hit the cache; a corrupt file is retrained.
    train_reference_models(counting, len(overfit["y"]), **{**kw, "cache_key": "other"})
    assert len(calls) == 4
    ReferenceCache(tmp_path, factory, kw["cache_key"]).path(np.flatnonzero(first.in_mask[0]), 3).write_bytes(b"garbage")
    third = train_reference_models(counting, len(overfit["y"]), **kw)
    assert third.from_cache.count(False) == 1


def test_shadow_attack_through_art(overfit):
    scores = shadow_model_scores(
        overfit["target"], overfit["x"], overfit["y"], overfit["train_reference"], num_shadow_models=2, attack_model_type="rf"
    )
    assert scores.shape == (len(overfit["y"]),) and np.all((scores >= 0) & (scores <= 1))
    assert membership_metrics(scores, overfit["is_member"]).auc > 0.6


def test_label_only_through_art_runs_on_float32(overfit):
    ids = torch.arange(12)
    d = label_only_scores(overfit["target"], overfit["x"][ids].double(), overfit["y"][ids], max_iter=2, max_eval=50, init_eval=10, init_size=10)
    assert d.shape == (12,) and np.all(d >= 0) and np.any(d > 0)


@pytest.mark.slow
def test_run_membership_attacks_end_to_end(overfit, tiny_mlp_factory, tmp_path):
    factory = tiny_mlp_factory

    audit = run_membership_attacks(
        overfit["target"], overfit["x"], overfit["y"], overfit["is_member"], overfit["train_reference"],
        attacks=("loss", "lira_online", "lira_offline", "rmia", "shadow", "label_only"),
        num_reference_models=4, cache_dir=tmp_path, model_factory=factory, cache_key="k", label_only_max_examples=20,
    )
    d = audit.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d["attacks"]) == {"loss", "lira_online", "lira_offline", "rmia", "shadow", "label_only"}
    assert audit.strongest().name in {"lira_online", "lira_offline", "rmia"}
    assert d["attacks"]["label_only"]["num_scored"] == 20


def test_run_membership_attacks_loss_only_needs_no_recipe(overfit):
    audit = run_membership_attacks(overfit["target"], overfit["x"], overfit["y"], overfit["is_member"], attacks=("loss",))
    assert audit.results["loss"].metrics.auc > 0.6 and audit.reference is None
