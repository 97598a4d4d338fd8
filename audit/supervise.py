"""An ``audit run`` on Ray, watched from a parent process that Ray cannot end.

Ray's native core ends the process that drives it when its raylet goes away (an agent
killed at start-up takes the raylet with it): ``_exit(1)`` from C++, with a raw log line,
no Python clean-up, no results.json, and exit 1, which the audit's contract reserves for "a
target failed" (issue 23, major 9). No ``except`` can catch that, so the command line runs
such an audit in a forked child from the start (before torch or Ray start any thread) and
waits: the child reports its exit code through a pipe as it finishes; a child that ends
without reporting is one ``error:`` line and exit 3 from the parent. The parent passes
SIGINT, SIGTERM and SIGHUP on to the child (whose handlers remove staged files and exit 130
or 143), and the child dies with the parent (``PR_SET_PDEATHSIG``), as the audit's own
workers do. The Python API (``audit.run``) drives Ray in the caller's process: there the
caller's process is Ray's to end, which docs/reliability.md says.
"""

from __future__ import annotations

import io
import os
import re
import select
import signal
import sys
from pathlib import Path
from typing import Callable, NoReturn

from reports.text import printable

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def wants_ray(argv: list[str]) -> bool:
    """Whether ``audit ARGV`` is a run on Ray: ``--executor ray`` on the command line, or ``executor = "ray"``
    in the config file the run would read (``--config FILE``, else ./audit.toml or ./pyproject.toml)."""
    if not argv or argv[0] != "run":
        return False
    for i, arg in enumerate(argv):
        if arg == "--executor" and i + 1 < len(argv):
            return argv[i + 1].strip().lower() == "ray"
        if arg.startswith("--executor="):
            return arg.partition("=")[2].strip().lower() == "ray"
    if "--isolated" in argv:
        return False
    try:
        from audit.config import read_settings

        named = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
        named = named or next((a.partition("=")[2] for a in argv if a.startswith("--config=")), None)
        settings = read_settings(Path(named) if named else None).values
    except Exception:  # noqa: BLE001 - a bad config is the run's to report, with its own line
        return False
    return str(settings.get("executor", "")).strip().lower() == "ray"


def can_supervise() -> bool:
    """A real process whose output goes to real files (not a test's captured streams), on a system with fork."""
    if not hasattr(os, "fork") or os.environ.get("AUDIT_NO_SUPERVISOR") == "1":
        return False
    return sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__


def run_supervised(body: Callable[[], None], print_error: Callable[[str], None]) -> NoReturn:
    """Run ``body`` (which ends with ``sys.exit(code)``) in a forked child and exit with its code."""
    sys.stdout.flush()
    sys.stderr.flush()
    report_r, report_w = os.pipe()
    native_r, native_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the audit itself
        os.close(report_r)
        os.close(native_r)
        _child(body, report_w, native_w)
    os.close(report_w)
    os.close(native_w)
    forwarded: list[int] = []
    for sig in FORWARDED:
        # A Ctrl-C reaches the child too (one process group); it ignores signals after the first.
        signal.signal(sig, lambda signum, frame: (forwarded.append(signum), _forward(pid, signum)))
    report, native = _collect(report_r, native_r)
    status = _wait(pid)
    if report.strip().isdigit():
        sys.stdout.flush()
        os._exit(int(report.strip()))
    if status < 0 and -status in forwarded:  # killed by what it was sent: as a shell reports it
        os._exit(128 - status)
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
    said = next((line for line in reversed(native) if _NATIVE_LOG.match(line)), None)
    said = _NATIVE_LOG.sub("", said) if said else None
    print_error(f"the audit's process {how} without finishing: its Ray instance failed (a raylet or one of its "
                f"agents died, or Ray ended the process{': ' + printable(said[:200]) if said else ''}); no results "
                "were written: rerun it, or use --executor local")
    sys.stderr.flush()
    os._exit(3)


# A line of Ray's native log ("[2026-12-07 16:35:29,190 E 732 732] core_worker_process.cc:247: ...").
_NATIVE_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\] ")


def _collect(report_r: int, native_r: int) -> tuple[bytes, list[str]]:
    """The child's report (until its end of the pipe closes) and the native lines written to its fd 2:
    Ray's log lines are kept for the one line, anything else (a native library's message) passed on."""
    report, pending, native = b"", b"", []
    open_fds = [report_r, native_r]
    while report_r in open_fds:
        try:
            ready, _, _ = select.select(open_fds, [], [])
        except InterruptedError:  # a forwarded signal: keep waiting for the child
            continue
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.remove(fd)
                continue
            if fd == report_r:
                report += chunk
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if _NATIVE_LOG.match(line):
                    native.append(line)
                else:
                    os.write(2, raw + b"\n")
    os.close(report_r)
    os.close(native_r)  # Ray's daemons may hold its other end: nothing more is waited for
    if pending and not _NATIVE_LOG.match(pending.decode("utf-8", "replace")):
        os.write(2, pending)
    return report, native


def _child(body: Callable[[], None], report_w: int, native_w: int) -> NoReturn:
    code = 3
    try:
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed parent takes the audit along
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent died before the line above
            os._exit(3)
        # Python's stderr stays the terminal (progress bars, the error line); what native code writes to
        # fd 2 (Ray's C++ log lines) goes to the parent, which keeps Ray's for its one line.
        python_err = os.dup(2)
        os.dup2(native_w, 2)
        os.close(native_w)
        sys.stderr.flush()
        sys.stderr = io.TextIOWrapper(io.FileIO(python_err, "w"), encoding=sys.stderr.encoding,
                                      errors=sys.stderr.errors, line_buffering=True)
        sys.__stderr__ = sys.stderr
        body()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - body reports its own errors; anything else is exit 3
        code = 3
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.write(report_w, str(code).encode())
            os.close(report_w)
            os._exit(code)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait(pid: int) -> int:
    """The child's exit status (negative: the signal that killed it)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return 3
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
