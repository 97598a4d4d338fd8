"""Number formatting and ordering shared by the renderers (registered as Jinja filters and globals).

The filters return plain text; the templates escape everything they print (autoescape).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reports.document import Target

DASH = "\u2014"
#: How the report and the CLI write a figure with no finite value (never "inf").
UNBOUNDED = "unbounded"


def pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return DASH
    return f"{value:.{digits}f}" if math.isfinite(value) else UNBOUNDED


def bound(value: float | None, digits: int = 2) -> str:
    """An upper end or bound: null or not finite is "unbounded" (results.json writes an unbounded end as null)."""
    return UNBOUNDED if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def pval(value: float | None) -> str:
    """A p-value with two significant digits (0.00025, not 0.00)."""
    return DASH if value is None else f"{value:.2g}"


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)} min {secs:.0f} s"


def size(n_bytes: float | None) -> str:
    if n_bytes is None:
        return DASH
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n_bytes) < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return DASH  # unreachable


def interval(pair: Sequence[float | None] | None, digits: int = 2) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return ""
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def count(value: float) -> str:
    """A whole count with thousands separators: 1,348."""
    return f"{int(value):,}"


def plain(value: object) -> object:
    """A provenance value as text: lists joined with commas, nothing (None, "", []) as a dash.

    Text is returned as it is (a template's already escaped ``Markup`` stays markup)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else DASH
    if value is None or value == "":
        return DASH
    return value if isinstance(value, str) else str(value)


def target_order(targets: list[Target]) -> list[tuple[int, Target]]:
    """(index in the document, target): a failed step first, then failing a gate, then passing (stable).

    The index names the target's section (:func:`anchor`) and salts its figures' ids.
    """

    def rank(item: tuple[int, Target]) -> int:
        target = item[1]
        return 0 if target.error is not None else (1 if not target.passed else 2)

    return sorted(enumerate(targets), key=rank)


def did_not_pass(target: Target) -> bool:
    """A step failed, or a gate did (an inconclusive target that the policy let through passed)."""
    return target.error is not None or not target.passed


def status(target: Target) -> str:
    """"error", "fail", "inconclusive", "not_memorised" or "pass" for one target (its gates decide pass or fail)."""
    if target.error is not None:
        return "error"
    if target.verdict in ("inconclusive", "not_memorised"):
        # A gate set for the audit that failed makes it a failure, whatever the verdict on the data.
        return "fail" if any(not g.passed for g in target.gates if g.expr != "verdict") else target.verdict
    return "pass" if target.passed else "fail"


def anchor(name: str, index: int) -> str:
    """A safe id for a target's section (names hold '=', '/', spaces...)."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower()
    return f"t{index}-{cleaned[:40]}"


_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


def gate_rule(expr: str) -> str:
    """A gate as the rule it is: "fails if residual_leakage_upper > 0.5" (a ``--fail-on`` gate fails
    when its expression holds); the verdict gate: "fails unless the verdict passes"."""
    if expr.strip() == "verdict":
        return "fails unless the verdict passes"
    found = _GATE.match(expr)
    if not found:
        return f"fails if {expr.strip()}"
    return f"fails if {found.group(1)} {found.group(2)} {found.group(3)}"


# The outcome of a request as a reader sees it: the word on its badge and its colour's name (CSS).
OUTCOME_WORDS = {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive", "not_memorised": "not memorised",
                 "error": "error"}


def outcome_word(state: str) -> str:
    """The badge's word for a :func:`status`: "not memorised", never "not_memorised"."""
    return OUTCOME_WORDS.get(state, state)


#: p-values at most this are "strong" evidence (docs/reports.md, "How sure").
STRONG_P = 0.001


def certainty(target: Target) -> tuple[str, str]:
    """(level, words): how sure the audit is about ``target``'s verdict, on the fixed scale documented in
    docs/reports.md ("How sure"). Derived from the recorded evidence only:

    - pass: "strong evidence the data are gone" when the power check's p-value is at most
      :data:`STRONG_P` and the residual leakage's 95% upper bound at most half the margin
      (``max_residual``); else "evidence the data are gone";
    - not_memorised: "evidence there was nothing to remove";
    - inconclusive: "weak evidence the data are gone" when the original was detected (the
      removal is not shown); else "no evidence either way";
    - fail: "strong evidence the data are still there" when the unlearned model's p-value is
      at most :data:`STRONG_P`; else "evidence the data are still there";
    - a failed step: "not assessed".
    """
    verdict = target.verdict
    if target.error is not None or verdict not in OUTCOME_WORDS or verdict == "error":
        return "none", "not assessed: a step failed"
    if verdict == "pass":
        margin = target.max_residual if target.max_residual is not None else 0.5
        upper, power = target.residual_leakage_upper, target.power_p_value
        strong = (power is not None and power <= STRONG_P and upper is not None and math.isfinite(upper)
                  and upper <= margin / 2)
        return ("strong", "strong evidence the data are gone") if strong else ("some", "evidence the data are gone")
    if verdict == "not_memorised":
        return "some", "evidence there was nothing to remove"
    if verdict == "inconclusive":
        powered = (target.power_p_value is not None and target.alpha is not None
                   and target.power_p_value <= target.alpha)
        return ("weak", "weak evidence the data are gone") if powered else ("none", "no evidence either way")
    strong = target.p_value is not None and target.p_value <= STRONG_P
    return ("strong", "strong evidence the data are still there") if strong else \
        ("some", "evidence the data are still there")


def run_state(targets: list[Target], verdict: str) -> str:
    """The run's banner: "error" if a step failed, "inconclusive" if the only requests that did not pass
    are undecided (they fail the audit by its policy, but nothing was shown to leak), "fail" if any
    other request did not pass (or nothing was audited), else "pass"."""
    if verdict == "error" or any(t.error is not None for t in targets):
        return "error"
    if not targets:
        return "fail"
    states = [status(t) for t in targets if not t.passed]
    if not states:
        return "pass" if verdict == "pass" else "fail"
    return "inconclusive" if all(state == "inconclusive" for state in states) else "fail"
