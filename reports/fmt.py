"""Number formatting and ordering shared by the renderers (registered as Jinja filters and globals).

The filters return plain text; the templates escape everything they print (autoescape).
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.document import Target

DASH = "\u2014"


def pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


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
        return target.verdict
    return "pass" if target.passed else "fail"


def anchor(name: str, index: int) -> str:
    """A safe id for a target's section (names hold '=', '/', spaces...)."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower()
    return f"t{index}-{cleaned[:40]}"
