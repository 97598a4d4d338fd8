"""The command line's own help (issue 11, item 11): every option says what it takes, nothing is
swallowed by markup, no Python type names stand in for what an option takes."""

from __future__ import annotations

import re

import pytest

from tests.cli_runner import run_audit

COMMANDS = ["train", "info", "unlearn", "run", "gate", "report", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_explained(command):
    proc = run_audit([command, "--help"], env={"COLUMNS": "120", "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "<list[" not in text and "<bool>" not in text
    options = re.findall(r"^\s+(--[\w-]+)(?:[ /][^\n]*)?$", text, flags=re.M)
    assert options
    for line in text.splitlines():
        match = re.match(r"^\s+(--[\w-]+)(\s+<\w+>|\s+[A-Z]+)?\s*$", line)
        assert match is None or match.group(1) == "--help", f"{command}: {line.strip()} has no help text"


def test_run_help_names_the_config_table_and_the_defaults():
    text = run_audit(["run", "--help"], env={"COLUMNS": "200", "PATH": ""}, timeout=120).stdout
    assert "tool.audit" in text  # rich markup used to swallow [tool.audit]
    flat = " ".join(text.split())  # the help wraps at the terminal's width
    for option, words in (("--data", "default: the one recorded"), ("--seed", "default 0"),
                          ("--method", "auto (default"), ("--alpha", "default 0.05"), ("--retrains", "default 3")):
        start = flat.index(f" {option} <")
        assert words in flat[start:start + 250], option


def test_gate_and_report_refuse_an_old_document_in_one_line(tmp_path):
    old = tmp_path / "results.json"
    old.write_text('{"schema": "amnesia-audit/results", "schema_version": 1, "verdict": "pass", "targets": []}')
    for args in (["gate", str(old)], ["report", str(old)]):
        proc = run_audit(args, timeout=120)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "schema_version 1" in lines[0], proc.stderr
