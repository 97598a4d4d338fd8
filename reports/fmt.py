"""Number and text formatting shared by the renderers; every string from the document goes through ``esc``."""

from __future__ import annotations

import html
from typing import Any

DASH = "\u2014"


def esc(value: Any) -> str:
    """HTML-escape any value from the results document (quotes too: it may land in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


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


def interval(pair: list | None, digits: int = 2) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return ""
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def target_order(targets: list[dict]) -> list[dict]:
    """Targets with a failed step first, then those failing a gate, then passing ones (stable)."""
    def rank(t: dict) -> int:
        return 0 if t.get("error") is not None else (1 if not t["passed"] else 2)

    return sorted(targets, key=rank)


def gate_order(gates: list[dict]) -> list[dict]:
    """Failing gates first, in their original order otherwise."""
    return sorted(gates, key=lambda g: g["passed"])


def status(target: dict) -> str:
    """"error", "fail", "inconclusive" or "pass" for one target (its gates decide pass or fail)."""
    if target.get("error") is not None:
        return "error"
    if target.get("verdict") == "inconclusive":
        return "inconclusive"
    return "pass" if target["passed"] else "fail"


def anchor(name: str, index: int) -> str:
    """A safe id for a target's section (names hold '=', '/', spaces...)."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower()
    return f"t{index}-{cleaned[:40]}"
