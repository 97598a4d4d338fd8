import json
import math

import numpy as np
import pytest

from attacks import membership_metrics
from attacks.metrics import clopper_pearson, epsilon_from_rates, tpr_at_fpr


def test_perfect_attack():
    n = 100
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = np.r_[np.linspace(2, 3, n), np.linspace(0, 1, n)]
    m = membership_metrics(scores, is_member, delta=0.0)
    assert m.auc == 1.0
    assert m.tpr_at_1pct_fpr == 1.0 and m.tpr_at_01pct_fpr == 1.0
    assert m.advantage == 1.0 and m.balanced_accuracy == 1.0
    assert m.precision == 1.0 and m.recall == 1.0
    assert 1.0 < m.threshold <= 2.0
    # All members above, all non-members below. The threshold is chosen on one half and the
    # bound computed on the other (n/2 of each): Clopper-Pearson 95% gives TPR >= 0.025 ** (2/n)
    # and FPR <= 1 - 0.025 ** (2/n), so eps >= log(TPR_lo / FPR_hi) at best; a threshold
    # chosen on the first half may miss a few members of the second, which lowers it a little.
    lo = 0.025 ** (2 / n)
    assert 0.9 * math.log(lo / (1 - lo)) < m.epsilon_lower_bound <= math.log(lo / (1 - lo)) + 1e-9
    assert math.isinf(m.epsilon)  # the empirical rates alone (FPR = 0) bound nothing
    assert m.epsilon_ci[0] == m.epsilon_lower_bound


def test_random_attack_is_chance():
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    m = membership_metrics(np.zeros(100), is_member)  # one score for all: no information
    assert m.auc == 0.5
    assert m.tpr_at_1pct_fpr == 0.0 and m.tpr_at_01pct_fpr == 0.0
    assert m.advantage == 0.0 and m.balanced_accuracy == 0.5
    assert m.epsilon_lower_bound == 0.0


def test_ties_hand_computed():
    # members 3, 2, 2; non-members 2, 1. Pairs (member > non-member, ties half):
    # 3>2, 3>1, 2=2, 2>1, 2=2, 2>1 -> (1 + 1 + .5 + 1 + .5 + 1) / 6 = 5/6.
    scores = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    is_member = np.array([1, 1, 1, 0, 0], bool)
    m = membership_metrics(scores, is_member, delta=0.0)
    assert m.auc == pytest.approx(5 / 6)
    # At FPR 0 only the score-3 member is caught: the tied 2s cannot be split.
    assert m.tpr_at_1pct_fpr == pytest.approx(1 / 3)
    # Best cut: score >= 2 gives TPR 1, FPR 1/2 (advantage 1/2); score >= 3 gives 1/3.
    assert m.threshold == 2.0
    assert m.advantage == pytest.approx(0.5)
    assert m.precision == pytest.approx(3 / 4) and m.recall == 1.0


def test_fixed_threshold_operating_point():
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    is_member = np.array([1, 1, 1, 0, 0, 0], bool)
    m = membership_metrics(scores, is_member, threshold=0.5)
    assert m.recall == pytest.approx(2 / 3) and m.precision == pytest.approx(2 / 3)
    assert m.advantage == pytest.approx(2 / 3 - 1 / 3)


def test_epsilon_and_clopper_pearson_formulas():
    assert epsilon_from_rates(np.array([0.5]), np.array([0.05]), 0.0)[0] == pytest.approx(math.log(10))
    # the complementary test wins here: TNR 0.5 against FNR 0.1 (vs TPR/FPR = 1.8)
    assert epsilon_from_rates(np.array([0.9]), np.array([0.5]), 0.0)[0] == pytest.approx(math.log(0.5 / 0.1))
    lo, hi = clopper_pearson(np.array([0, 10]), 10)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert hi[1] == 1.0 and lo[1] == pytest.approx(0.025 ** (1 / 10))
    assert tpr_at_fpr(np.array([0, 0, 0.5, 1]), np.array([0, 0.4, 0.9, 1]), 0.01) == 0.4


def test_roc_is_compact_keeps_low_fpr_and_is_json():
    rng = np.random.default_rng(0)
    is_member = rng.random(5000) < 0.5
    scores = rng.normal(size=5000) + 0.7 * is_member
    m = membership_metrics(scores, is_member)
    assert len(m.fpr) <= 200 and len(m.fpr) == len(m.tpr)
    assert np.all(np.diff(m.fpr) > 0) and np.all(np.diff(m.tpr) >= 0)
    assert (m.fpr <= 0.01).sum() >= 50  # log spacing keeps the low-FPR region
    assert 0.65 < m.auc < 0.75
    d = m.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["tpr_at_1pct_fpr"] == m.tpr_at_1pct_fpr and len(d["roc"]["fpr"]) == len(m.fpr)


@pytest.mark.parametrize(
    "scores, is_member, message",
    [
        (np.arange(4.0), np.ones(4, bool), "no non-members"),
        (np.arange(4.0), np.zeros(4, bool), "no members"),
        (np.arange(4.0), np.array([1, 0, 1], bool), "3 entries but there are 4"),
        (np.array([0.0, np.nan]), np.array([1, 0], bool), "NaN"),
        (np.zeros((2, 2)), np.array([1, 0], bool), "1-D"),
    ],
)
def test_bad_inputs(scores, is_member, message):
    with pytest.raises(ValueError, match=message):
        membership_metrics(scores, is_member)


def test_epsilon_lower_bound_is_not_chosen_on_the_scores_it_bounds():
    """On scores that carry no membership at all, the split bound stays 0 in most draws.

    Maximising the Clopper-Pearson bound over thresholds on the same scores would find a
    lucky threshold far more often (the optimism of item 6 of issue 9).
    """
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    positive = [membership_metrics(rng.normal(size=400), is_member).epsilon_lower_bound > 0 for _ in range(100)]
    assert sum(positive) <= 10
