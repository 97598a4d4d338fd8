"""Gates, config files and the residual-leakage formula, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from audit.config import load_config
from audit.errors import InputError
from audit.gates import apply_gates, parse_gate, target_metrics
from audit.scoring import (
    auc_noise,
    distinguishability,
    inversion_component,
    membership_component,
    ratio,
)


def _target(leak=0.2, after_auc=0.7, ref_auc=0.5, inv=None):
    return {
        "residual_leakage": leak,
        "accuracy": {"unlearned": {"forget": 0.1, "retain": 0.99, "test": 0.9, "test_other_classes": 0.98},
                     "reference": {"forget": 0.0, "retain": 1.0, "test": 0.9, "test_other_classes": 0.99}},
        "timings": {"unlearn": 0.5},
        "membership": [
            {"attack": "lira", "unlearned": {"auc": after_auc, "tpr_at_1pct_fpr": 0.2, "advantage": 0.3,
                                             "epsilon_lower_bound": 1.0},
             "reference": {"auc": ref_auc}},
            {"attack": "loss", "unlearned": {"auc": 0.55, "tpr_at_1pct_fpr": 0.01, "advantage": 0.1,
                                             "epsilon_lower_bound": 0.1},
             "reference": {"auc": 0.52}},
        ],
        "inversion": inv,
    }


def test_gate_expressions_parse_and_compare():
    g = parse_gate(" residual_leakage >= 0.2 ")
    assert (g.metric, g.op, g.threshold) == ("residual_leakage", ">=", 0.2)
    [res] = apply_gates(_target(leak=0.2), [g])
    assert not res.passed and res.value == pytest.approx(0.2)
    [res] = apply_gates(_target(leak=0.19), [g])
    assert res.passed


def test_aggregate_and_per_attack_metrics():
    m = target_metrics(_target())
    assert m["mia_auc"] == pytest.approx(0.7)
    assert m["mia_auc_gap"] == pytest.approx(0.2)
    assert m["mia.loss.auc"] == pytest.approx(0.55)
    assert m["forget_accuracy_gap"] == pytest.approx(0.1)
    assert m["test_accuracy_gap"] == pytest.approx(0.01)
    assert m["inversion_accuracy"] is None


def test_gate_on_unmeasured_metric_fails_closed():
    [res] = apply_gates(_target(inv=None), [parse_gate("inversion_accuracy>0.5")])
    assert not res.passed and res.value is None and "not measured" in res.message


@pytest.mark.parametrize("expr", ["leakage>0.1", "residual_leakage>>0.1", "residual_leakage>", "mia.lira.bogus<1"])
def test_bad_gate_expressions_are_input_errors(expr):
    with pytest.raises(InputError):
        parse_gate(expr)


def test_config_from_audit_toml_and_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\nfail_on = ["residual_leakage>0.3"]\nseed = 4\n')
    settings, source = load_config(None, tmp_path)
    assert settings == {"fail_on": ["residual_leakage>0.3"], "seed": 4} and source.name == "pyproject.toml"
    (tmp_path / "audit.toml").write_text('fail_on = ["mia_auc>0.6"]\nmethod = "relabel"\n')
    settings, source = load_config(None, tmp_path)
    assert settings["method"] == "relabel" and source.name == "audit.toml"


@pytest.mark.parametrize("text", ["fail_on = [", 'unknown_key = 1', 'seed = "zero"'])
def test_bad_config_is_input_error(tmp_path, text):
    path = tmp_path / "audit.toml"
    path.write_text(text)
    with pytest.raises(InputError):
        load_config(path)


def test_distinguishability_extremes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    assert distinguishability(a, a) == pytest.approx(0.0)
    assert distinguishability(a, a + 100) == pytest.approx(1.0)
    assert distinguishability(a + 100, a) == pytest.approx(1.0)


def test_ratio_and_noise():
    assert ratio(0.9, 0.9, 0.0) == 1.0
    assert ratio(0.0, 0.9, 0.0) == 0.0
    assert ratio(0.45, 0.9, 0.0) == pytest.approx(0.5)
    assert ratio(0.05, 0.9, 0.1) == 0.0  # within noise is not leakage
    assert auc_noise(100, 100) > auc_noise(1000, 1000) > 0


def test_membership_component_against_reference():
    # The original leaks (AUC 0.9); an unlearned model as blind as the reference leaks nothing.
    leak, basis = membership_component({"original": 0.9, "unlearned": 0.51, "reference": 0.5}, 2000, 2000)
    assert basis == "reference" and leak == 0.0
    leak, _ = membership_component({"original": 0.9, "unlearned": 0.9, "reference": 0.5}, 2000, 2000)
    assert leak == pytest.approx(1.0)
    leak, _ = membership_component({"original": 0.9, "unlearned": 0.7, "reference": 0.5}, 2000, 2000)
    assert 0.3 < leak < 0.5
    # AUC below 1/2 is a signal too: forget examples that look *less* like members than unseen ones.
    leak, _ = membership_component({"original": 0.9, "unlearned": 0.1, "reference": 0.5}, 2000, 2000)
    assert leak == pytest.approx(1.0)


def test_membership_component_absolute():
    leak, basis = membership_component({"original": 0.9, "unlearned": 0.5}, 1000, 1000)
    assert basis == "absolute" and leak == 0.0
    leak, _ = membership_component({"original": 0.9, "unlearned": 0.9}, 1000, 1000)
    assert leak == pytest.approx(1.0)


def test_inversion_component():
    leak, basis = inversion_component({"original": 1.0, "unlearned": 0.0, "reference": 0.0}, 40, 10)
    assert (leak, basis) == (0.0, "reference")
    leak, _ = inversion_component({"original": 1.0, "unlearned": 1.0, "reference": 0.0}, 40, 10)
    assert leak == 1.0
    leak, basis = inversion_component({"original": 1.0, "unlearned": 1.0}, 40, 10)
    assert (leak, basis) == (1.0, "absolute")
