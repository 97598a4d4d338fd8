"""Issue 16, item 13: runs that share a reference cache, and Ray, under kills and signals.

Two ``audit run`` processes share ``AMNESIA_AUDIT_CACHE``; one is killed with SIGKILL in
the middle of writing a cache entry (its file half-written on disk). The other finishes
as it would alone, and a third run reuses every entry with the same figures. A Ray run
interrupted by SIGTERM exits 143 with one line, leaves no Ray process behind and the
cache readable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from attacks.reference import state_digest

from tests.cli_runner import MAIN, run_audit, start_audit, train

RUN = ["run", "m.pt", "--forget", "class=3", "--method", "none", "--attacks", "mia", "--mia", "loss",
       "--reference-models", "3", "--retrains", "1", "--format", "none", "--inconclusive", "pass"]

# A run that dies (SIGKILL, no clean-up) in the middle of writing its second cache entry:
# the entry's temporary file holds half of its bytes when the process ends.
DIES_MID_WRITE = """
import os, signal, sys
import attacks.reference as reference
real_save = reference.save_file
MAIN = os.getpid()  # the audit; entries may be saved by its forked training workers
COUNT = os.path.join(__import__("tempfile").gettempdir(), "audit-saves-" + str(MAIN))
def save_then_die(state, path, metadata=None):
    real_save(state, path, metadata=metadata)
    with open(COUNT, "a") as fh:  # one line per save, whichever process made it
        fh.write("x" + chr(10))
    with open(COUNT) as fh:
        saves = len(fh.readlines())
    if saves == 2:
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
        os.kill(MAIN, signal.SIGKILL)  # the whole run, mid-write; its workers die with it
        os.kill(os.getpid(), signal.SIGKILL)
reference.save_file = save_then_die
from audit.cli import main
sys.argv = ["audit", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("shared-cache")
    res = train(work, "m.pt", "--record", "none", epochs=2)
    assert res.returncode == 0, res.stderr
    return work


def _popen(args: list[str], cwd: Path, env: dict, script: str | None = None) -> subprocess.Popen:
    # Every run through ``python -c``, so that the killed run and the survivor start alike and race
    # for the cache on equal terms.
    return start_audit(args, cwd, env=env, script=script or MAIN, start_new_session=True)


def _figures(out: Path) -> tuple:
    doc = json.loads((out / "results.json").read_text())
    [target] = doc["targets"]
    refs = doc["provenance"]["reference_models"]
    return refs["digests"], [r["digest"] for r in target["retrains"]], target["p_value"], target["power_p_value"]


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_a_run_killed_mid_write_does_not_hurt_a_concurrent_run_or_the_next(model_folder, tmp_path):
    cache = tmp_path / "cache"
    env = {"AMNESIA_AUDIT_CACHE": str(cache)}
    killed = _popen([*RUN, "--out", str(tmp_path / "killed")], model_folder, env, DIES_MID_WRITE)
    # The survivor starts once the killed run has cached its first model: had the survivor got ahead
    # (a busy machine, another test worker), the killed run would load its models instead of saving.
    deadline = time.monotonic() + 300
    while killed.poll() is None and not list(cache.glob("*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivor = _popen([*RUN, "--out", str(tmp_path / "survivor")], model_folder, env)
    _, err_killed = killed.communicate(timeout=300)
    _, err_survivor = survivor.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err_killed
    assert survivor.returncode == 1, err_survivor  # the no-op control fails, as it must
    assert not (tmp_path / "killed" / "results.json").exists()
    # Every entry under its final name is whole: it reads, and its tensors match the digest stored with it.
    entries = sorted(cache.glob("*.safetensors"))
    assert len(entries) >= 2
    for entry in entries:
        with safe_open(str(entry), framework="pt") as fh:
            stored = fh.metadata()["sha256"]
        assert state_digest(load_file(str(entry))) == stored, entry
    # The next run finds every model in the cache (the killed run's half-written file is never read)
    # and reaches the survivor's figures exactly.
    proc = run_audit([*RUN, "--out", tmp_path / "next"], model_folder, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    doc = json.loads((tmp_path / "next" / "results.json").read_text())
    assert all(doc["provenance"]["reference_models"]["from_cache"])
    assert all(r["from_cache"] for r in doc["targets"][0]["retrains"])
    assert _figures(tmp_path / "next") == _figures(tmp_path / "survivor")


def _processes_with(marker: str) -> list[str]:
    """Command lines of live processes whose environment holds ``marker`` (Ray's daemons and
    workers inherit the audit's environment, whatever session or parent they end up with)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120])
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_ray_run_interrupted_by_sigterm_leaves_no_ray_process(model_folder, tmp_path):
    pytest.importorskip("ray")
    cache = tmp_path / "cache"
    marker = f"AUDIT_TEST_RAY_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    env = {"AMNESIA_AUDIT_CACHE": str(cache), key: value}
    run = _popen([*RUN, "--reference-models", "8", "--executor", "ray", "--out", str(tmp_path / "out")],
                 model_folder, env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:  # interrupt once Ray trains (an entry is written)
        if list(cache.glob("*.safetensors")):
            break
        time.sleep(0.2)
    assert run.poll() is None, run.communicate()[1]
    assert _processes_with(marker), "Ray did not start"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["error: interrupted by SIGTERM; files being written were removed, earlier outputs are as they "
                     "were"], err
    left: list[str] = []
    for _ in range(50):  # Ray's daemons stop within seconds of the shutdown
        left = _processes_with(marker)
        if not left:
            break
        time.sleep(0.2)
    assert not left, left
    assert not list(cache.glob("*.tmp")) and not (tmp_path / "out" / "results.json").exists()
    for entry in cache.glob("*.safetensors"):
        with safe_open(str(entry), framework="pt") as fh:
            assert state_digest(load_file(str(entry))) == fh.metadata()["sha256"], entry
