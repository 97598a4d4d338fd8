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
workers do.

The Python API (``audit.run``, ``audit.evaluate``) cannot fork the caller's process at that
point (torch's OpenMP threads have run there, and a forked child that uses more than one
thread waits on them for ever), so :func:`audit_in_child` starts a fresh interpreter for the
part of the audit that drives Ray (:func:`audit.harness.audit_checked`): the checked inputs
go to it pickled (our own objects, to our own child), and only the results document comes
back, as JSON read by the strict loader (nothing is unpickled from the child). The child's
stdout is the caller's stderr, so nothing of Ray's reaches the caller's stdout. A child that
ends without a result is a :class:`audit.errors.StepError` in the caller, naming Ray's error;
the child's own errors are raised again in the caller with their class and message.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, NoReturn

from audit.errors import AuditError, InputError, Interrupted, StepError
from reports.text import printable

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Set in a process that is itself watched (the command line's child, the API's child): Ray may run there.
_WATCHED = False


def drives_ray_here() -> bool:
    """Whether this process may drive Ray itself: one a parent watches (Ray ending it ends no caller), or a
    system without POSIX processes, where no child is watched."""
    return _WATCHED or os.name != "posix"


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
    print_error(_ended_without_finishing(status, native, "--executor local"))
    sys.stderr.flush()
    os._exit(3)


def _ended_without_finishing(status: int, native: list[str], local: str) -> str:
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
    said = next((line for line in reversed(native) if _NATIVE_LOG.match(line)), None)
    said = _NATIVE_LOG.sub("", said) if said else None
    return (f"the audit's process {how} without finishing: its Ray instance failed (a raylet or one of its agents "
            f"died, or Ray ended the process{': ' + printable(said[:200]) if said else ''}); no results were "
            f"written: rerun it, or use {local}")


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


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed parent takes the audit along
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(3)


def _native_stderr_to(native_w: int, python_err: int) -> None:
    """Python's stderr is ``python_err`` (the terminal: progress bars, the error line); what native code writes
    to fd 2 (Ray's C++ log lines) goes to the parent, which keeps Ray's for its one line."""
    os.dup2(native_w, 2)
    os.close(native_w)
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(io.FileIO(python_err, "w"), encoding=sys.stderr.encoding,
                                  errors=sys.stderr.errors, line_buffering=True)
    sys.__stderr__ = sys.stderr


def _child(body: Callable[[], None], report_w: int, native_w: int) -> NoReturn:
    global _WATCHED
    code = 3
    try:
        _die_with_parent()
        _WATCHED = True
        _native_stderr_to(native_w, os.dup(2))
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


# --- The Python API: the part of an audit that drives Ray, in a fresh interpreter ----------------------
_ERRORS = {cls.__name__: cls for cls in (InputError, StepError)}


def audit_in_child(body: Callable[..., Any], args: tuple) -> tuple[Any, list[Path]]:
    """``body(*args)`` (:func:`audit.harness.audit_checked`) in a child process; its results document (typed)
    and the files it wrote. Whatever ends the child (Ray's native exit) is a StepError here, one line."""
    try:
        from ray import cloudpickle
    except ImportError:
        from audit.executor import RAY_MISSING

        raise InputError(RAY_MISSING) from None
    try:
        payload = cloudpickle.dumps((body, args))
    except Exception as exc:  # noqa: BLE001 - a model or function that cannot travel to the child (nor to Ray)
        raise InputError(f"executor 'ray' runs the audit in a process of its own, and its inputs cannot be sent "
                         f"there ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); use executor "
                         "'local'") from None
    root = str(Path(__file__).resolve().parent.parent)
    report_r, report_w = os.pipe()
    native_r, native_w = os.pipe()
    python_err = os.dup(2)
    env = {**os.environ, "AUDIT_CHILD_FDS": f"{report_w},{native_w},{python_err}"}
    try:
        # The toolkit's root first: no folder of the caller's (an `audit` package of their own) shadows it.
        child = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
                                  "from audit.supervise import _api_child; _api_child()"],
                                 stdin=subprocess.PIPE, stdout=python_err, env=env,
                                 pass_fds=(report_w, native_w, python_err))
    except BaseException:
        for fd in (report_r, native_r):
            os.close(fd)
        raise
    finally:
        for fd in (report_w, native_w, python_err):
            os.close(fd)
    header = json.dumps({"path": [p for p in sys.path if isinstance(p, str)]}).encode() + b"\n"
    threading.Thread(target=_feed, args=(child, header + payload), daemon=True).start()
    try:
        report, native = _collect(report_r, native_r)
        status = child.wait()
    except BaseException:  # an interrupt in the caller: the child unwinds (removes what it staged) and ends
        for fd in (report_r, native_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        _stop(child)
        raise
    return _answer(report, native, status)


def _feed(child: subprocess.Popen, data: bytes) -> None:
    try:
        child.stdin.write(data)  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]
    except (BrokenPipeError, OSError):  # the child ended first: its status says why
        pass


def _stop(child: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
        if child.poll() is not None:
            return
        _forward(child.pid, sig)
        try:
            child.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def _answer(report: bytes, native: list[str], status: int) -> tuple[Any, list[Path]]:
    from reports.reading import ReportError, validate

    try:
        message = json.loads(report) if report.strip() else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise StepError(_ended_without_finishing(status, native, "executor 'local'"))
    if "error" in message:
        raise _ERRORS.get(message["error"], StepError)(message["message"])
    try:
        doc = validate(json.loads(message["document"]), "the results document of the audit's Ray process")
    except (ReportError, ValueError) as exc:
        raise StepError(str(exc)) from None
    return doc, [Path(f) for f in message["files"]]


def _api_child() -> NoReturn:
    """The child of :func:`audit_in_child`: reads what to run from stdin, reports on its own pipe."""
    global _WATCHED
    report_w, native_w, python_err = (int(fd) for fd in os.environ.pop("AUDIT_CHILD_FDS").split(","))
    _die_with_parent()
    _WATCHED = True
    _native_stderr_to(native_w, python_err)
    message: dict = {"error": "StepError", "message": "the audit's Ray process stopped before it began"}
    try:
        header = json.loads(sys.stdin.buffer.readline())
        sys.path[:] = [sys.path[0], *[p for p in header["path"] if p != sys.path[0]]]  # the toolkit's root first
        from ray import cloudpickle

        body, args = cloudpickle.loads(sys.stdin.buffer.read())  # from the process that started this one
        doc, files = _document_and_files(body(*args))
        message = {"document": doc, "files": files}
    except AuditError as exc:
        message = {"error": type(exc).__name__, "message": str(exc)}
    except (KeyboardInterrupt, Interrupted):
        message = {"error": "StepError", "message": "the audit's Ray process was interrupted"}
    except BaseException as exc:  # noqa: BLE001 - said in the caller as a failed step, one line
        message = {"error": "StepError", "message": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            data = json.dumps(message).encode()
            while data:
                data = data[os.write(report_w, data):]
            os.close(report_w)
            os._exit(0)


def _document_and_files(result: Any) -> tuple[str, list[str]]:
    return result.document.to_json(), [str(f) for f in result.files]
