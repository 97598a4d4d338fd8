"""Progress on stderr (stdout stays clean for --json): a bar in a terminal; without one, as in
CI, plain lines (one per finished model, or one per finished step, each with its elapsed
time) once the command line has asked for them; nothing when quiet or AUDIT_NO_PROGRESS is set.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reports.text import printable

stderr = Console(stderr=True, highlight=False)

# Plain lines without a terminal are the command line's (audit.cli turns them on): a Python
# caller of audit.run in a notebook or a service keeps the silence it had.
_plain_lines = False


def plain_lines_without_terminal(on: bool = True) -> None:
    """Print a plain line per finished model or step when stderr is not a terminal."""
    global _plain_lines
    _plain_lines = on


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool = True, each: bool = False
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. ``each``: every unit is worth a line of its own (a finished model);
    otherwise units are steps (batches) and only the finished whole is a line."""
    if not enabled or os.environ.get("AUDIT_NO_PROGRESS"):
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        if not _plain_lines:
            yield lambda n=1: None
            return
        with _plain(printable(label), total, each) as advance:
            yield advance
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task(printable(label).replace("[", "\\["), total=total)  # a target name is text, not markup
        yield lambda n=1: bar.advance(task, n)


def _line(text: str) -> None:
    # sys.stderr at the time of the call (a test may have redirected it), flushed: CI shows it now.
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _plain(label: str, total: int, each: bool) -> Iterator[Callable[[int], None]]:
    started = time.perf_counter()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if each:
            _line(f"{label}: {done}/{total} done ({time.perf_counter() - started:.1f}s)")

    yield advance
    if not each:  # reached only when the step finished (an exception skips it)
        _line(f"{label}: done ({time.perf_counter() - started:.1f}s)")
