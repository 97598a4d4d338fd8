"""Every shell snippet in README.md, docs/ci.md and docs/own-model.md is executed by a test (issue 25, item 6).

The rule, for whoever writes a snippet there:

- Every fenced ``sh`` or ``bash`` block, and every ``run:`` line of a ``yaml`` block (a GitHub
  Actions step), is checked: ``bash -n`` parses it, and every ``audit ...`` command line in it
  (continuation lines joined, cut at a pipe, redirection, ``&&`` or ``;``) parses against the
  real command line: a known command, known options with their values, the required
  arguments. Nothing runs; this is all a snippet that needs the network, GitHub, your own
  files or minutes of training gets.
- A block right after the marker ``<!-- snippet: runs (exit N) -->`` is also run for real by
  ``bash -eu`` in a fresh folder holding ``audit-out/results.json`` (a realistic results
  document, tests/reports/report_documents.py), with this environment's ``audit`` first on
  PATH; it must exit N. Keep such snippets cheap: they run in ``make test``.
- ``<!-- snippet: runs slow (exit N) -->``: the same, for a snippet that trains (``make test-slow``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/ci.md", "docs/own-model.md"]
MARKER = re.compile(r"<!-- snippet: runs( slow)? \(exit (\d+)\) -->\s*$")


@dataclass
class Snippet:
    page: str
    line: int  # of the opening fence
    language: str
    text: str
    runs: bool = False
    slow: bool = False
    exit_code: int = 0

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    def shell(self) -> str:
        """The shell text: the block itself, or a yaml block's ``run:`` lines."""
        if self.language != "yaml":
            return self.text
        return "\n".join(m.group(1) for m in re.finditer(r"^\s*(?:-\s+)?run:\s*(.+)$", self.text, flags=re.M))


def snippets(page: str) -> list[Snippet]:
    lines = (ROOT / page).read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w+)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        language = fence.group(1)
        if language in ("sh", "bash", "yaml"):
            marker = MARKER.match(lines[i - 1].strip()) if i else None
            found.append(Snippet(page, i + 1, language, "\n".join(lines[i + 1:end]), runs=marker is not None,
                                 slow=bool(marker and marker.group(1)),
                                 exit_code=int(marker.group(2)) if marker else 0))
        i = end + 1
    return found


ALL = [s for page in PAGES for s in snippets(page)]
STOP = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>&1"}


def audit_command_lines(shell: str) -> list[list[str]]:
    """Every ``audit`` invocation in ``shell``, as its argument list (without ``audit``)."""
    joined = re.sub(r"\\\n\s*", " ", shell)
    commands = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
        lexer.whitespace_split = True
        tokens = list(lexer)
        while tokens:
            cut = next((k for k, t in enumerate(tokens) if t in STOP), len(tokens))
            part, tokens = tokens[:cut], tokens[cut + 1:]
            if part and part[0] == "audit":
                commands.append(part[1:])
    return commands


def parse_audit_command(args: list[str]) -> None:
    """Parse ``audit ARGS`` with the real command line, running nothing; raises click's usage error."""
    from typer.main import get_command

    from audit.cli import app

    group = get_command(app)
    name, rest = args[0], list(args[1:])
    with group.make_context("audit", [name]) as ctx:
        command = group.get_command(ctx, name)
        if command is None:
            raise ValueError(f"no command {name!r}")
        with command.make_context(name, rest, parent=ctx):
            pass


def test_the_pages_hold_the_snippets_this_test_expects():
    assert {s.page for s in ALL} == set(PAGES)
    assert any(s.language == "yaml" for s in ALL if s.page == "docs/ci.md")
    assert [s for s in ALL if s.runs and not s.slow], "no snippet runs in make test"
    assert sum(len(audit_command_lines(s.shell())) for s in ALL) >= 10


@pytest.mark.parametrize("snippet", ALL, ids=lambda s: s.name)
def test_every_snippet_is_valid_shell_and_every_audit_line_parses(snippet):
    shell = snippet.shell()
    check = subprocess.run(["bash", "-n"], input=shell, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"{snippet.name}: {check.stderr}"
    for args in audit_command_lines(shell):
        try:
            parse_audit_command(args)
        except Exception as exc:  # noqa: BLE001 - click's usage errors, whichever click raised them
            pytest.fail(f"{snippet.name}: `audit {' '.join(args)}` does not parse: {exc}")


def test_the_parser_of_this_test_refuses_what_the_cli_refuses():
    """The check above can fail: a wrong option, a missing argument, an unknown command."""
    for args in (["run", "model.pt", "--forgett", "class=3"], ["gate"], ["runn", "model.pt"],
                 ["run", "model.pt", "--retrains", "three"]):
        with pytest.raises(Exception):
            parse_audit_command(args)
    assert audit_command_lines("audit schema > s.json && audit gate \\\n  r.json --junit j.xml") == \
        [["schema"], ["gate", "r.json", "--junit", "j.xml"]]


def test_the_ci_page_installs_outside_this_checkout():
    text = "\n".join(s.shell() for s in ALL)
    assert "-c constraints.txt" not in text  # this repository's file: a user's repository has none
    ci = (ROOT / "docs" / "ci.md").read_text()
    assert "actions/cache@" in ci and "AMNESIA_AUDIT_CACHE" in ci and "--junit" in ci


def _run_for_real(snippet: Snippet, tmp_path: Path) -> None:
    from tests.reports.report_documents import write_results

    write_results(tmp_path / "audit-out")
    env = dict(os.environ, AUDIT_NO_PROGRESS="1", OMP_NUM_THREADS="1", AMNESIA_AUDIT_CACHE=str(tmp_path / "cache"),
               PYTHONWARNINGS="ignore::DeprecationWarning")
    for name in ("AUDIT_FAULT", "AUDIT_DEBUG"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's audit
    proc = subprocess.run(["bash", "-eu", "-c", snippet.shell()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == snippet.exit_code, f"{snippet.name}: exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("snippet", [s for s in ALL if s.runs and not s.slow], ids=lambda s: s.name)
def test_the_cheap_snippets_run(snippet, tmp_path):
    _run_for_real(snippet, tmp_path)
    if "--junit gate-junit.xml" in snippet.text:
        assert "<testsuite" in (tmp_path / "gate-junit.xml").read_text()


@pytest.mark.slow  # trains models: `make test-slow` and CI run it; `make test` stays within 5 minutes
@pytest.mark.parametrize("snippet", [s for s in ALL if s.runs and s.slow], ids=lambda s: s.name)
def test_the_slow_snippets_run(snippet, tmp_path):
    _run_for_real(snippet, tmp_path)
