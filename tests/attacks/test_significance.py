"""The per-example unlearning test's maths on synthetic signals (attacks.significance)."""

from __future__ import annotations

import numpy as np
import pytest

from attacks.significance import holm, paired_permutation_test, per_example_statistic, rate_excess_test


def _references(n: int, m: int = 16, gap: float = 2.0, seed: int = 0):
    """Reference confidences: example difficulty + a per-example IN shift + noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(3.0, 2.0, n)
    shift = np.clip(rng.normal(gap, 0.5, n), 0, None)
    in_mask = rng.random((m, n)) < 0.75
    phi = difficulty + shift * in_mask + rng.normal(0, 0.5, (m, n))
    return difficulty, shift, phi, in_mask, rng


def test_members_score_higher_than_non_members():
    difficulty, shift, phi, in_mask, rng = _references(400)
    member = np.arange(400) < 200
    target = difficulty + shift * member + rng.normal(0, 0.5, 400)
    s = per_example_statistic(target, phi, in_mask)
    gap = s[member].mean() - s[~member].mean()
    assert gap > 1.0
    # Example difficulty is taken out: a model that trained on nothing scores members and non-members alike.
    s0 = per_example_statistic(difficulty + rng.normal(0, 0.5, 400), phi, in_mask)
    assert abs(s0[member].mean() - s0[~member].mean()) < 0.1 * gap


def test_permutation_test_detects_members_and_keeps_its_level():
    difficulty, shift, phi, in_mask, rng = _references(300)
    forget = np.arange(300) < 40
    rejections = 0
    trials = 60
    for t in range(trials):
        noise = np.random.default_rng(100 + t).normal(0, 0.5, 300)
        member_model = difficulty + shift * forget + noise
        null_model = difficulty + noise + 0.7  # a whole-model offset must not read as membership
        stats = {"original": per_example_statistic(member_model, phi, in_mask),
                 "unlearned": per_example_statistic(null_model, phi, in_mask)}
        res = paired_permutation_test(stats, forget, baseline="original", n_permutations=500, n_bootstrap=200, seed=t)
        assert res.p_member["original"] < 0.01
        rejections += res.p_member["unlearned"] <= 0.05
    assert rejections / trials <= 0.15  # nominal 0.05; 60 trials leave room for chance


def test_effect_ratio_and_interval():
    rng = np.random.default_rng(1)
    forget = np.arange(200) < 60
    base = rng.normal(0, 1, 200)
    stats = {"original": base + 2.0 * forget, "unlearned": base + 1.0 * forget, "same": base + 2.0 * forget}
    res = paired_permutation_test(stats, forget, baseline="original", n_permutations=300, n_bootstrap=300)
    assert res.effect["unlearned"] / res.effect["original"] == pytest.approx(0.5, abs=0.1)
    lo, hi = res.ratio_ci["unlearned"]
    assert lo < 0.5 < hi and hi < 1.0
    assert res.p_member["same"] == res.p_member["original"]  # same statistic, same permutations: paired
    over = {"original": base + 2.0 * forget, "unlearned": base - 2.0 * forget}
    res = paired_permutation_test(over, forget, n_permutations=300, n_bootstrap=50)
    assert res.p_over["unlearned"] < 0.01 and res.p_member["unlearned"] > 0.9


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        paired_permutation_test({"a": np.zeros(5)}, np.zeros(5, bool))
    with pytest.raises(ValueError):
        paired_permutation_test({"a": np.array([0, 1, np.nan])}, np.array([True, False, False]))
    with pytest.raises(ValueError):
        per_example_statistic(np.zeros(3), np.zeros((1, 3)), np.zeros((1, 3), bool))


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([]) == []
    assert max(holm([0.9, 0.8, 0.7])) <= 1.0


def test_rate_excess_test_floors_at_one_example_above_the_retrains():
    assert rate_excess_test(0, 137, [0, 0, 0]).p_value == 1.0
    assert rate_excess_test(1, 137, [0, 0, 0]).p_value > 0.5  # one lucky example is no evidence
    assert rate_excess_test(12, 137, [0, 0, 0]).p_value < 1e-6  # 90% kept must fail
    assert rate_excess_test(12, 137, [0, 0, 0]).p_value < rate_excess_test(12, 137, [5, 2, 0]).p_value


def test_centring_on_retrained_models_cancels_what_the_split_shares():
    # One fixed split: every model that never trained on an example carries the same per-example
    # part, and the held-out examples' mean of it is one draw, here 0.3 below the training
    # examples'. The per-model permutation null treats that draw as redrawn and fails a perfect
    # unlearning far more often than alpha; tested against the retrained models it keeps its
    # level, and still detects a model that trained on the forget set.
    rng = np.random.default_rng(7)
    n_train, n_held, k = 300, 150, 30
    shared = rng.normal(0, 1, n_train + n_held)
    shared[:n_train] -= shared[:n_train].mean()
    shared[n_train:] -= shared[n_train:].mean() + 0.3
    trials, own, centred, detected = 80, 0, 0, 0
    nulls = [f"retrain_{j}" for j in range(3)]
    for t in range(trials):
        r = np.random.default_rng(1000 + t)
        ids = np.r_[r.choice(n_train, k, replace=False), np.arange(n_train, n_train + n_held)]
        is_forget = np.arange(ids.size) < k
        model = lambda: shared[ids] + r.normal(0, 0.5, ids.size)  # noqa: E731 - never saw the forget set
        stats = {"original": model() + 0.6 * is_forget, "unlearned": model(), **{role: model() for role in nulls}}
        plain = paired_permutation_test(stats, is_forget, baseline="original", null_roles=nulls,
                                        n_permutations=400, n_bootstrap=50, seed=t)
        fair = paired_permutation_test(stats, is_forget, baseline="original", null_roles=nulls, centre_on_null=True,
                                       n_permutations=400, n_bootstrap=50, seed=t)
        assert plain.null == "permutation" and fair.null == "retrained"
        assert fair.effect == plain.effect  # the effects stay the models' own; only the null changes
        own += plain.p_member["unlearned"] <= 0.05
        centred += fair.p_member["unlearned"] <= 0.05
        detected += fair.p_member["original"] <= 0.05
    assert own / trials >= 0.2       # measured 24 of 80
    assert centred / trials <= 0.125  # nominal 0.05, measured 6 of 80; 80 trials leave room for chance
    assert detected / trials >= 0.8  # measured 80 of 80


def test_centring_needs_retrained_models():
    stats = {"original": np.r_[np.ones(5), np.zeros(5)], "unlearned": np.zeros(10)}
    with pytest.raises(ValueError, match="retrained"):
        paired_permutation_test(stats, np.arange(10) < 5, centre_on_null=True)
