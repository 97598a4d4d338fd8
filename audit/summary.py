"""What ``audit run`` and ``audit gate`` print: silence on success with --quiet, one line per failure."""

from __future__ import annotations

from pathlib import Path

import typer


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def print_summary(doc: dict, quiet: bool, out: Path | None) -> None:
    for t in doc["targets"]:
        if t.get("error") is not None:
            typer.echo(f"ERROR {t['name']}: {t['error']}", err=True)
        for g in t.get("gates", []):
            if not g["passed"]:
                typer.echo(f"FAIL {t['name']}: {g['message']}", err=True)
        if quiet:
            continue
        if t.get("error") is not None:
            continue
        acc = t.get("accuracy") or {}
        o, u, r = acc.get("original") or {}, acc.get("unlearned") or {}, acc.get("reference") or {}
        method = t.get("method") or {}
        ref = f" (retrained {_pct(r.get('forget'))})" if r else ""
        leak, ci = t.get("residual_leakage"), t.get("residual_leakage_ci95") or [None, None]
        upper = "unbounded" if ci[1] is None else f"{ci[1]:.2f}"
        leak_s = "n/a" if leak is None else f"{leak:.2f} (95% interval {(ci[0] or 0.0):.2f} to {upper})"
        power, p = t.get("power_p_value"), t.get("p_value")
        p_s = "" if power is None else f"power p = {power:.2g}, after unlearning p = {p:.2g}; "
        how = (f"{method.get('name')} ({method.get('reason')})" if method.get("name") and method.get("reason")
               else method.get("name") or "no unlearning method recorded")
        typer.echo(f"{t['name']}: verdict {t.get('verdict')}; {how}; "
                   f"{p_s}residual leakage {leak_s}; "
                   f"forget accuracy {_pct(o.get('forget'))} -> {_pct(u.get('forget'))}{ref}; "
                   f"test accuracy on other classes {_pct(o.get('test_other_classes'))} -> "
                   f"{_pct(u.get('test_other_classes'))}; gates {'pass' if t['passed'] else 'FAIL'}")
    for note in doc.get("notes", []):
        if note.startswith("Warning:"):  # loud: on stderr, even with --quiet or --json
            typer.echo(f"WARNING: {note.removeprefix('Warning:').strip()}", err=True)
    if not quiet:
        for note in doc.get("notes", []):
            if not note.startswith("Warning:"):
                typer.echo(f"note: {note}")
        if out is not None:
            typer.echo(f"verdict: {doc['verdict']} (exit {doc['exit_code']}); outputs in {out}/")
        else:
            typer.echo(f"verdict: {doc['verdict']} (exit {doc['exit_code']})")
