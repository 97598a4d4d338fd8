"""Realistic results documents (schema version 2, typed in reports/document.py) with real PNG images on disk.

Three targets, each with a verdict of its own resting on a power check (audit/scoring.py):

- ``class=3``: amnesiac; the attacks saw the class before unlearning and not after:
  verdict ``pass``, passes every gate; three tests (membership, class accuracy, model
  inversion, with the inversion images);
- ``samples=forget-ids.txt``: relabel; the unlearned model still shows the examples:
  verdict ``fail``, fails its verdict gate and the ``--fail-on`` gate;
- ``random=0.01@0``: 13 examples the attacks could not see even in the original model:
  verdict ``inconclusive``, which fails its verdict gate by the policy
  (``--inconclusive fail``); its ``--fail-on`` gate passes, so the verdict alone fails it.

The passing target comes first in the document and the two that do not pass after it,
so that "failures first" is tested, not given. The numbers are computed the way the
harness computes them (Holm over the tests, binomial rate tests against the retrained
models, the verdict's reason and gate messages in the harness's words); tests in
test_report_schema.py check them against audit.gates.gate_target and audit.scoring.decide.

Builders live here rather than in conftest.py so that tests can import them
(``from tests.reports.report_documents import build_document``) without clashing with the other
test folders' conftest modules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import beta, binom, norm

GATE = "mia_auc_gap>0.1"
ALPHA = 0.05
RETRAIN_SEEDS = [1_000_003, 1_000_004, 1_000_005]
N_HELD_OUT = {"class=3": 45, "samples=forget-ids.txt": 449, "random=0.01@0": 449}
MEMBERSHIP_LABEL = "per-example membership test (U-LiRA, Hayes et al. 2025)"
REMOVAL_ADVICE = ("To show the removal: more retrained models (--retrains) and reference models "
                  "(--reference-models) narrow the residual's interval, and so does a larger forget set; or accept a "
                  "weaker proof with --max-residual (recorded in results.json).")
ADVICE = ("To give the attacks power: forget more examples at once (the per-example test's power grows with the "
          "forget set: about 0.4 at 10 examples and 0.9 at 40 on a small, leaky model), train more reference "
          "models (--reference-models), or audit a model that memorises more; a well-generalising model may "
          "simply not leak these data.")
MIA = {"lira_online": ("LiRA online (Carlini et al. 2022)",
                       "black-box logits; reference models trained with and without each example"),
       "loss": ("LOSS threshold (Yeom et al. 2018)", "the per-example loss; no reference models")}


def roc(separation: float, n: int = 120) -> dict:
    """A binormal ROC curve, log-spaced in FPR as the harness writes it (<= 200 points)."""
    fpr = np.r_[0.0, np.logspace(-3, 0, n - 1)]
    tpr = norm.cdf(norm.ppf(np.clip(fpr, 1e-12, 1)) + separation)
    tpr[0] = 0.0
    return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}


def metrics(separation: float, n_members: int, n_non_members: int) -> dict:
    auc = float(norm.cdf(separation / math.sqrt(2)))
    tpr1 = float(norm.cdf(norm.ppf(0.01) + separation))
    tpr01 = float(norm.cdf(norm.ppf(0.001) + separation))
    grid = np.linspace(0.001, 0.999, 999)
    advantage = float(np.max(norm.cdf(norm.ppf(grid) + separation) - grid))
    eps = max(0.0, math.log(max(tpr1, 1e-9) / 0.01)) if separation > 0.3 else 0.0
    return {"auc": round(auc, 4), "tpr_at_1pct_fpr": round(tpr1, 4), "tpr_at_0.1pct_fpr": round(tpr01, 4),
            "balanced_accuracy": round(0.5 + advantage / 2, 4), "advantage": round(advantage, 4),
            "precision": round(0.5 + advantage / 3, 4), "recall": round(0.5 + advantage / 2, 4),
            "threshold": 1.3, "epsilon": round(eps * 1.3, 3), "epsilon_lower_bound": round(eps, 3),
            "epsilon_ci95": [round(max(0.0, eps - 0.8), 3), round(eps + 0.9, 3)], "delta": 1e-05,
            "n_members": n_members, "n_non_members": n_non_members, "roc": roc(separation)}


def membership(attack: str, seps: tuple, n: int, n_held_out: int) -> dict:
    label, assumes = MIA[attack]
    return {"attack": attack, "label": label, "assumes": assumes,
            **{role: metrics(s, n, n_held_out) for role, s in zip(("original", "unlearned", "reference"), seps)}}


def accuracy(forget: float, retain: float, test: float, other: float) -> dict:
    return {"forget": forget, "retain": retain, "test": test, "test_other_classes": other}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (attacks.significance.holm)."""
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(sorted(range(len(p_values)), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def membership_test(n_forget: int, n_held_out: int, effect: dict, seed: int) -> tuple[dict, dict]:
    """The paired membership test's evidence, before Holm, computed as `audit run` computes it
    (audit.recompute.recorded_membership_evidence) from per-example statistics drawn here:
    each role's forget examples around its ``effect``, held-out ones around 0. Returns the
    evidence and the per-example picture of the same statistics (audit.evidence.per_example_picture)."""
    from audit.evidence import per_example_picture
    from audit.recompute import recorded_membership_evidence
    from reports.document import plain

    rng = np.random.default_rng(seed)
    is_forget = np.r_[np.ones(n_forget, dtype=bool), np.zeros(n_held_out, dtype=bool)]
    stats = {role: np.r_[rng.normal(e, 1.0, n_forget), rng.normal(0.0, 1.0, n_held_out)] for role, e in effect.items()}
    retrained = ["reference", "retrain_1", "retrain_2"]
    evidence, rounded = recorded_membership_evidence(stats, is_forget, MEMBERSHIP_LABEL, retrained, retrained, "retrained",
                                                     seed, 4000, 1000)
    ids = np.r_[forget_ids(n_forget, seed), 1348 + np.arange(n_held_out)]  # training ids, then the test split's
    return plain(evidence.model_dump(by_alias=True)), per_example_picture(rounded, is_forget, retrained, ids)


def forget_ids(n: int, seed: int) -> np.ndarray:
    """The sorted training ids of a forget set of ``n`` examples (of the digits' 1,348)."""
    return np.sort(np.random.default_rng(seed).choice(1348, size=n, replace=False))


def request(spec: str, n: int, seed: int, classes: list[int] | None = None, file_bytes: bytes | None = None) -> dict:
    """A target's ``forget`` as audit.forget.ForgetSet.describe writes it, with the digests of its ids."""
    import hashlib

    text = "".join(f"{int(i)}\n" for i in forget_ids(n, seed))
    return {"spec": spec, "n": n, "classes": classes, "ids_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "file_sha256": hashlib.sha256(file_bytes).hexdigest() if file_bytes is not None else None}


def rate_test(name: str, label: str, n: int, k_original: int, k_unlearned: int, retrained: list[int]) -> dict:
    """A count against the retrained models (attacks.significance.rate_excess_test, audit.scoring.rate_evidence)."""
    base = max(retrained)
    rate = min(1.0, (base + 1) / n)

    def p(k: int) -> float:
        return 1.0 if k <= 0 else min(1.0, float(binom.sf(k - 1, n, rate)))

    scale = k_original - base
    hi = float(beta.ppf(0.975, k_unlearned + 1, n - k_unlearned)) if k_unlearned < n else 1.0
    upper = float(beta.ppf(0.95, k_unlearned + 1, n - k_unlearned)) if k_unlearned < n else 1.0  # one-sided 95%
    lo = float(beta.ppf(0.025, k_unlearned, n - k_unlearned + 1)) if k_unlearned > 0 else 0.0
    return {"name": name, "label": label, "p_original": p(k_original), "p_unlearned": p(k_unlearned),
            "effect_original": k_original / n, "effect_unlearned": k_unlearned / n,
            "effect_retrained": [c / n for c in retrained], "residual": max(k_unlearned - base, 0) / scale,
            "residual_ci95": [max(lo * n - base, 0.0) / scale, max(hi * n - base, 0.0) / scale],
            "residual_upper": max(upper * n - base, 0.0) / scale,
            "p_original_holm": None, "p_unlearned_holm": None,
            "detail": {"n": n, "count_original": k_original, "count_unlearned": k_unlearned,
                       "count_retrained": retrained, "null_rate": rate}}


def decide(tests: list[dict]) -> dict:
    """The verdict fields of a target, as audit.scoring.decide writes them (sets the tests' Holm p-values)."""
    for key in ("original", "unlearned"):
        for t, p in zip(tests, holm([t[f"p_{key}"] for t in tests])):
            t[f"p_{key}_holm"] = p
    power = min(t["p_original_holm"] for t in tests)
    p_value = min(t["p_unlearned_holm"] for t in tests)
    powered = [t for t in tests if t["p_original_holm"] <= ALPHA and t["residual"] is not None]
    residual = ci = None
    if powered:  # the most sensitive instrument: the smallest power p-value sets the headline
        top = min(powered, key=lambda t: (t["p_original_holm"], -t["residual"]))
        residual, ci = top["residual"], list(top["residual_ci95"])
    # A pass is judged by the one-sided 95% bound; a test recorded without one, by its interval's end.
    upper = None
    if ci is not None:
        upper = top.get("residual_upper")
        if upper is None:
            upper = ci[1]
    over = over_p = None
    mem = next(t for t in tests if t["name"] == "membership")
    if mem["p_original_holm"] <= ALPHA:
        baseline = (sum(mem["effect_retrained"]) / len(mem["effect_retrained"]) if mem["effect_retrained"]
                    else 0.0)
        if mem["effect_original"] - baseline > 0:
            over = (baseline - mem["effect_unlearned"]) / (mem["effect_original"] - baseline)
            over_p = mem["detail"]["p_over"]["unlearned"]
    fields = {"alpha": ALPHA, "max_residual": 0.5, "power_p_value": power, "p_value": p_value, "residual_leakage": residual,
              "residual_leakage_ci95": ci, "residual_leakage_upper": upper,
              "overforgetting": over, "overforgetting_p_value": over_p, "advice": None,
              "memorised_auc": None, "memorised_auc_ci95": None, "max_memorised_auc": 0.6, "memorised_auc_upper": None}
    # The original's membership AUC, as audit.scoring.memorisation reads it: only from the per-example test
    # against models that never saw the data, on 30 forget examples or more.
    if mem["detail"].get("null") in ("pool", "retrained") and mem["detail"]["n_forget"] >= 30:
        fields.update(memorised_auc=mem["detail"]["auc"]["original"],
                      memorised_auc_ci95=list(mem["detail"]["auc_ci95"]["original"]),
                      memorised_auc_upper=mem["detail"]["auc_upper"]["original"])
    failing = [t for t in tests if t["p_unlearned_holm"] <= ALPHA]
    if failing:
        words = "; ".join(f"{t['label']} (p = {t['p_unlearned_holm']:.2g})" for t in failing)
        return {**fields, "verdict": "fail", "verdict_reason": f"the unlearned model still shows the forget set: "
                f"{words}, at alpha = {ALPHA:g} after Holm's correction"}
    if power > ALPHA:
        unseen = (f"even before unlearning no test told the forget set from unseen data (best p = {power:.2g} > "
                  f"alpha = {ALPHA:g})")
        auc, auc_upper = fields["memorised_auc"], fields["memorised_auc_upper"]
        if auc_upper is None:
            return {**fields, "verdict": "inconclusive", "advice": ADVICE, "verdict_reason": (
                f"{unseen}, so the attacks cannot confirm that these data are gone")}
        if auc_upper <= 0.6:
            return {**fields, "verdict": "not_memorised", "verdict_reason": (
                f"{unseen}, nor after it, and the original held little to remove: its per-example membership test "
                f"ranks a forget example above an unseen one with probability {auc:.2f}, at most {auc_upper:.2f} "
                "(95% upper bound; 0.50 is no signal, and at most 0.6 counts as not memorised)")}
        return {**fields, "verdict": "inconclusive", "advice": ADVICE, "verdict_reason": (
            f"{unseen}, so the attacks cannot confirm that these data are gone; the original's membership AUC is "
            f"{auc:.2f} with a 95% upper bound of {auc_upper:.2f}, above the 0.6 that would show the data were not "
            "memorised")}
    best = min(tests, key=lambda t: t["p_original_holm"])
    seen = (f"before unlearning the attacks told the forget set from unseen data ({best['label']}, p = "
            f"{best['p_original_holm']:.2g}); after unlearning no test does (smallest p = {p_value:.2g})")
    if upper is None or not upper < 0.5:  # a pass needs the removal shown
        shown = ("no residual leakage could be measured" if ci is None or residual is None else
                 f"the residual leakage's 95% interval is unbounded above ({residual:.2f} measured)"
                 if not math.isfinite(upper) else
                 f"up to {upper:.2f} of the original's signal may remain (95% upper bound of the residual "
                 f"leakage, {residual:.2f} measured)")
        return {**fields, "verdict": "inconclusive", "advice": REMOVAL_ADVICE, "verdict_reason":
                f"{seen}, but the removal itself is not shown: {shown}, and a pass needs that bound below 0.5"}
    return {**fields, "verdict": "pass", "verdict_reason": (
        f"{seen}, and at most {upper:.2f} of its signal can remain (95% upper bound, below 0.5)")}


def gates(target: dict, inconclusive: str = "fail") -> list[dict]:
    """The verdict gate, then the --fail-on gate, worded as audit.gates.gate_target words them."""
    verdict, reason = target["verdict"], target["verdict_reason"]
    if verdict == "pass":
        first = {"passed": True, "message": f"pass: {reason}"}
    elif verdict == "inconclusive":
        how = ("passes because --inconclusive pass was chosen" if inconclusive == "pass"
               else "fails closed (choose --inconclusive pass to let it through)")
        first = {"passed": inconclusive == "pass", "message": f"inconclusive, {how}: {reason}"}
    else:
        first = {"passed": False, "message": f"fail: {reason}"}
    gaps = [abs(a["unlearned"]["auc"] - a["reference"]["auc"]) for a in target["membership"] if a["reference"]]
    if not gaps:  # no retrained reference: the gate fails closed
        return [{"expr": "verdict", "value": None, **first},
                {"expr": GATE, "value": None, "passed": False,
                 "message": "mia_auc_gap has no finite value for this target (not measured, or unbounded); the gate "
                            "'fails if mia_auc_gap > 0.1' fails closed"}]
    gap = max(gaps)
    how = "it does, so the gate fails" if gap > 0.1 else "it does not, so the gate passes"
    return [{"expr": "verdict", "value": None, **first},
            {"expr": GATE, "value": gap, "passed": gap <= 0.1,
             "message": f"mia_auc_gap = {gap:.4g}; fails if mia_auc_gap > 0.1: {how}"}]


def write_digit_images(folder: Path, role: str, strength: float, count: int = 4) -> list[str]:
    """Small greyscale 'reconstructions' of a 3 (8x8, like the digits data), saved as PNG where the harness puts them."""
    rng = np.random.default_rng(sum(map(ord, role)))
    three = np.zeros((8, 8))
    three[1, 2:6] = three[3, 3:6] = three[6, 2:6] = 1
    three[1:7, 5] = 1
    paths = []
    for i in range(count):
        pixels = np.clip(strength * three + (1 - strength) * rng.random((8, 8)), 0, 1)
        rel = Path("inversion") / "class_3" / f"{role}-class3-{i}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).astype(np.uint8), mode="L").resize((96, 96), Image.NEAREST).save(folder / rel)
        paths.append(rel.as_posix())
    return paths


def write_real_examples(folder: Path, classes: list[int]) -> list[dict]:
    """The real examples `audit run` records beside the reconstructions (the digits' held-out test split),
    chosen and saved by the harness's own functions."""
    from audit.attacking import real_examples, save_png
    from audit.data import load_dataset

    images: dict = {}
    found = real_examples(load_dataset("digits"), classes, Path("inversion") / "class_3", images)
    for rel, image in images.items():
        save_png(image, folder / rel)
    return found


def retrains(accuracies: list[dict]) -> list[dict]:
    return [{"seed": s, "from_cache": i > 0, "accuracy": a} for i, (s, a) in enumerate(zip(RETRAIN_SEEDS, accuracies))]


def finish(target: dict, tests: list[dict], inconclusive: str = "fail") -> dict:
    target.update(decide(tests), tests=tests)
    target["gates"] = gates(target, inconclusive)
    target["passed"] = all(g["passed"] for g in target["gates"])
    return target


def step_failed(target: dict, error: str) -> dict:
    """``target`` as the harness leaves it when a step failed: nothing measured, every gate failed closed."""
    target.update(method=None, accuracy={}, timings={}, verdict="error", verdict_reason=None, advice=None,
                  power_p_value=None, p_value=None, residual_leakage=None, residual_leakage_ci95=None,
                  residual_leakage_upper=None, overforgetting=None, overforgetting_p_value=None, tests=[],
                  per_example=None, membership=[], inversion=None, retrains=[], passed=False, error=error,
                  gates=[{"expr": e, "value": None, "passed": False, "message": "not evaluated: a step of this target failed"}
                         for e in ("verdict", GATE)])
    return target


def build_document(folder: Path, inconclusive: str = "fail") -> dict:
    """A results document as `audit run` writes it, plus the inversion PNGs under ``folder``.

    ``inconclusive`` is the policy (``--inconclusive``) the gates were applied with.
    """
    amnesiac_details = {"batches_removed": 429, "batches_recorded": 429, "total_steps": 440,
                        "fraction_of_batches_removed": 0.975, "retained_examples_in_removed_batches": 13583,
                        "log_bytes_read": 40800000, "log_bytes": 40814064, "log_bytes_removed": 40800000,
                        "log_dtype": "float32", "removal_seconds": 0.12, "repair_epochs": 1, "repair_seconds": 0.29}

    # class=3: the membership test, the class accuracy and model inversion all see the class before
    # unlearning; none does after.
    n, held = 137, N_HELD_OUT["class=3"]
    effects = {"original": 1.84, "unlearned": 0.09, "reference": 0.05, "retrain_1": -0.02, "retrain_2": 0.11}
    mem, picture = membership_test(n, held, effects, seed=3)
    tests = [mem,
             rate_test("class_accuracy", "accuracy on the forgotten class against retrained models", n, 136, 0,
                       [0, 0, 0]),
             rate_test("inversion", "model inversion (MI-Face) recognised against retrained models", 16, 14, 1,
                       [1, 0, 2])]
    tests[1]["detail"]["confidence"] = {"original": 0.981, "unlearned": 0.004, "retrained": [0.003, 0.005, 0.002]}
    passing = finish({
        "name": "class=3",
        "forget": request("class=3", n, 3, [3]),
        "method": {"name": "amnesiac", "reason": "the update log covers every forget example", "seconds": 0.41,
                   "details": amnesiac_details},
        "accuracy": {"original": accuracy(0.993, 0.995, 0.971, 0.969), "unlearned": accuracy(0.0, 0.981, 0.884, 0.979),
                     "reference": accuracy(0.0, 0.999, 0.889, 0.985)},
        "timings": {"unlearn": 0.43, "reference": 12.6, "attacks": 14.1},
        "per_example": picture,
        "membership": [membership("lira_online", (1.6, 0.15, 0.1), n, held),
                       membership("loss", (0.9, 0.05, 0.05), n, held)],
        "inversion": {"classes": [3], "restarts": 16, "iterations": 400, "n_reconstructions": 16,
                      "evaluator": "same architecture, another seed, trained on the held-out test split",
                      "retrains": [{"attack_accuracy": 0.0625, "recognised": 1}, {"attack_accuracy": 0.0, "recognised": 0},
                                   {"attack_accuracy": 0.125, "recognised": 2}],
                      "original": {"attack_accuracy": 0.875, "recognised": 14, "similarity": 0.62,
                                   "similarity_other": 0.11, "nearest_is_target": 0.75, "confidence": 0.99,
                                   "seconds": 0.4, "images": write_digit_images(folder, "original", 0.9)},
                      "unlearned": {"attack_accuracy": 0.0625, "recognised": 1, "similarity": 0.08,
                                    "similarity_other": 0.1, "nearest_is_target": 0.125, "confidence": 0.31,
                                    "seconds": 0.4, "images": write_digit_images(folder, "unlearned", 0.1)},
                      "reference": {"attack_accuracy": 0.0625, "recognised": 1, "similarity": 0.07,
                                    "similarity_other": 0.1, "nearest_is_target": 0.0625, "confidence": 0.28,
                                    "seconds": 0.4, "images": write_digit_images(folder, "reference", 0.05)},
                      "real_examples": write_real_examples(folder, [3])},
        "retrains": retrains([accuracy(0.0, 0.999, 0.889, 0.985), accuracy(0.0, 0.998, 0.887, 0.983),
                              accuracy(0.0, 0.999, 0.891, 0.987)]),
        "error": None,
    }, tests, inconclusive)

    # samples=forget-ids.txt: relabelling left the examples visible to the membership test.
    n, held = 50, N_HELD_OUT["samples=forget-ids.txt"]
    effects = {"original": 1.21, "unlearned": 0.74, "reference": 0.03, "retrain_1": -0.05, "retrain_2": 0.08}
    mem, picture = membership_test(n, held, effects, seed=50)
    tests = [mem]
    failing = finish({
        "name": "samples=forget-ids.txt",
        "forget": request("samples=forget-ids.txt", n, 50, file_bytes=("# deletion requests\n" + "".join(
            f"{i}\n" for i in forget_ids(n, 50))).encode()),
        "method": {"name": "relabel", "reason": "the update log does not cover 50 of the 50 forget examples",
                   "seconds": 2.7, "details": {"epochs": 2, "lr": 0.001}},
        "accuracy": {"original": accuracy(1.0, 0.995, 0.971, 0.971), "unlearned": accuracy(0.62, 0.990, 0.962, 0.962),
                     "reference": accuracy(0.94, 0.999, 0.970, 0.970)},
        "timings": {"unlearn": 2.7, "reference": 12.1, "attacks": 10.8},
        "per_example": picture,
        "membership": [membership("lira_online", (1.2, 0.9, 0.2), n, held),
                       membership("loss", (0.6, 0.5, 0.1), n, held)],
        "inversion": None,
        "retrains": retrains([accuracy(0.94, 0.999, 0.970, 0.970), accuracy(0.96, 0.998, 0.968, 0.968),
                              accuracy(0.92, 0.999, 0.972, 0.972)]),
        "error": None,
    }, tests, inconclusive)

    # random=0.01@0: 13 examples of a model that generalises; not even the original shows them.
    n, held = 13, N_HELD_OUT["random=0.01@0"]
    effects = {"original": 0.38, "unlearned": 0.12, "reference": 0.02, "retrain_1": 0.10, "retrain_2": -0.04}
    mem, picture = membership_test(n, held, effects, seed=13)
    tests = [mem]
    inconclusive_target = finish({
        "name": "random=0.01@0",
        "forget": request("random=0.01@0", n, 13),
        "method": {"name": "amnesiac", "reason": "the update log covers every forget example", "seconds": 0.05,
                   "details": {**amnesiac_details, "batches_removed": 13, "fraction_of_batches_removed": 0.0295,
                               "retained_examples_in_removed_batches": 403, "log_bytes_read": 1236400,
                               "log_bytes_removed": 1236400, "removal_seconds": 0.01}},
        "accuracy": {"original": accuracy(1.0, 0.995, 0.971, 0.971), "unlearned": accuracy(1.0, 0.993, 0.969, 0.969),
                     "reference": accuracy(1.0, 0.999, 0.971, 0.971)},
        "timings": {"unlearn": 0.06, "reference": 12.8, "attacks": 9.7},
        "per_example": picture,
        "membership": [membership("lira_online", (0.25, 0.22, 0.2), n, held),
                       membership("loss", (0.1, 0.1, 0.08), n, held)],
        "inversion": None,
        "retrains": retrains([accuracy(1.0, 0.999, 0.971, 0.971), accuracy(0.923, 0.998, 0.969, 0.969),
                              accuracy(1.0, 0.999, 0.973, 0.973)]),
        "error": None,
    }, tests, inconclusive)

    targets = [passing, failing, inconclusive_target]
    passed = all(t["passed"] for t in targets)
    how = "pass" if inconclusive == "pass" else "fail"
    return {
        "schema": "amnesia-audit/results", "schema_version": 2, "created": "2026-11-28T00:10:00+00:00",
        "verdict": "pass" if passed else "fail", "exit_code": 0 if passed else 1,
        "tool": {"name": "amnesia-audit", "version": "0.1.0",
                 "libraries": {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.3.1", "art": "1.20.1",
                               "scikit-learn": "1.7.2"}},
        "provenance": {
            "command": ("audit run model.pt --forget class=3 --forget samples=forget-ids.txt --forget random=0.01@0 "
                        f"--fail-on '{GATE}'" + (" --inconclusive pass" if inconclusive == "pass" else "")),
            "model": {"path": "model.pt", "sha256": "9f2c" + "a1" * 30, "arch": "smallcnn", "kind": "toolkit",
                      "parameters": 23034,
                      "update_log": {"dir": "model.pt.log", "record": "per_batch", "recorded": 440, "total_steps": 440,
                                     "bytes": 40814064, "dtype": "float32"}},
            "data": {"spec": "digits", "sha256": "4be1" + "c3" * 30, "n_train": 1348, "n_test": 449, "num_classes": 10,
                     "class_names": [str(i) for i in range(10)]},
            "seed": 0, "original": None,
            "reference_models": {"num_models": 16, "seeds": list(range(1, 17)), "from_cache": [True] * 16,
                                 "train_fraction_mean": 0.5, "seconds": 0.0, "train_fraction": 0.5},
            "machine": {"platform": "Linux-6.1-x86_64", "cpus": 2}},
        "config": {"method": "auto", "reference": "retrain", "attacks": ["mia", "inversion"],
                   "mia_attacks": ["lira_online", "loss"], "reference_models": 16, "retrains": 3, "alpha": ALPHA, "max_residual": 0.5,
                   "inconclusive": inconclusive, "inversion_iterations": 400, "gates": [GATE]},
        "targets": targets,
        "notes": [f"1 target(s) were inconclusive: the attacks could not detect the forget set even in the original "
                  f"model. By the chosen policy (--inconclusive {how}) they {how}.",
                  "With 45 held-out non-members, TPR at 1% and at 0.1% FPR can only be read at the lowest measurable "
                  "FPR, 1/45; the AUC-based figures are the reliable ones here."],
    }


def write_results(folder: Path, doc: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = build_document(folder) if doc is None else doc
    path = folder / "results.json"
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path
