"""CI gates: the verdict of each target, then ``--fail-on 'residual_leakage_upper>0.5'``
expressions over its metrics.

Every target is first gated by its own verdict (:mod:`audit.scoring`): ``fail`` fails,
``inconclusive`` fails unless the policy (``--inconclusive pass``) says otherwise. A
``--fail-on`` gate *fails* when its expression is true, and also when its metric could not
be measured (fail closed: a missing number never passes). Metric names are documented in
the README ("Gates") and listed by :data:`METRICS`; ``verdict`` compares with words
(``verdict!=pass``). A document with no target fails: nothing measured never passes.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from audit.errors import InputError, closest
from reports.document import Accuracy, AttackMetrics, Config, GateResult, Target
from reports.fmt import gate_rule

METRICS: dict[str, str] = {
    "residual_leakage": "effect(unlearned) / effect(original) of the strongest powered test, 0 or more "
                        "(1: as much as before unlearning)",
    "residual_leakage_upper": "one-sided 95% upper bound of residual_leakage (a pass needs it below --max-residual)",
    "p_value": "smallest Holm-adjusted p-value of the tests on the unlearned model (small: still detected)",
    "power_p_value": "smallest Holm-adjusted p-value of the tests on the original model (the power check)",
    "overforgetting": "signed: how far below the retrained models the unlearned model puts the forget set, "
                      "on residual_leakage's scale (positive: the deletion itself is visible)",
    "overforgetting_p_value": "one-sided p-value that the forget set looks less like members than held-out data",
    "verdict": "pass | fail | not_memorised | inconclusive (compare with == or !=, e.g. verdict!=pass)",
    "forget_accuracy": "unlearned model's accuracy on the forget set",
    "retain_accuracy": "unlearned model's accuracy on the retained training data",
    "test_accuracy": "unlearned model's test accuracy on classes not forgotten",
    "forget_accuracy_gap": "|forget accuracy - reference's|",
    "test_accuracy_gap": "|test accuracy - reference's|",
    "mia_auc": "highest membership AUC of any attack on the unlearned model",
    "mia_tpr_at_1pct_fpr": "highest TPR at 1% FPR of any attack on the unlearned model",
    "mia_advantage": "highest attacker advantage of any attack on the unlearned model",
    "mia_epsilon": "highest epsilon lower bound of any attack on the unlearned model",
    "mia_auc_gap": "largest |AUC(unlearned) - AUC(reference)| over attacks",
    "inversion_accuracy": "share of inversions of forgotten classes the evaluation classifier recognises",
    "unlearn_seconds": "time the unlearning step took",
}
# Per-attack metrics: mia.<attack>.<metric>, e.g. mia.lira_offline.auc
PER_ATTACK = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "advantage", "epsilon_lower_bound")

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_WORD_EXPR = re.compile(r"^\s*(verdict)\s*(==|!=)\s*(pass|fail|not_memorised|inconclusive)\s*$")
VERDICT_WORDS = ("pass", "fail", "not_memorised", "inconclusive")
# Documented ranges: a value outside them is a corrupt document, never a pass.
RANGES = {"residual_leakage": (0.0, None), "residual_leakage_upper": (0.0, None), "p_value": (0.0, 1.0),
          "power_p_value": (0.0, 1.0), "overforgetting_p_value": (0.0, 1.0), "forget_accuracy": (0.0, 1.0),
          "retain_accuracy": (0.0, 1.0), "test_accuracy": (0.0, 1.0), "forget_accuracy_gap": (0.0, 1.0),
          "test_accuracy_gap": (0.0, 1.0), "mia_auc": (0.0, 1.0), "mia_tpr_at_1pct_fpr": (0.0, 1.0),
          "mia_auc_gap": (0.0, 1.0), "inversion_accuracy": (0.0, 1.0), "unlearn_seconds": (0.0, None),
          "mia_epsilon": (0.0, None), "mia_advantage": (-1.0, 1.0)}


@dataclass(frozen=True)
class Gate:
    expr: str
    metric: str
    op: str
    threshold: float | str

    def check(self, metrics: dict[str, float | None]) -> "GateResult":
        value = metrics.get(self.metric)
        if isinstance(self.threshold, str):  # verdict == word
            if value is None:
                return GateResult(expr=self.expr, value=None, passed=False,
                                  message="no verdict was reached for this target; the gate fails closed")
            failed = _OPS[self.op](value, self.threshold)
            how = "it does, so the gate fails" if failed else "it does not, so the gate passes"
            return GateResult(expr=self.expr, value=None, passed=not failed,
                              message=f"verdict = {value}; {gate_rule(self.expr)}: {how}")
        rule = gate_rule(self.expr)
        # No finite value: not measured (null in results.json) or unbounded (inf before it is written).
        # `audit run` (which sees inf) and `audit gate` (which reads null) say the same and both fail closed.
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return GateResult(expr=self.expr, value=None, passed=False,
                              message=f"{self.metric} has no finite value for this target (not measured, or "
                                      f"unbounded); the gate '{rule}' fails closed")
        failed = _OPS[self.op](value, self.threshold)
        how = "it does, so the gate fails" if failed else "it does not, so the gate passes"
        return GateResult(expr=self.expr, value=float(value), passed=not failed,
                          message=f"{self.metric} = {value:.4g}; {rule}: {how}")


def known_metric(name: str) -> bool:
    if name in METRICS:
        return True
    from attacks.registry import ATTACKS

    parts = name.split(".", 2)
    return len(parts) == 3 and parts[0] == "mia" and parts[2] in PER_ATTACK and parts[1] in ATTACKS


def parse_gate(expr: str) -> Gate:
    if not isinstance(expr, str):
        raise InputError(f"gate {expr!r} is not text: write METRIC OP NUMBER, e.g. 'residual_leakage>0.1'")
    word = _WORD_EXPR.match(expr)
    if word:
        return Gate(expr.strip(), "verdict", word.group(2), word.group(3))
    m = _EXPR.match(expr)
    if m and m.group(1) == "verdict":
        raise InputError(f"gate {expr!r}: compare the verdict with a word, e.g. 'verdict!=pass' or 'verdict==fail'")
    if not m:
        raise InputError(f"malformed gate {expr!r}: write METRIC OP NUMBER, e.g. 'residual_leakage>0.1'")
    metric, op, number = m.group(1), m.group(2), float(m.group(3))
    if not known_metric(metric):
        near = closest(metric, list(METRICS), cutoff=0.7)
        hint = f"; did you mean {near}? Known" if near else "; known"
        raise InputError(f"unknown metric {metric!r} in gate {expr!r}{hint}: {', '.join(METRICS)}, "
                         f"and mia.<attack>.<{'|'.join(PER_ATTACK)}> (docs/ci.md, 'Gates')")
    return Gate(expr.strip(), metric, op, number)


def parse_gates(exprs: list[str]) -> list[Gate]:
    return [parse_gate(e) for e in exprs]


def target_metrics(target: Target) -> dict[str, float | str | None]:
    """The flat metric table of one target of a results document (see reports.document)."""
    acc = target.accuracy
    after, ref = acc.unlearned or Accuracy(), acc.reference or Accuracy()

    def gap(key: str) -> float | None:
        a, r = getattr(after, key), getattr(ref, key)
        return None if a is None or r is None else abs(a - r)

    out: dict[str, float | str | None] = {
        "residual_leakage": target.residual_leakage,
        "residual_leakage_upper": target.residual_leakage_upper,
        "p_value": target.p_value,
        "power_p_value": target.power_p_value,
        "overforgetting": target.overforgetting,
        "overforgetting_p_value": target.overforgetting_p_value,
        "verdict": target.verdict if target.verdict in VERDICT_WORDS else None,
        "forget_accuracy": after.forget,
        "retain_accuracy": after.retain,
        "test_accuracy": after.test_other_classes,
        "forget_accuracy_gap": gap("forget"),
        "test_accuracy_gap": gap("test_other_classes"),
        "unlearn_seconds": target.timings.get("unlearn"),
    }
    unlearned = [(a, a.unlearned or AttackMetrics()) for a in target.membership]
    for key, metric in (("mia_auc", "auc"), ("mia_tpr_at_1pct_fpr", "tpr_at_1pct_fpr"),
                        ("mia_advantage", "advantage"), ("mia_epsilon", "epsilon_lower_bound")):
        values = [getattr(m, metric) for _, m in unlearned if getattr(m, metric) is not None]
        out[key] = max(values) if values else None
    gaps = [abs(m.auc - a.reference.auc) for a, m in unlearned
            if m.auc is not None and a.reference is not None and a.reference.auc is not None]
    out["mia_auc_gap"] = max(gaps) if gaps else None
    for a, m in unlearned:
        figures = m.model_dump(by_alias=True, exclude={"roc"})  # by their JSON names: tpr_at_0.1pct_fpr
        for metric in PER_ATTACK:
            out[f"mia.{a.attack}.{metric}"] = figures.get(metric)
    inv = target.inversion
    out["inversion_accuracy"] = inv.unlearned.attack_accuracy if inv is not None and inv.unlearned else None
    return out


def apply_gates(target: Target, gates: list[Gate]) -> list[GateResult]:
    metrics = target_metrics(target)
    return [g.check(metrics) for g in gates]


INCONCLUSIVE_POLICIES = ("fail", "pass")


def verdict_gate(target: Target, inconclusive: str = "fail", not_memorised: str = "pass") -> GateResult:
    """The target's own verdict as its first gate: fail fails; inconclusive fails unless the policy is pass;
    not_memorised passes unless its policy is fail."""
    reason = target.verdict_reason or ""
    if target.verdict == "pass":
        return GateResult(expr="verdict", value=None, passed=True, message=f"pass: {reason}" if reason else "pass")
    if target.verdict == "not_memorised":
        ok = not_memorised == "pass"
        how = ("passes by the policy --not-memorised pass (the default)" if ok
               else "fails by the policy --not-memorised fail")
        return GateResult(expr="verdict", value=None, passed=ok, message=f"not memorised, {how}: {reason}")
    if target.verdict == "inconclusive":
        ok = inconclusive == "pass"
        how = ("passes because --inconclusive pass was chosen" if ok
               else "fails closed (choose --inconclusive pass to let it through)")
        return GateResult(expr="verdict", value=None, passed=ok, message=f"inconclusive, {how}: {reason}")
    if target.verdict == "fail":
        return GateResult(expr="verdict", value=None, passed=False, message=f"fail: {reason}")
    return GateResult(expr="verdict", value=None, passed=False,
                      message="no verdict was reached for this target; it fails closed")


def gate_target(target: Target, gates: list[Gate], inconclusive: str = "fail", not_memorised: str = "pass") -> None:
    """Set ``target.gates`` (the verdict first) and ``target.passed``; a target whose step failed fails every gate."""
    if target.error is not None:  # "" is an error too: a failed step with no message
        target.gates = [GateResult(expr=e, value=None, passed=False, message="not evaluated: a step of this target failed")
                        for e in ["verdict"] + [g.expr for g in gates]]
    else:
        metrics = target_metrics(target)  # once: the range check and every gate read the same table
        out_of_range = _out_of_range(metrics)
        if out_of_range:
            target.gates = [GateResult(expr="verdict", value=None, passed=False, message=out_of_range)]
        else:
            target.gates = [verdict_gate(target, inconclusive, not_memorised)] + [g.check(metrics) for g in gates]
    target.passed = target.error is None and all(g.passed for g in target.gates)


def _out_of_range(metrics: dict[str, float | str | None]) -> str | None:
    for name, value in metrics.items():
        low, high = RANGES.get(name, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (low is not None and value < low) or (high is not None and value > high)):
            return (f"{name} = {value} lies outside its documented range; the document is corrupt or edited, "
                    "so the target fails closed")
    return None


def verdict(targets: list[Target]) -> tuple[str, int]:
    """(verdict, exit code): error/3 if a step failed, else fail/1 if a gate failed or nothing was audited, else pass/0."""
    if any(t.error is not None for t in targets):
        return "error", 3
    if not targets:
        return "fail", 1
    return ("fail", 1) if any(not t.passed for t in targets) else ("pass", 0)


# --- A recorded verdict, checked against its own evidence ------------------------------------
# `audit gate` trusts no verdict it did not reach itself: each target's verdict and headline
# figures are recomputed from the tests the document records, by the rule `audit run` used.
HEADLINE = ("power_p_value", "p_value", "residual_leakage", "residual_leakage_upper", "overforgetting",
            "overforgetting_p_value", "memorised_auc", "memorised_auc_upper")
INTERVALS = ("residual_leakage_ci95", "memorised_auc_ci95")


def recompute_verdict(target: Target, config: Config, where: str | None = None):
    """The :class:`audit.scoring.Verdict` that ``target``'s recorded evidence gives under the run's
    settings (``config``, the document's ``config``): :func:`audit.scoring.decide` over its ``tests``.

    The one place that turns a document's evidence back into a verdict; when ``decide``
    takes new evidence or settings, read them from the document here. Raises
    :class:`InputError` when the evidence is incomplete or not shaped as ``audit run`` writes it.
    """
    from audit.scoring import DEFAULT_MAX_MEMORISED_AUC, DEFAULT_MAX_RESIDUAL, decide

    alpha = config.alpha
    if alpha is None or not 0 < alpha < 1:
        raise InputError(f"config.alpha is {alpha!r}, not a significance level between 0 and 1; the document is "
                         "corrupt or edited: regenerate it with `audit run`")
    # Documents written before a pass needed the removal shown carry no margin: they are judged by the
    # default one, so an old pass without that evidence is refused (see check_recorded_verdict).
    margin = DEFAULT_MAX_RESIDUAL if config.max_residual is None else config.max_residual
    if not 0 < margin <= 1:
        raise InputError(f"config.max_residual is {margin!r}, not a share in (0, 1]; the document is corrupt or "
                         "edited: regenerate it with `audit run`")
    auc_margin = DEFAULT_MAX_MEMORISED_AUC if config.max_memorised_auc is None else config.max_memorised_auc
    if not 0.5 < auc_margin < 1:
        raise InputError(f"config.max_memorised_auc is {auc_margin!r}, not an AUC between 0.5 and 1; the document is "
                         "corrupt or edited: regenerate it with `audit run`")
    from audit.recompute import compare_tests, recompute_tests, refuse_pass_of_no_op

    where = where or f"target {target.name!r}"
    try:
        # Never the recorded figures: each test is rerun from what it was computed from.
        tests = recompute_tests(target, config, where)
        found = decide(tests, float(alpha), float(margin), float(auc_margin))
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:
        raise InputError(f"the tests recorded for target {target.name!r} are incomplete or malformed "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}), so its verdict cannot be "
                         "checked: regenerate the document with `audit run`") from None
    compare_tests(target.tests, tests, where)
    refuse_pass_of_no_op(target, target.verdict or "", where)
    return found


def check_recorded_verdict(target: Target, config: Config, where: str) -> None:
    """Refuse (:class:`InputError`) a target whose recorded verdict or headline figures are not
    those its recorded evidence gives (:func:`recompute_verdict`). A target whose step failed
    is left alone: it fails every gate whatever it records."""
    if target.error:
        return
    found = recompute_verdict(target, config, f"{where} ({target.name})")
    name = target.name
    if target.alpha is not None and not _same(target.alpha, config.alpha):
        raise InputError(f"{where} ({name}) records alpha = {target.alpha} but the run's config "
                         f"alpha = {config.alpha}; the document is corrupt or edited: regenerate it with "
                         "`audit run`")
    if (found.verdict, target.verdict) == ("inconclusive", "pass") and config.max_residual is None:
        raise InputError(f"{where} ({name}) records the verdict {target.verdict!r}, which its evidence does "
                         f"not support now that a pass needs the removal shown ({found.verdict!r} with the default "
                         f"--max-residual {found.max_residual:g}); the document was written by an older audit: "
                         "regenerate it with `audit run`")
    if found.verdict != target.verdict:
        raise InputError(f"{where} ({name}) records the verdict {target.verdict!r}, but the evidence it "
                         f"records gives {found.verdict!r} at alpha = {found.alpha:g}; the document is corrupt or "
                         "edited: regenerate it with `audit run`")
    recomputed = found.to_dict()
    for key in HEADLINE:
        if not _same(getattr(target, key), recomputed.get(key)):
            raise InputError(f"{where} ({name}) records {key} = {getattr(target, key)}, but its evidence gives "
                             f"{_show(recomputed.get(key))}; the document is corrupt or edited: regenerate it with "
                             "`audit run`")
    # The intervals too: a reversed [high, low] would otherwise pass on its (unchecked) ends.
    for key in INTERVALS:
        recorded, computed = getattr(target, key), recomputed.get(key)
        if recorded is not None and len(recorded) == 2 and None not in recorded and recorded[0] > recorded[1]:
            raise InputError(f"{where} ({name}) records {key} = [{recorded[0]:g}, {recorded[1]:g}], whose low end "
                             "lies above its high end; the document is corrupt or edited: regenerate it with "
                             "`audit run`")
        if (recorded is None) != (computed is None) or (recorded is not None and (
                len(recorded) != 2 or not all(_same(r, c) for r, c in zip(recorded, computed)))):
            shown = "nothing (null)" if computed is None else f"[{_show(computed[0])}, {_show(computed[1])}]"
            raise InputError(f"{where} ({name}) records {key} = {recorded}, but its evidence gives {shown}; the "
                             "document is corrupt or edited: regenerate it with `audit run`")


def check_document(doc, where: str) -> None:
    """Refuse (:class:`InputError`) a document whose verdicts, gates or outcome do not follow from
    its evidence and its recorded settings: every target's tests recomputed
    (:func:`check_recorded_verdict`), then its recorded gates re-applied by its recorded policy.
    What ``audit report`` checks before rendering a document it did not write."""
    for i, target in enumerate(doc.targets):
        check_recorded_verdict(target, doc.config, f"{where}: targets[{i}]")
    policy = doc.config.inconclusive or "fail"
    if policy not in INCONCLUSIVE_POLICIES:
        raise InputError(f"{where}: config.inconclusive {policy!r} is not fail or pass; the document is corrupt or "
                         "edited: regenerate it with `audit run`")
    gates = parse_gates(list(doc.config.gates))
    for i, target in enumerate(doc.targets):
        again = target.model_copy(deep=True)
        gate_target(again, gates, policy, doc.config.not_memorised or "pass")
        recorded = [(g.expr, g.passed) for g in target.gates]
        if [(g.expr, g.passed) for g in again.gates] != recorded or again.passed != target.passed:
            raise InputError(f"{where}: targets[{i}] ({target.name}) records gates that its verdict and figures do "
                             "not give under the run's gates and policy; the document is corrupt or edited: "
                             "regenerate it with `audit run`")
    outcome, code = verdict(doc.targets)
    if (outcome, code) != (doc.verdict, doc.exit_code):
        raise InputError(f"{where} records the outcome {doc.verdict!r} (exit {doc.exit_code}), but its targets give "
                         f"{outcome!r} (exit {code}); the document is corrupt or edited: regenerate it with `audit run`")


def _same(recorded, computed) -> bool:
    """Equal as results.json writes them: non-finite numbers are written as null; floats round-trip exactly."""
    if isinstance(computed, float) and not math.isfinite(computed):
        computed = None
    if recorded is None or computed is None:
        return recorded is None and computed is None
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        return False
    return math.isclose(float(recorded), float(computed), rel_tol=1e-9, abs_tol=1e-12)


def _show(value) -> str:
    return "nothing (null)" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.6g}"


# --- Which gates `audit gate` applies ---------------------------------------------------------
@dataclass
class GatePlan:
    """The gates and inconclusive policy ``audit gate`` applies, and one line for every way a
    config file or a flag changed them from those recorded in results.json."""

    gates: list[Gate]
    policy: str
    notices: list[str]


def plan_gates(recorded_config: Config, fail_on: list[str] | None, inconclusive: str | None, settings: dict,
               source: object = None, replace_recorded: bool = False, named: bool = True,
               signed: bool = False) -> GatePlan:
    """The gates to apply to a results document whose ``config`` is ``recorded_config``.

    The gates the run recorded always apply: ``--fail-on`` (``fail_on``) and a config file's
    ``fail_on`` (``settings``, read from ``source``) add to them, and a config's
    ``inconclusive`` may tighten the recorded policy but never loosen it; only
    ``replace_recorded`` (``--replace-recorded-gates``) lets the command line or the config
    stand in for the recorded gates. ``--inconclusive`` is explicit and applies as given.

    Only what was named may loosen: a config file nobody named (``named`` False: found in the
    current folder) can add gates and tighten the policy, never replace the recorded gates or
    let an inconclusive target through; and a recorded ``inconclusive = "pass"`` applies only
    to a document whose signature was verified (``signed``), since anyone can edit it in an
    unsigned one; otherwise ``--inconclusive pass`` must say it on this command line.
    """
    recorded = list(recorded_config.gates)
    recorded_policy = recorded_config.inconclusive or "fail"
    if recorded_policy not in INCONCLUSIVE_POLICIES:
        raise InputError(f"config.inconclusive {recorded_policy!r} in the document is not fail or pass; the document "
                         "is corrupt or edited: regenerate it with `audit run`")
    for policy, whose in ((inconclusive, "--inconclusive"), (settings.get("inconclusive"), f"inconclusive in {source}")):
        if policy is not None and policy not in INCONCLUSIVE_POLICIES:
            raise InputError(f"{whose} {policy!r} is unknown; use fail (the default) or pass")
    parse_gates(recorded)  # a malformed recorded gate is a corrupt document, said before anything else
    from_file = list(settings.get("fail_on") or [])
    from_cli = list(fail_on or [])
    notices: list[str] = []
    if recorded_policy == "pass" and not signed and inconclusive is None:
        recorded_policy = "fail"
        notices.append("the document records --inconclusive pass, which an unsigned document cannot vouch for; "
                       "inconclusive targets fail (pass --inconclusive pass, or verify it with --sign-key-env)")
    if not named and source is not None and (replace_recorded or settings.get("inconclusive") == "pass"):
        # A file nobody named may only tighten: its gates add to the recorded ones, its "pass" is not taken.
        if replace_recorded and not from_cli and from_file:
            notices.append(f"{source} was not named with --config, so its fail_on does not replace the recorded "
                           "gates (name it with --config to let it)")
            replace_recorded = False
        if settings.get("inconclusive") == "pass":
            notices.append(f"{source} sets inconclusive = 'pass', which a file not named with --config may not; "
                           "the policy stays 'fail'")
            settings = {k: v for k, v in settings.items() if k != "inconclusive"}
    if replace_recorded:
        chosen = from_cli if from_cli else from_file
        dropped = [g for g in recorded if g not in chosen]
        if dropped:
            notices.append(f"--replace-recorded-gates drops the recorded gate(s) {_quoted(dropped)}")
        exprs = chosen
    else:
        exprs = list(dict.fromkeys([*recorded, *from_file, *from_cli]))
        if "fail_on" in settings:
            added = [g for g in from_file if g not in recorded]
            left_out = [g for g in recorded if g not in from_file]
            if added:
                notices.append(f"{source} adds the gate(s) {_quoted(added)} to those recorded in the document")
            if left_out:
                notices.append(f"{source} sets fail_on without the recorded gate(s) {_quoted(left_out)}; they still "
                               "apply (pass --replace-recorded-gates to drop them)")
    policy = recorded_policy
    if inconclusive is not None:
        policy = inconclusive
    elif settings.get("inconclusive") not in (None, recorded_policy):
        wanted = settings["inconclusive"]
        if wanted == "fail" or replace_recorded:
            policy = wanted
            notices.append(f"{source} changes the inconclusive policy from the recorded {recorded_policy!r} "
                           f"to {wanted!r}")
        else:
            notices.append(f"{source} sets inconclusive = {wanted!r}, which would loosen the recorded policy "
                           f"{recorded_policy!r}; the recorded policy stays (pass --inconclusive {wanted} to "
                           "loosen it)")
    return GatePlan(parse_gates(exprs), policy, notices)


def _quoted(exprs: list[str]) -> str:
    return ", ".join(f"'{e}'" for e in exprs)
