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
    options = re.findall(r"^\s+(?:-\w, )?(--[\w-]+)(?:[ /][^\n]*)?$", text, flags=re.M)
    assert options
    for line in text.splitlines():
        match = re.match(r"^\s+(?:-\w, )?(--[\w-]+)(\s+\S+)?\s*$", line)
        # A long choice list ([auto|amnesiac|...]) puts the help on the next line, indented.
        nxt = text.splitlines()[text.splitlines().index(line) + 1] if match else ""
        assert match is None or match.group(1) == "--help" or re.match(r"^\s{20,}\S", nxt), \
            f"{command}: {line.strip()} has no help text"
    # What each option takes, in click's words (INTEGER, PATH, a [a|b] choice), never a Python type.
    assert not re.search(r"^\s+(?:-\w, )?--[\w-]+ <\w+>", text, flags=re.M), text


def test_run_help_names_the_config_table_and_the_defaults():
    text = run_audit(["run", "--help"], env={"COLUMNS": "200", "PATH": ""}, timeout=120).stdout
    assert "tool.audit" in text  # rich markup used to swallow [tool.audit]
    flat = " ".join(text.split())  # the help wraps at the terminal's width
    for option, words in (("--data", "default: the one recorded"), ("--seed", "default 0"),
                          ("--method", "auto (default"), ("--alpha", "default 0.05"), ("--retrains", "default 3")):
        start = flat.index(f" {option} ")
        assert words in flat[start:start + 250], option


def test_gate_and_report_refuse_an_old_document_in_one_line(tmp_path):
    old = tmp_path / "results.json"
    old.write_text('{"schema": "amnesia-audit/results", "schema_version": 1, "verdict": "pass", "targets": []}')
    for args in (["gate", str(old)], ["report", str(old)]):
        proc = run_audit(args, timeout=120)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "schema_version 1" in lines[0], proc.stderr


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        proc = run_audit([flag], in_process=True)
        assert proc.returncode == 0 and proc.stdout.strip() == f"audit (amnesia-audit) {version('amnesia-audit')}"


def test_the_top_help_gives_every_summary_whole():
    text = run_audit(["--help"], env={"COLUMNS": "80"}, in_process=True).stdout
    assert "..." not in text.split("Commands:")[1] and "-h, --help" in text and "--version" in text
    flat = " ".join(text.split())
    assert "Re-apply the verdicts and gates to an earlier run's results.json, recomputing every test." in flat
    assert "architecture, data, recipe, accuracy, update log." in flat


@pytest.mark.parametrize("command, shorts", [("run", ["-f, --forget SPEC", "-o, --out DIR", "-q, --quiet"]),
                                              ("train", ["-o, --out PATH", "-q, --quiet"]),
                                              ("unlearn", ["-f, --forget SPEC", "-o, --out PATH", "-q, --quiet"]),
                                              ("gate", ["-q, --quiet"]), ("report", ["-o, --out DIR"])])
def test_common_options_have_short_flags_and_choices_are_listed(command, shorts):
    text = run_audit([command, "-h"], env={"COLUMNS": "200"}, in_process=True).stdout
    for short in shorts:
        assert short in text, (command, short)
    shorts_used = re.findall(r"^\s+(-\w), --", text, flags=re.M)
    assert len(shorts_used) == len(set(shorts_used)), shorts_used  # no clash
    assert "{model}" not in text and "<str>" not in text and "<int>" not in text
    usage = text.splitlines()[0]
    assert "{" not in usage and usage.startswith(f"Usage: audit {command} [OPTIONS]"), usage
    if command in ("run", "unlearn"):
        assert usage.endswith(" MODEL"), usage
        assert re.search(r"^  MODEL  \S", text, flags=re.M), text  # the argument by its metavar, no <path>
    if command == "run":
        for choice in ("--method [auto|amnesiac|relabel|finetune|retrain|none]", "--inconclusive [fail|pass]",
                       "--executor [local|ray]", "--reference [auto|pool|retrain|none]", "--seed INTEGER",
                       "--alpha FLOAT"):
            assert choice in text, choice


def test_short_flags_work_like_the_long_ones(tmp_path):
    proc = run_audit(["run", str(tmp_path / "missing.pt"), "-f", "class=3", "-o", str(tmp_path / "o"), "-q"],
                     in_process=True)
    assert proc.returncode == 2 and "missing.pt not found" in proc.stderr, proc.stderr
