"""The verdict's rule that a pass needs the removal shown, not only a p-value above alpha."""

from __future__ import annotations

import math

import pytest

from audit.scoring import DEFAULT_MAX_RESIDUAL, Evidence, decide


def _membership(p_o, p_u, residual, ci):
    return Evidence(name="membership", label="membership", p_original=p_o, p_unlearned=p_u, effect_original=1.0,
                    effect_unlearned=0.5, effect_retrained=[0.0, 0.0, 0.0], residual=residual, residual_ci95=ci,
                    detail={"p_over": {"unlearned": 0.5}, "null": "retrained"})


def test_undetected_but_not_shown_removed_is_inconclusive():
    # The case a new user met: 20 random ids, power p = 0.012, after unlearning p = 0.062,
    # residual 1.13 with an interval unbounded above. It passed before; now it cannot.
    v = decide([_membership(0.012, 0.062, 1.13, (0.0, math.inf))])
    assert v.verdict == "inconclusive"
    assert "removal itself is not shown" in v.reason and "unbounded" in v.reason
    assert "--retrains" in v.advice and v.max_residual == DEFAULT_MAX_RESIDUAL


def test_pass_needs_the_upper_bound_below_the_margin():
    assert decide([_membership(0.001, 0.6, 0.1, (0.0, 0.45))]).verdict == "pass"
    v = decide([_membership(0.001, 0.6, 0.1, (0.0, 0.55))])
    assert v.verdict == "inconclusive" and "0.55" in v.reason
    # The margin is the user's to set and travels with the verdict.
    v = decide([_membership(0.001, 0.6, 0.1, (0.0, 0.55))], max_residual=0.6)
    assert v.verdict == "pass" and v.max_residual == 0.6 and v.to_dict()["max_residual"] == 0.6
    # A residual at or above 1 never passes, whatever the margin allows.
    assert decide([_membership(0.001, 0.6, 1.0, (0.5, 1.5))], max_residual=1.0).verdict == "inconclusive"


@pytest.mark.parametrize("ci", [None, (0.0, math.inf)])
def test_no_measurable_residual_never_passes(ci):
    v = decide([_membership(0.001, 0.6, None if ci is None else 0.2, ci)])
    assert v.verdict == "inconclusive"


def test_a_failing_test_still_fails_first():
    assert decide([_membership(0.001, 0.001, 0.9, (0.5, 1.2))]).verdict == "fail"
