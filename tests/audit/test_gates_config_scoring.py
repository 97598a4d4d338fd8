"""Gates, config files and the verdict rule, on hand-made inputs."""

from __future__ import annotations

import pytest

from audit.config import load_config
from audit.errors import InputError
from audit.gates import apply_gates, gate_target, parse_gate, target_metrics, verdict
from audit.scoring import Evidence, decide
from reports.document import ModelAccuracies, Target


def _target(leak=0.2, after_auc=0.7, ref_auc=0.5, inv=None) -> Target:
    return Target.model_validate({
        "name": "t", "verdict": None, "gates": [], "passed": False,
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
    })


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


@pytest.mark.parametrize("expr", ["residual_leakage_upper>0.5", "residual_leakage_upper<0.5"])
def test_an_unbounded_figure_reads_as_an_unmeasured_one_and_fails_closed(expr):
    """`audit run` sees inf where results.json (and so `audit gate`) holds null: one wording, one outcome."""
    unbounded, unmeasured = _target(), _target()
    unbounded.residual_leakage_upper = float("inf")
    [run_sees] = apply_gates(unbounded, [parse_gate(expr)])
    [gate_reads] = apply_gates(unmeasured, [parse_gate(expr)])
    assert run_sees == gate_reads
    assert not run_sees.passed and run_sees.value is None and "inf" not in run_sees.message.split()
    assert run_sees.message == ("residual_leakage_upper has no finite value for this target (not measured, or "
                                f"unbounded); the gate 'fails if residual_leakage_upper {expr[22]} 0.5' fails closed")


def test_a_gate_message_reads_as_a_fail_if_rule():
    [held] = apply_gates(_target(leak=0.3), [parse_gate("residual_leakage>0.25")])
    [not_held] = apply_gates(_target(leak=0.2), [parse_gate("residual_leakage>0.25")])
    assert held.message == "residual_leakage = 0.3; fails if residual_leakage > 0.25: it does, so the gate fails"
    assert not_held.message == ("residual_leakage = 0.2; fails if residual_leakage > 0.25: it does not, so the gate "
                                "passes")
    assert not held.passed and not_held.passed


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


def _evidence(name, p_o, p_u, e_o=1.0, e_u=0.0, retrained=(0.0, 0.0, 0.0)):
    residual = max(e_u, 0) / e_o if e_o > 0 else None
    return Evidence(name=name, label=name, p_original=p_o, p_unlearned=p_u, effect_original=e_o,
                    effect_unlearned=e_u, effect_retrained=list(retrained), residual=residual,
                    residual_ci95=None if residual is None else (0.0, residual + 0.2),
                    detail={"p_over": {"unlearned": 0.5}})


def test_verdict_pass_fail_inconclusive():
    assert decide([_evidence("membership", 0.001, 0.6)]).verdict == "pass"
    assert decide([_evidence("membership", 0.001, 0.001, e_u=1.0)]).verdict == "fail"
    v = decide([_evidence("membership", 0.3, 0.4)])
    assert v.verdict == "inconclusive" and v.residual_leakage is None and "more reference models" in v.advice


def test_verdict_uses_holm_over_tests():
    # 0.03 rejects alone, but not as the smallest of three tests (0.03 * 3 > 0.05).
    tests = [_evidence("membership", 0.03, 0.5), _evidence("class_accuracy", 0.5, 0.5), _evidence("inversion", 0.6, 0.6)]
    v = decide(tests)
    assert v.verdict == "inconclusive" and v.power_p_value == pytest.approx(0.09)
    tests = [_evidence("membership", 0.5, 0.03), _evidence("class_accuracy", 0.001, 0.5)]
    assert decide(tests).verdict == "pass"  # 0.03 alone would reject; Holm over two tests: 0.06 > 0.05
    tests = [_evidence("membership", 0.001, 0.01), _evidence("class_accuracy", 0.001, 0.5)]
    assert decide(tests).verdict == "fail"


def test_alpha_is_the_level():
    tests = [_evidence("membership", 0.02, 0.5)]
    assert decide(tests, alpha=0.05).verdict == "pass"
    assert decide(tests, alpha=0.01).verdict == "inconclusive"


def test_overforgetting_is_signed_and_separate():
    # The unlearned model puts the forget set below held-out data: no residual leakage, positive overforgetting.
    v = decide([_evidence("membership", 0.001, 0.9, e_o=2.0, e_u=-1.0, retrained=(0.1, -0.1, 0.0))])
    assert v.verdict == "pass" and v.residual_leakage == 0.0 and v.overforgetting == pytest.approx(0.5)
    v = decide([_evidence("membership", 0.001, 0.6, e_o=2.0, e_u=0.4, retrained=(0.0, 0.0, 0.0))])
    assert v.overforgetting == pytest.approx(-0.2)


def _doc_target(verdict_word, **extra) -> Target:
    fields = {"name": "t", "verdict": verdict_word, "verdict_reason": "because", "error": None,
              "residual_leakage": 0.2, "residual_leakage_upper": 0.4, "p_value": 0.3, "power_p_value": 0.01,
              "gates": [], "passed": False, **extra}
    return Target.model_validate(fields)


def test_inconclusive_fails_closed_unless_policy_passes():
    t = _doc_target("inconclusive")
    gate_target(t, [])
    assert not t.passed and "fails closed" in t.gates[0].message
    gate_target(t, [], "pass")
    assert t.passed and t.gates[0].expr == "verdict"
    t = _doc_target("fail")
    gate_target(t, [], "pass")
    assert not t.passed


def test_verdict_and_new_metric_gates():
    t = _doc_target("pass")
    gate_target(t, [parse_gate("residual_leakage_upper>0.3"), parse_gate("verdict!=pass")])
    assert [g.passed for g in t.gates] == [True, False, True]
    with pytest.raises(InputError):
        parse_gate("verdict>1")


def test_empty_and_out_of_range_documents_fail_closed():
    assert verdict([]) == ("fail", 1)
    # A document read from a file is refused before this (reports.document); a target built in code without
    # validation is the last line of defence.
    t = Target.model_construct(**{**_doc_target("pass").__dict__, "residual_leakage": -5.0,
                                  "accuracy": ModelAccuracies()})
    gate_target(t, [])
    assert not t.passed and "outside its documented range" in t.gates[0].message
