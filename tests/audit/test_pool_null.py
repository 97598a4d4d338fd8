"""Deciding individual requests without per-request retraining (issue 22): the shared pool of
reference models, its nested part-left-out design, the cached pool logits, the AUC bound and the
"not memorised" outcome with its gate policy."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from attacks.reference import leave_part_out_inclusion, pool_parts
from attacks.significance import auc_interval, paired_permutation_test
from audit.scoring import Evidence, decide
from tests.audit.test_audit_run_cli import FAST
from tests.cli_runner import run_audit


def test_pool_parts_give_models_of_the_targets_size():
    assert pool_parts(1797, 1348) == 4  # digits: models of 1348, like the target
    assert pool_parts(70_000, 60_000) == 7  # Fashion-MNIST: models of 60,000
    assert pool_parts(1000, 999) == 8  # a tiny held-out split: capped, models of 7/8 of the pool
    with pytest.raises(ValueError):
        pool_parts(100, 100)


def test_the_pool_is_nested_and_leaves_every_example_out_of_one_model_per_block():
    small = leave_part_out_inclusion(700, 7, seed=3, parts=7)
    large = leave_part_out_inclusion(700, 16, seed=3, parts=7)
    # More models add blocks: the first models (and so their cache entries) stay the same.
    assert np.array_equal(large[:7], small)
    # Within a whole block, each example is left out of exactly one model, each model leaves 1/7 out.
    assert np.array_equal((~large[:7]).sum(0), np.ones(700))
    assert np.array_equal((~large[7:14]).sum(0), np.ones(700))
    assert set((~large[:14]).sum(1)) == {100}
    # Blocks are drawn apart: the second block's cut is not the first's.
    assert not np.array_equal(large[:7], large[7:14])
    # The partial last block leaves some examples out of a third model, none out of zero.
    assert set((~large).sum(0)) == {2, 3}


def test_auc_interval_is_mann_whitney_with_a_delong_interval():
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.4, 1, 80), rng.normal(0, 1, 3000)
    non_members[:20] = members[:20]  # ties count a half
    auc, (lo, hi), upper = auc_interval(members, non_members)
    labels = np.r_[np.ones(80), np.zeros(3000)]
    assert auc == pytest.approx(roc_auc_score(labels, np.r_[members, non_members]))
    assert lo < auc < upper < hi  # the one-sided 95% bound lies inside the two-sided 95% interval
    # Coverage under no signal: the one-sided bound sits at or above 0.5 in about 95% of draws.
    covered = [auc_interval(rng.normal(0, 1, 60), rng.normal(0, 1, 2000))[2] >= 0.5 for _ in range(400)]
    assert 0.91 <= np.mean(covered) <= 0.99


def _membership(p_o: float, p_u: float, auc: float, upper: float) -> Evidence:
    return Evidence(name="membership", label="membership", p_original=p_o, p_unlearned=p_u, effect_original=0.01,
                    effect_unlearned=0.01, effect_retrained=[0.0], residual=None, residual_ci95=None,
                    detail={"p_over": {"unlearned": 0.5}, "null": "pool", "n_forget": 60, "auc": {"original": auc},
                            "auc_ci95": {"original": [2 * auc - upper, upper + 0.01]},
                            "auc_upper": {"original": upper}})


def test_not_memorised_is_decided_by_the_bound_not_by_the_p_value():
    v = decide([_membership(0.4, 0.4, 0.51, 0.55)])
    assert v.verdict == "not_memorised" and "0.55" in v.reason and v.memorised_auc_upper == 0.55
    # The same p-values with a wide bound (a small request) stay undecided.
    v = decide([_membership(0.4, 0.4, 0.51, 0.68)])
    assert v.verdict == "inconclusive" and "0.68" in v.reason
    # The margin is the user's and travels with the verdict.
    v = decide([_membership(0.4, 0.4, 0.51, 0.68)], max_memorised_auc=0.7)
    assert v.verdict == "not_memorised" and v.max_memorised_auc == 0.7
    # A detected forget set is never "not memorised", whatever its AUC.
    assert decide([_membership(0.001, 0.001, 0.52, 0.55)]).verdict == "fail"
    # Nor is a tiny request (DeLong's interval is not to be trusted on 5 examples), nor a loss-only test.
    tiny = _membership(0.4, 0.4, 0.51, 0.55)
    tiny.detail["n_forget"] = 5
    assert decide([tiny]).verdict == "inconclusive"
    loss_only = _membership(0.4, 0.4, 0.51, 0.55)
    loss_only.detail["null"] = "permutation"
    assert decide([loss_only]).verdict == "inconclusive"


def test_a_pass_is_judged_by_the_one_sided_bound():
    ev = Evidence(name="membership", label="m", p_original=0.001, p_unlearned=0.6, effect_original=1.0,
                  effect_unlearned=0.2, effect_retrained=[0.0], residual=0.2, residual_ci95=(0.0, 0.55),
                  residual_upper=0.45, detail={"p_over": {"unlearned": 0.5}})
    v = decide([ev])
    assert v.verdict == "pass" and v.residual_leakage_upper == 0.45 and "0.45" in v.reason
    ev.residual_upper = 0.51
    assert decide([ev]).verdict == "inconclusive"


def test_a_weak_original_signal_passes_on_the_unlearned_models_own_bound_and_a_no_op_never_does():
    def request(p_o, p_u, unlearned_upper, residual_upper=math.inf):
        ev = _membership(p_o, p_u, 0.55, 0.58)
        ev.residual, ev.residual_ci95, ev.residual_upper = 0.3, (0.0, residual_upper), residual_upper
        ev.detail["auc"]["unlearned"] = unlearned_upper - 0.04
        ev.detail["auc_ci95"]["unlearned"] = [unlearned_upper - 0.09, unlearned_upper + 0.01]
        ev.detail["auc_upper"]["unlearned"] = unlearned_upper
        return ev

    # The original detected (p 0.01) but weakly: the residual is unbounded; the unlearned model's bound decides.
    v = decide([request(0.01, 0.5, 0.56)])
    assert v.verdict == "pass" and "at most 0.56" in v.reason and "unbounded" in v.reason
    assert decide([request(0.01, 0.5, 0.63)]).verdict == "inconclusive"  # its bound above the margin
    assert decide([request(0.01, 0.5, 0.63)], max_memorised_auc=0.65).verdict == "pass"  # the user's margin
    # A no-op: the unlearned model is the original, detected: it fails, whatever its AUC bound.
    assert decide([request(0.01, 0.01, 0.56)]).verdict == "fail"
    # A class request (more than the membership test) keeps the residual rule.
    cls = [request(0.01, 0.5, 0.56), Evidence(name="class_accuracy", label="c", p_original=0.5, p_unlearned=0.5,
                                              effect_original=0.1, effect_unlearned=0.1, effect_retrained=[0.1],
                                              residual=None, residual_ci95=None, detail={})]
    assert decide(cls).verdict == "inconclusive"


def test_an_undetected_original_with_a_wide_bound_passes_on_the_unlearned_models_bound_and_a_no_op_never_does():
    def request(unlearned_auc, unlearned_upper):
        ev = _membership(0.3, 0.4, 0.55, 0.63)  # not detected; the original's bound above the 0.6 margin
        ev.detail["auc"]["unlearned"] = unlearned_auc
        ev.detail["auc_ci95"]["unlearned"] = [2 * unlearned_auc - unlearned_upper, unlearned_upper + 0.01]
        ev.detail["auc_upper"]["unlearned"] = unlearned_upper
        return ev

    v = decide([request(0.5, 0.56)])
    assert v.verdict == "pass" and "at most 0.56" in v.reason and "0.63" in v.reason
    assert decide([request(0.57, 0.61)]).verdict == "inconclusive"  # the unlearned model's bound above the margin
    # A no-op: the unlearned model is the original, with its bound: undecided, never a pass.
    assert decide([request(0.55, 0.63)]).verdict == "inconclusive"
    # An original within the margin is "not memorised" first: nothing was there to remove.
    within = request(0.5, 0.56)
    within.detail["auc_upper"]["original"] = 0.58
    assert decide([within]).verdict == "not_memorised"


def test_the_pool_null_centres_each_model_on_the_models_that_left_each_example_out():
    # A model that never saw the forget set, with a per-example offset shared by every model that never
    # saw an example (what the pool cancels), is not told apart; the same model trained on it is.
    rng = np.random.default_rng(1)
    n_forget, n_held = 60, 600
    shared = rng.normal(0, 1.0, n_forget + n_held)
    shared[:n_forget] += 0.5  # one draw of the split that favours the forget set, for every unseen-model
    is_forget = np.r_[np.ones(n_forget, bool), np.zeros(n_held, bool)]
    pool = shared + rng.normal(0, 0.3, shared.size)
    unseen = shared + rng.normal(0, 0.3, shared.size)
    member = unseen + 0.4 * is_forget
    test = paired_permutation_test({"original": member, "unlearned": unseen, "pool": pool}, is_forget,
                                   baseline="original", null_roles=["pool"], centre_on_null=True, seed=0)
    assert test.p_member["original"] < 0.01
    assert test.p_member["unlearned"] > 0.05
    # Without the pool the shared offset alone "detects" the model that never saw the data.
    alone = paired_permutation_test({"unlearned": unseen}, is_forget, seed=0)
    assert alone.p_member["unlearned"] < 0.01


def test_a_request_is_audited_against_the_pool_without_retraining(digits_model, tmp_path):
    out = tmp_path / "out"
    args = ["run", digits_model, "--forget", "random=0.1@2", "--method", "none", *FAST]
    proc = run_audit([*args, "--out", out, "--attacks", "mia"], in_process=True)
    doc = json.loads((out / "results.json").read_text())
    [target] = doc["targets"]
    membership = next(t for t in target["tests"] if t["name"] == "membership")
    assert doc["config"]["reference"] == "auto" and membership["detail"]["null"] == "pool"
    assert target["retrains"] == [] and "reference" not in target["timings"]
    # The no-op's two models are the same, so it can never pass: fail when its original was detected,
    # else not memorised (with its bound) or inconclusive.
    assert target["verdict"] in ("fail", "not_memorised", "inconclusive")
    assert target["p_value"] == target["power_p_value"]
    assert target["memorised_auc"] is not None and 0.0 <= target["memorised_auc_upper"] <= 1.0
    expected = {"fail": 1, "not_memorised": 0, "inconclusive": 1}[target["verdict"]]
    assert proc.returncode == expected, proc.stderr
    # --reference retrain keeps the exact per-request retrains.
    exact = run_audit([*args, "--reference", "retrain", "--retrains", "1", "--out", tmp_path / "exact",
                       "--attacks", "mia"], in_process=True)
    assert exact.returncode in (0, 1), exact.stderr
    [target] = json.loads((tmp_path / "exact" / "results.json").read_text())["targets"]
    assert len(target["retrains"]) == 1
    assert next(t for t in target["tests"] if t["name"] == "membership")["detail"]["null"] == "retrained"


def test_a_class_request_cannot_use_the_pool(digits_model, tmp_path):
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--reference", "pool", "--out", tmp_path / "o",
                      *FAST], in_process=True)
    assert proc.returncode == 2 and "--reference pool cannot audit class=3" in proc.stderr


def test_not_memorised_passes_the_gate_by_the_recorded_policy(digits_model, tmp_path):
    # A looser AUC margin makes a small, undetected request "not memorised"; its policy decides the gate.
    args = ["run", digits_model, "--forget", "random=40@9", "--method", "none", "--attacks", "mia",
            "--max-memorised-auc", "0.95", *FAST]
    proc = run_audit([*args, "--out", tmp_path / "a"], in_process=True)
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    [target] = doc["targets"]
    if target["verdict"] == "fail":
        pytest.skip("this draw's original memorised the request detectably")
    assert target["verdict"] == "not_memorised", target["verdict_reason"]
    assert proc.returncode == 0 and doc["config"]["not_memorised"] == "pass"
    assert doc["config"]["max_memorised_auc"] == 0.95
    strict = run_audit([*args, "--not-memorised", "fail", "--out", tmp_path / "b"], in_process=True)
    assert strict.returncode == 1 and "not memorised" in strict.stderr
    # audit gate recomputes the outcome from the evidence, and keeps the recorded policy.
    assert run_audit(["gate", tmp_path / "a" / "results.json"], in_process=True).returncode == 0
    assert run_audit(["gate", tmp_path / "b" / "results.json"], in_process=True).returncode == 1


def test_tampered_pool_logits_are_recomputed(tmp_path):
    from safetensors.torch import load_file, save_file

    from attacks.reference import ReferenceModels
    from audit.pool_signals import logits_digest, pool_logits

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)) for _ in range(2)]
    ref = ReferenceModels(models, np.ones((2, 50), bool), [0, 1])
    x = torch.rand(50, 1, 2, 2)
    first = pool_logits(ref, x, tmp_path, "key")
    [path] = list((tmp_path / "pool-logits").iterdir())
    assert torch.equal(pool_logits(ref, x, tmp_path, "key"), first)  # a cache hit, the same numbers
    edited = load_file(str(path))["logits"].clone()
    edited[:, :, 0] += 5.0  # every row edited, with a digest that matches the edit
    save_file({"logits": edited}, str(path), metadata={"sha256": logits_digest(edited), "cache_key": "key"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = pool_logits(ref, x, tmp_path, "key")
    assert torch.allclose(again, first) and any("differ from the model's own output" in str(w.message)
                                                 for w in caught)
    assert math.isfinite(float(again.sum()))


def test_the_originals_logits_are_cached_once_and_serve_its_predictions(digits_model, digits, tmp_path):
    """Every request of a model reads the original's logits over the pool from the cache: the same
    labels as a forward pass, and a no-op's unchanged copy served from them too."""
    import copy

    from audit.attacking import AttackContext
    from audit.forget_accuracy import SplitPredictions
    from audit.modelfile import load_model

    mf = load_model(digits_model)
    first = AttackContext(mf, digits, 0, 4, tmp_path, ["loss"])
    logits = first.original_pool_logits
    assert logits.shape == (len(digits.y_train) + len(digits.y_test), digits.num_classes)
    assert len(list((tmp_path / "pool-logits").iterdir())) == 1
    later = AttackContext(mf, digits, 0, 4, tmp_path, ["loss"])
    assert torch.equal(later.original_pool_logits, logits)  # read back, not recomputed differently
    fresh = SplitPredictions.of(mf.model, digits)
    cached = later.predictions(copy.deepcopy(mf.model))  # a no-op's copy: the same weights, the same digest
    assert torch.equal(cached.train, fresh.train) and torch.equal(cached.test, fresh.test)
    ids = np.arange(5, 40)
    direct = later.logits_on(mf.model, ids, later.pool[0][ids])
    assert torch.allclose(direct, torch.stack([mf.model(later.pool[0][i:i + 1])[0] for i in ids]).detach(), atol=1e-4)


def test_the_advice_projects_the_bound_that_more_models_decide_soonest():
    from types import SimpleNamespace

    from attacks.significance import per_example_statistic
    from audit.advice import pool_advice
    from audit.evidence import pool_out_statistic
    from audit.scoring import Verdict

    rng = np.random.default_rng(3)
    m, n = 8, 600
    in_mask = rng.random((m, n)) < 0.5
    example = rng.normal(0, 1, n)
    # Each pool model: the example's level, its IN shift, and much noise (so more models narrow the bounds).
    phi = example + 0.3 * in_mask + rng.normal(0, 2.0, (m, n))
    pool = SimpleNamespace(in_mask=in_mask, from_cache=[True] * m, seconds=0.0)
    ctx = SimpleNamespace(reference_confidence=phi, reference_models=lambda: pool,
                          model_file=SimpleNamespace(metrics={"train_seconds": 5.0}))
    stats = {role: per_example_statistic(example + rng.normal(0, 0.1, n), phi, in_mask)
             for role in ("original", "unlearned")}
    stats["pool"], _ = pool_out_statistic(phi, in_mask)
    is_forget = np.arange(n) < 60
    test = paired_permutation_test(stats, is_forget, baseline="original", null_roles=["pool"], centre_on_null=True,
                                   n_permutations=200, n_bootstrap=50)

    def advice(original, unlearned):
        test.auc["unlearned"], test.auc_upper["unlearned"] = unlearned
        verdict = Verdict("inconclusive", "", 0.05, 0.4, 0.4, None, None, None, None, memorised_auc=original[0],
                          memorised_auc_upper=original[1])
        return pool_advice(ctx, test, np.arange(n), stats, verdict, m)

    # The unlearned model's bound just over the margin, the original's far above it: the unlearned one decides.
    text = advice((0.62, 0.70), (0.57, 0.605))
    assert "unlearned model's membership AUC" in text and "within the 0.6" in text and "now 0.60" in text
    # The other way round: the original's bound is the one to narrow.
    text = advice((0.57, 0.605), (0.62, 0.70))
    assert "original's membership AUC" in text and "within the 0.6" in text
    # Neither within reach: the first (the original's) is named, with what would decide it.
    text = advice((0.66, 0.75), (0.67, 0.76))
    assert "original's membership AUC" in text and "still outside" in text and "larger request" in text
