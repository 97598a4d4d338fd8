"""The one way the tests drive the ``audit`` command line.

``run_audit(args, cwd)`` runs a command to its end and returns a :class:`CliRun`. It starts
a fresh interpreter, as a user or a CI job does, unless ``in_process=True``: then it calls
``audit.cli.main`` in the test's own process (the same code path minus the interpreter's
start-up, which dominates a command refused before any work). Signals, kills, fault
injection that stops the process, concurrency and anything that must see a fresh
environment need the subprocess. ``start_audit`` starts the same subprocess and hands back
the ``Popen`` for tests that signal or race it.

Import from the tests as ``from tests.cli_runner import run_audit`` (pytest puts the
repository root on the path: ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# The entry point of the console script, as a ``python -c`` program.
MAIN = "from audit.cli import main; main()"
# The console script a user runs, when this interpreter's environment has it (``make venv``
# installs it); else the same entry point through ``python -c``.
_SCRIPT = Path(sys.executable).with_name("audit")
ENTRY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", MAIN]


@dataclass
class CliRun:
    """One finished ``audit`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def cli_env(**extra: str | None) -> dict[str, str]:
    """The environment of a subprocess run: this one, quiet and single-threaded, with ``extra``
    set on top (a value of ``None`` unsets the variable)."""
    env = dict(os.environ)
    env["AUDIT_NO_PROGRESS"] = "1"
    for name in ("AUDIT_DEBUG", "AUDIT_FAULT", "AUDIT_FAULT_STOP"):
        env.pop(name, None)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    # Tiny models: one thread is faster, and far faster on a busy two-core machine.
    env["OMP_NUM_THREADS"] = "1"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def start_audit(args: list, cwd: Path | str | None = None, *, env: dict | None = None, script: str | None = None,
                **popen: object) -> subprocess.Popen:
    """Start ``audit ARGS`` in ``cwd`` with ``env`` on top of :func:`cli_env`; text pipes for
    stdout and stderr. ``script`` replaces the entry (``python -c SCRIPT ARGS``)."""
    entry = [sys.executable, "-c", script] if script else ENTRY
    return subprocess.Popen([*entry, *map(str, args)], cwd=cwd, env=cli_env(**(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_audit(args: list, cwd: Path | str | None = None, *, env: dict | None = None, in_process: bool = False,
              timeout: float = 600) -> CliRun:
    """Run ``audit ARGS`` in ``cwd`` (default: the current directory) to its end.

    ``env``: variables set for this run on top of :func:`cli_env`, ``None`` to unset one (in
    process: changed in ``os.environ`` for the call and restored after). ``in_process``: see
    the module's doc.
    """
    args = [str(a) for a in args]
    where = Path(cwd) if cwd is not None else Path.cwd()
    started = time.perf_counter()
    if not in_process:
        proc = start_audit(args, where, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        run = CliRun(args, proc.returncode, out, err, where)
    else:
        run = _run_in_process(args, where, env or {})
    _log_timing(args, in_process, time.perf_counter() - started)
    return run


def _log_timing(args: list[str], in_process: bool, seconds: float) -> None:
    """With ``AUDIT_TEST_TIMING_LOG=FILE``: one JSON line per command (test, mode, seconds), to find
    what makes `make test` slow."""
    log = os.environ.get("AUDIT_TEST_TIMING_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "?"), "in_process": in_process,
                                 "seconds": round(seconds, 2), "args": args[:3]}) + "\n")


def _run_in_process(args: list[str], cwd: Path, env: dict) -> CliRun:
    from audit.cli import main

    out, err = io.StringIO(), io.StringIO()
    changes = {"AUDIT_NO_PROGRESS": "1", "AUDIT_DEBUG": None,
               **{k: None if v is None else str(v) for k, v in env.items()}}
    saved = {k: os.environ.get(k) for k in changes}
    old_cwd, old_argv = os.getcwd(), sys.argv
    _set_env(changes)
    sys.argv = ["audit", *args]
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        _set_env(saved)
    return CliRun(args, code, out.getvalue(), err.getvalue(), cwd)


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_audit_many(cases: dict[str, tuple[list, Path]], workers: int = 4,
                   in_a_subprocess: set[str] | None = None) -> dict[str, CliRun]:
    """Run independent ``audit`` subprocesses side by side (each mostly waits on imports).

    With ``in_a_subprocess``, only the cases it names run as subprocesses; the others call
    the same entry point in this process, one after another (an interpreter start saved each)."""
    apart = {k: v for k, v in cases.items() if in_a_subprocess is None or k in in_a_subprocess}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(run_audit, args, cwd) for key, (args, cwd) in apart.items()}
        runs = {key: f.result() for key, f in futures.items()}
    runs.update({k: run_audit(args, cwd, in_process=True) for k, (args, cwd) in cases.items() if k not in apart})
    return runs


def assert_one_line_failure(run: CliRun, code: int = 2, *needles: str) -> str:
    """Exit ``code``, exactly one non-empty stderr line starting ``error:`` holding every needle, no traceback."""
    lines = run.error_lines()
    assert run.returncode == code, f"{run.args}: exit {run.returncode}, stderr:\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert len(lines) == 1, f"{run.args}: expected one line on stderr, got:\n{run.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def refused(run: CliRun, code: int, *needles: str) -> str:
    """:func:`assert_one_line_failure` with the exit code spelled out (the robustness tests' name)."""
    return assert_one_line_failure(run, code, *needles)


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted), to show that a refused command wrote nothing."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def train(cwd: Path, out: str, *extra: str, epochs: int = 2, **env: str) -> CliRun:
    """``audit train --epochs N ... --out OUT`` in ``cwd`` as a subprocess; asserts nothing."""
    return run_audit(["train", "--epochs", str(epochs), *extra, "--out", out], cwd, env=env)
