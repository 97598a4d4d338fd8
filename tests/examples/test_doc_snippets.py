"""Every snippet in README.md and docs/ci.md is executed by a test (issue 25, goal 2); docs/own-model.md's are
parsed.

The rule, for whoever writes a snippet there:

- Every fenced ``sh``, ``bash``, ``python``, ``toml`` or ``yaml`` block is checked: shell (a ``yaml``
  block's ``run:`` lines, the steps of a GitHub Actions job) is parsed by ``bash -n``, Python by
  ``compile``, TOML by ``tomllib``, and every ``audit ...`` command line (continuation lines joined,
  cut at a pipe, redirection, ``&&`` or ``;``) parses against the real command line.
- In README.md and docs/ci.md every such block also runs, so it carries a marker on the line before
  it: ``<!-- snippet: runs (exit N) -->`` runs in ``make test``, ``<!-- snippet: runs slow (exit N) -->``
  in ``make test-slow`` (it trains models or builds a package). ``N`` is what each command exits with,
  in order, separated by commas (``exit 0, 0|1, 0``: the second command may pass or fail); one value
  for a block of several commands means every command before the last exits 0.
- Every snippet runs in a fresh folder laid out like a user's repository (:func:`user_folder`): for a
  cheap one ``audit-out/results.json`` (a realistic results document); for a slow one the session's
  digits model as ``model.pt`` and ``models/model.pt`` (with its update log), a model unlearned from
  it as ``unlearned.pt``, ``deletion-requests.txt``, the user's own network code as ``src/mynet.py``
  with its weights ``weights.pt`` and the digits as ``data.npz``, and ``wheels/`` holding this
  checkout's wheel. Shell runs in ``bash -u`` (each command's exit status recorded), with this
  environment's ``audit``, ``python`` and ``pip`` first on PATH and ``src`` on PYTHONPATH.
- ``<!-- snippet: runs slow in a checkout (exit N) -->``: the block runs in a copy of this checkout's
  tracked files that uses this environment (``make demo``, building the wheel).
- Python runs in this test's own interpreter (torch is imported already; exit 1: it raised), with
  ``src`` on its path. A ``toml`` block is written as the folder's ``pyproject.toml`` and read as
  ``audit run`` reads it (:func:`read_as_settings`; exit 2: a key or value ``audit run`` refuses).
- A workflow (``yaml``) runs its ``run:`` lines, ``pip install`` included, with a fresh virtual
  environment first on PATH that sees this environment's packages (:func:`fresh_environment`), so
  pip installs the wheel into it without the network; its ``uses:`` steps (GitHub's actions) do not run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/ci.md", "docs/own-model.md"]
RUN_PAGES = ["README.md", "docs/ci.md"]  # every snippet of these runs (issue 25, goal 2)
MARKER = re.compile(r"<!-- snippet: runs( slow)?( in a checkout)? \(exit ([0-9|, ]+)\) -->\s*$")
LANGUAGES = ("sh", "bash", "python", "toml", "yaml")


@dataclass
class Snippet:
    page: str
    line: int  # of the opening fence
    language: str
    text: str
    runs: bool = False
    slow: bool = False
    in_checkout: bool = False
    exits: list[set[int]] = field(default_factory=list)  # as the marker says: per command, or the last one's

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    def shell(self) -> str:
        """The shell text: the block itself, or a yaml block's ``run:`` lines."""
        if self.language == "yaml":
            return "\n".join(m.group(1) for m in re.finditer(r"^\s*(?:-\s+)?run:\s*(.+)$", self.text, flags=re.M))
        return self.text if self.language in ("sh", "bash") else ""

    def expected(self, commands: int) -> list[set[int]]:
        """What each of ``commands`` commands must exit with."""
        if len(self.exits) == 1:
            return [{0}] * (commands - 1) + self.exits
        return self.exits


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
        if language in LANGUAGES:
            marker = MARKER.match(lines[i - 1].strip()) if i else None
            exits = [{int(code) for code in one.split("|")} for one in marker.group(3).split(",")] if marker else []
            text = textwrap.dedent("\n".join(lines[i + 1:end]))  # a block in a list item is indented
            found.append(Snippet(page, i + 1, language, text, runs=marker is not None,
                                 slow=bool(marker and marker.group(1)), in_checkout=bool(marker and marker.group(2)),
                                 exits=exits))
        i = end + 1
    return found


ALL = [s for page in PAGES for s in snippets(page)]
RUN = [s for s in ALL if s.runs]
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
    assert {s.language for s in ALL if s.page in RUN_PAGES} >= {"sh", "python", "toml", "yaml"}
    assert [s for s in RUN if not s.slow], "no snippet runs in make test"
    assert sum(len(audit_command_lines(s.shell())) for s in ALL) >= 10


def test_every_snippet_of_the_readme_and_the_ci_page_runs():
    """Issue 25's goal: none of them is only parsed."""
    assert [s.name for s in ALL if s.page in RUN_PAGES and not s.runs] == []


def test_the_marker_says_what_each_command_exits_with():
    marker = MARKER.match("<!-- snippet: runs slow (exit 0, 0|1, 2) -->")
    assert marker and marker.group(1) and not marker.group(2) and marker.group(3) == "0, 0|1, 2"
    one = Snippet("p", 1, "sh", "a\nb", exits=[{1}])
    assert one.expected(3) == [{0}, {0}, {1}]
    assert MARKER.match("<!-- snippet: runs slow in a checkout (exit 0) -->").group(2)
    assert MARKER.match("<!-- snippet: runs (exit x) -->") is None


@pytest.mark.parametrize("snippet", ALL, ids=lambda s: s.name)
def test_every_snippet_is_valid_and_every_audit_line_parses(snippet):
    if snippet.language == "python" and snippet.page in RUN_PAGES:  # own-model.md shows a bare signature
        compile(snippet.text, snippet.name, "exec")
    elif snippet.language == "toml":
        tomllib.loads(snippet.text)
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


def test_the_install_lines_work_outside_this_checkout():
    """amnesia-audit is not on PyPI: no snippet installs it from there, and the workflows install the wheel
    that the build snippet makes (the slow snippets run both)."""
    text = "\n".join(s.shell() for s in ALL)
    assert "-c constraints.txt" not in text  # this repository's file: a user's repository has none
    assert not re.search(r"pip install\s+['\"]?amnesia-audit\b", text), "amnesia-audit is not on PyPI"
    for workflow in (s for s in ALL if s.language == "yaml"):
        assert f"pip install {WHEEL_PATH}" in workflow.shell(), workflow.name
    assert any("pip wheel --no-deps --wheel-dir dist ." in s.text for s in ALL if s.in_checkout)
    ci = (ROOT / "docs" / "ci.md").read_text()
    assert "actions/cache@" in ci and "AMNESIA_AUDIT_CACHE" in ci and "--junit" in ci


# --- running them -------------------------------------------------------------------------------

WHEEL = "amnesia_audit-0.1.0-py3-none-any.whl"
WHEEL_PATH = f"wheels/{WHEEL}"
#: Each command's exit status, written to fd 3 before the next command runs (bash's DEBUG trap sees the
#: status of the command before), and once more after the last.
RECORD = 'exec 3>"$SNIPPET_STATUS"\ntrap \'echo $? >&3\' DEBUG\n'


def checkout_copy(folder: Path) -> Path:
    """This checkout's tracked files (times kept), using this environment as its ``.venv``."""
    stamp = Path(sys.prefix) / ".installed"
    assert stamp.exists() and all(stamp.stat().st_mtime >= (ROOT / f).stat().st_mtime
                                  for f in ("pyproject.toml", "constraints.txt")), "run `make venv` first"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(sys.prefix)
    return folder


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """This checkout's wheel, built as the ci.md snippet builds it (``pip wheel --no-deps``), in a copy."""
    from tests.conftest import once_for_all_workers

    def build(folder: Path) -> None:
        source = checkout_copy(folder / "checkout")
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(folder), "."],
                               cwd=source, capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr
        shutil.rmtree(source)

    return once_for_all_workers(tmp_path_factory, "wheel", build) / WHEEL


@pytest.fixture(scope="session")
def own_model(tmp_path_factory) -> Path:
    """The user's own code (examples/own_model/mynet.py), its weights trained by its own fit, the digits as npz."""
    from tests.conftest import once_for_all_workers

    def build(folder: Path) -> None:
        import numpy as np
        import torch
        from sklearn.datasets import load_digits

        sys.path.insert(0, str(ROOT / "examples" / "own_model"))
        try:
            from mynet import fit, make_net
        finally:
            sys.path.pop(0)
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[:, None]
        y = digits.target.astype(np.int64)
        np.savez(folder / "data.npz", x_train=x[:1300], y_train=y[:1300], x_test=x[1300:], y_test=y[1300:])
        model = fit(make_net(), torch.from_numpy(x[:1300]), torch.from_numpy(y[:1300]), seed=0)
        torch.save(model.state_dict(), folder / "weights.pt")
        shutil.copy2(ROOT / "examples" / "own_model" / "mynet.py", folder / "mynet.py")

    return once_for_all_workers(tmp_path_factory, "own-model", build)


@pytest.fixture(scope="session")
def unlearned_model(tmp_path_factory, digits_model) -> Path:
    """The session's digits model with class 3 unlearned (relabel): a model unlearned by "your own pipeline"."""
    from tests.cli_runner import run_audit
    from tests.conftest import once_for_all_workers

    def build(folder: Path) -> None:
        made = run_audit(["unlearn", digits_model, "--forget", "class=3", "--method", "relabel", "--out",
                          folder / "unlearned.pt", "--quiet"], folder)
        assert made.returncode == 0, made.stderr

    return once_for_all_workers(tmp_path_factory, "unlearned", build) / "unlearned.pt"


def user_folder(folder: Path, slow: bool, request: pytest.FixtureRequest) -> Path:
    """A user's repository as the snippets assume it (see the module's docstring)."""
    from tests.reports.report_documents import write_results

    folder.mkdir(parents=True, exist_ok=True)
    if not slow:  # a slow snippet runs its own audit into audit-out, which refuses a folder it did not write
        write_results(folder / "audit-out")
    else:
        shutil.copy2(request.getfixturevalue("unlearned_model"), folder / "unlearned.pt")
        model = request.getfixturevalue("digits_model")
        for target in (folder / "model.pt", folder / "models" / "model.pt"):
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(model, target)
            shutil.copytree(model.with_name(model.name + ".updates"), target.with_name(target.name + ".updates"))
        (folder / "deletion-requests.txt").write_text("".join(f"{i}\n" for i in range(0, 1300, 26)))
        own = request.getfixturevalue("own_model")
        (folder / "src").mkdir()
        shutil.copy2(own / "mynet.py", folder / "src" / "mynet.py")
        for name in ("weights.pt", "data.npz"):
            shutil.copy2(own / name, folder / name)
        (folder / "wheels").mkdir()
        shutil.copy2(request.getfixturevalue("wheel"), folder / WHEEL_PATH)
    return folder


def fresh_environment(folder: Path) -> Path:
    """A new virtual environment whose ``pip`` installs into it and that sees this environment's packages
    (a .pth file), so that a workflow's ``pip install`` lines resolve without the network; its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=300)
    python = folder / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "shared-with-the-test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = folder / "bin" / "pip"  # pip's own console script, run by the new environment's interpreter
    pip.write_text(f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
    pip.chmod(0o755)
    return folder / "bin"


def run_python(text: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``text`` run as a script in this test's interpreter (torch is imported already), in ``folder``."""
    import traceback

    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder / "src"))
    try:
        exec(compile(text, "<snippet>", "exec"), {"__name__": "__main__"})  # noqa: S102 - our own documentation
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else 1), ""
    except BaseException:  # noqa: BLE001 - any error of the snippet is its failure, reported whole
        return 1, traceback.format_exc()
    return 0, ""


def read_as_settings(text: str, folder: Path) -> tuple[int, str]:
    """A ``[tool.audit]`` table read as ``audit run`` reads it: the settings file, then every option checked."""
    from audit.config import load_config
    from audit.errors import InputError
    from audit.options import AuditOptions

    (folder / "pyproject.toml").write_text(text + "\n")
    try:
        settings, _ = load_config(folder / "pyproject.toml")
        forget = settings.pop("forget", ["class=3"])
        options = AuditOptions.from_flat(folder / "model.pt", forget, **settings)
        gates = options.validate()
    except InputError as exc:
        return 2, str(exc)
    assert len(gates) == len(tomllib.loads(text)["tool"]["audit"].get("fail_on", []))
    return 0, ""


def run_snippet(snippet: Snippet, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if snippet.language in ("python", "toml"):
        run = run_python if snippet.language == "python" else lambda text, at, _: read_as_settings(text, at)
        status, said = run(snippet.text, folder, monkeypatch)
        assert status in snippet.expected(1)[0], f"{snippet.name}: exit {status}\n{said}"
        return
    env = dict(os.environ, AUDIT_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning",
               PYTHONPATH="src", SNIPPET_STATUS=str(tmp_path / "status"))
    for name in ("AUDIT_FAULT", "AUDIT_FAULT_STOP", "AUDIT_DEBUG", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's audit and python
    if snippet.language == "yaml":
        env["PATH"] = f"{fresh_environment(tmp_path / 'venv')}{os.pathsep}{env['PATH']}"
    if snippet.in_checkout:
        # `make test` runs one small test file: the whole suite inside its own slow part would double its time.
        env["PYTEST_ADDOPTS"] = "tests/audit/test_import_graph.py"
    proc = subprocess.run(["bash", "-u", "-c", RECORD + snippet.shell() + "\ntrue\n"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1800)
    statuses = [int(line) for line in (tmp_path / "status").read_text().split()][1:]
    expected = snippet.expected(len(statuses))
    assert len(statuses) == len(expected) and all(s in e for s, e in zip(statuses, expected)), \
        f"{snippet.name}: commands exited {statuses}, expected {expected}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("snippet", [s for s in RUN if not s.slow], ids=lambda s: s.name)
def test_the_cheap_snippets_run(snippet, tmp_path, request, monkeypatch):
    run_snippet(snippet, user_folder(tmp_path / "repo", False, request), tmp_path, monkeypatch)
    if "--junit gate-junit.xml" in snippet.text:
        assert "<testsuite" in (tmp_path / "repo" / "gate-junit.xml").read_text()


@pytest.mark.slow  # trains models or builds a package: `make test-slow` and CI run it; `make test` stays within 5 min
@pytest.mark.parametrize("snippet", [s for s in RUN if s.slow], ids=lambda s: s.name)
def test_the_slow_snippets_run(snippet, tmp_path, request, monkeypatch):
    folder = checkout_copy(tmp_path / "repo") if snippet.in_checkout else user_folder(tmp_path / "repo", True, request)
    run_snippet(snippet, folder, tmp_path, monkeypatch)
    if "pip wheel" in snippet.text:
        assert (folder / "dist" / WHEEL).is_file()


@pytest.mark.parametrize("line", ['retrainz = 3', 'method = "autox"', 'alpha = 2.0'])
def test_a_settings_block_that_audit_run_refuses_exits_2(line, tmp_path):
    status, said = read_as_settings(f'[tool.audit]\nfail_on = ["residual_leakage_upper>0.5"]\n{line}', tmp_path)
    assert status == 2 and said
