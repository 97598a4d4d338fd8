"""Progress bars on stderr (stdout stays clean for --json), silent when not a terminal or quiet."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reports.text import printable

stderr = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar on stderr unless disabled or AUDIT_NO_PROGRESS is set."""
    if not enabled or os.environ.get("AUDIT_NO_PROGRESS") or not sys.stderr.isatty():
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        task = bar.add_task(printable(label).replace("[", "\\["), total=total)  # a target name is text, not markup
        yield lambda n=1: bar.advance(task, n)
