"""The per-example unlearning test's maths on synthetic signals (attacks.unlearning_test)."""

from __future__ import annotations

import numpy as np
import pytest

from attacks.unlearning_test import holm, paired_permutation_test, per_example_statistic, rate_excess_test


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
