"""What ``audit run`` and ``audit gate`` print: silence on success with --quiet, one line per failure."""

from __future__ import annotations

from pathlib import Path

import typer

from reports import fmt
from reports.document import Accuracy, Document
from reports.text import printable


def _say(line: str, err: bool = False) -> None:
    """One line, with whatever a name, note or message holds escaped (no injected CI command, no bidi)."""
    typer.echo(printable(line), err=err)


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def print_summary(doc: Document, quiet: bool, out: Path | None, assumptions_said: bool = False) -> None:
    """``assumptions_said``: what loading assumed was already printed as a ``warning:`` line
    (``audit run``), so its ``Assumed:`` notes are not said a second time."""
    for t in doc.targets:
        if t.error is not None:
            _say(f"ERROR {t.name}: {t.error}", err=True)
        for g in t.gates:
            if not g.passed:
                _say(f"FAIL {t.name}: {g.message}", err=True)
        if quiet or t.error is not None:
            continue
        o, u, r = (t.accuracy.original or Accuracy(), t.accuracy.unlearned or Accuracy(), t.accuracy.reference)
        ref = f" (retrained {_pct(r.forget)})" if r is not None else ""
        leak, upper = t.residual_leakage, fmt.bound(t.residual_leakage_upper)
        leak_s = "n/a" if leak is None else f"{fmt.num(leak)} (at most {upper}, 95% upper bound)"
        if t.memorised_auc is not None and t.memorised_auc_upper is not None:
            leak_s += f"; original's membership AUC {t.memorised_auc:.2f} (at most {t.memorised_auc_upper:.2f})"
        power, p = t.power_p_value, t.p_value
        p_s = "" if power is None else f"power p = {power:.2g}, after unlearning p = {p:.2g}; "
        method = t.method
        how = (f"{method.name} ({method.reason})" if method is not None and method.name and method.reason
               else (method.name if method is not None else None) or "no unlearning method recorded")
        _say(f"{t.name}: verdict {t.verdict} ({fmt.certainty(t)[1]}); {how}; "
                   f"{p_s}residual leakage {leak_s}; "
                   f"forget accuracy {_pct(o.forget)} -> {_pct(u.forget)}{ref}; "
                   f"test accuracy on other classes {_pct(o.test_other_classes)} -> "
                   f"{_pct(u.test_other_classes)}; gates {'pass' if t.passed else 'FAIL'}")
        if t.verdict == "inconclusive" and t.advice:
            typer.echo(f"  to decide it: {t.advice}")
    for note in doc.notes:
        if note.startswith("Warning:"):  # loud: on stderr, even with --quiet or --json
            _say(f"WARNING: {note.removeprefix('Warning:').strip()}", err=True)
    if not quiet:
        for note in doc.notes:
            if not note.startswith("Warning:") and not (assumptions_said and note.startswith("Assumed:")):
                _say(f"note: {note}")
        where = f"; outputs in {out}/" if out is not None else ""
        _say(f"verdict: {doc.verdict} (exit {doc.exit_code}){where}")
