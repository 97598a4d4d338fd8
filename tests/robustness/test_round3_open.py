"""Issue 23 (hardening, round 3), the items the first pass left open: a samples file's first
line, ids in other digits or of 5,000 digits, the Python API's checks, and the edges of
documents and configs. Most cases are refused before any work, in process and in well under
a second, on the embedded digits and the documents of ``tests/reports/report_documents.py``;
the Ray leftovers (a process Ray ends, ``--json`` beside Ray's lines) start a child process
or two, and those that start Ray are slow."""

from __future__ import annotations

import pytest

from audit.errors import InputError
from audit.forget import parse_forget


def _samples(digits, tmp_path, content: str | bytes):
    path = tmp_path / "ids.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return parse_forget(f"samples={path}", digits.y_train, digits.num_classes)


def _refused(call, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# Major 7: each of these was read as a header, and the first id (or the only one) was lost.
@pytest.mark.parametrize("content, token", [
    ("7x\n5\n6\n", "'7x'"),
    ("1.5\n5\n6\n", "'1.5'"),
    ("5\x00\n6\n", "'5\\x00'"),
    ("+5\n", "'+5'"),
    ("5\n6\n7x\n", "'7x'"),  # the same token on line 3 gave this already
])
def test_a_first_line_that_is_not_an_id_is_refused_not_taken_as_a_header(digits, tmp_path, content, token):
    _refused(lambda: _samples(digits, tmp_path, content), token, "is not a training id")


@pytest.mark.parametrize("content, ids", [
    ("id\n5\n6\n", [5, 6]),
    ('"id"\n5\n6\n', [5, 6]),
    ("label,id\n3,5\n3,6\n", [5, 6]),
    ("sample_id\n6\n5\n", [5, 6]),
    ("5\n6\n", [5, 6]),
])
def test_a_header_that_names_columns_is_still_a_header(digits, tmp_path, content, ids):
    assert _samples(digits, tmp_path, content).ids.tolist() == ids


def test_ids_in_other_digits_are_refused(digits, tmp_path):
    _refused(lambda: _samples(digits, tmp_path, "5\n\u0661\u0662\n"), "'١٢' is not a training id")
    _refused(lambda: parse_forget("class=\u0663", digits.y_train, digits.num_classes), "is not a whole number")
    _refused(lambda: parse_forget("random=5@\u0661", digits.y_train, digits.num_classes), "malformed forget spec")


def test_a_5000_digit_id_says_out_of_range_not_python_internals(digits, tmp_path):
    message = _refused(lambda: _samples(digits, tmp_path, "5\n" + "9" * 5000 + "\n"),
                       "out of range", "5,000 digits", "ids run from 0 to 1347")
    assert "set_int_max_str_digits" not in message and len(message) < 300
    message = _refused(lambda: parse_forget("class=" + "9" * 4000, digits.y_train, digits.num_classes),
                       "out of range", "classes 0..9")
    assert "set_int_max_str_digits" not in message and len(message) < 300


# Major 10: the Python API checks types and ranges with the CLI's messages.
@pytest.fixture(scope="module")
def in_memory(digits):
    from audit.models import build_model

    model = build_model("smallcnn", 1, digits.num_classes, [0.0], [1.0])
    return {"original": model, "train": (digits.x_train, digits.y_train),
            "held_out": (digits.x_test, digits.y_test)}


@pytest.mark.parametrize("model", [123, None, "torch.nn.Linear", "torch.nn.Sequential"])
def test_run_refuses_a_model_that_is_not_a_path(tmp_path, model):
    import torch

    import audit

    if isinstance(model, str):  # a network whose repr spans lines is still said on one
        model = torch.nn.Linear(2, 2) if model == "torch.nn.Linear" else torch.nn.Sequential(torch.nn.Linear(2, 2))
    _refused(lambda: audit.run(model, forget="class=3", out=None), "the model must be a model file's path",
             "audit.evaluate")


@pytest.mark.parametrize("options, needles", [
    ({"forget": 3}, ["forget must be a spec such as \"class=3\"", "not 3"]),
    ({"forget": [3]}, ["forget must be a spec", "not [3] (list)"]),
    ({"fail_on": None}, ["--fail-on must be a list of strings (or one string), not None (NoneType)"]),
    ({"data": 123}, ["--data must be a string, not 123"]),
    ({"out": 123}, ["--out must be a path", "not 123"]),
    ({"attacks": 5}, ["--attacks must be a list of strings (or one string), not 5"]),
    ({"mia_attacks": ["loss", 3]}, ["--mia must be a list of strings"]),
    ({"method": None}, ["--method must be a string, not None"]),
])
def test_run_says_which_option_has_the_wrong_type(tmp_path, options, needles):
    import audit

    options = {"forget": "class=3", "out": None, **options}
    _refused(lambda: audit.run(tmp_path / "missing.pt", **options), *needles)


@pytest.mark.parametrize("options", [{"fail_on": "p_value>0.5"}, {"attacks": "mia"}, {"mia_attacks": "loss,rmia"}])
def test_run_takes_one_string_as_the_cli_does(tmp_path, options):
    """A string is one gate, or names split at commas like --attacks mia,inversion: the run gets as far as the
    model file (before: "malformed gate 'p'" and "--attacks 'm,i,a'")."""
    import audit

    _refused(lambda: audit.run(tmp_path / "missing.pt", forget="class=3", out=None, **options), "missing.pt")


@pytest.mark.parametrize("change, needles", [
    ({"num_classes": "10"}, ["num_classes must be a whole number from 2 to 100000", "not '10' (str)"]),
    ({"num_classes": 5}, ["num_classes is 5 but the labels reach 9"]),
    ({"class_names": list(range(10))}, ["class_names must be a list of 10 strings"]),
    ({"recipe": 5}, ["recipe must be a TrainConfig or a dict of its fields, not int 5"]),
    ({"recipe": {"epochs": 1, "lr_rate": 0.1}}, ["recipe has an unknown key 'lr_rate'"]),
    ({"out": 123}, ["--out must be a path", "not 123"]),
    ({"unlearned": 5}, ["unlearned must be an nn.Module", "not int 5"]),
])
def test_evaluate_checks_its_arguments(in_memory, change, needles):
    import audit

    change = {"model_factory": (lambda: None) if "recipe" in change else None, **change}
    _refused(lambda: audit.evaluate(**in_memory, forget="class=3", **change), *needles)


def test_evaluate_refuses_text_arrays_and_float_labels(in_memory, digits):
    import numpy as np

    import audit

    text = np.array([["a"] * 64] * 8)
    _refused(lambda: audit.evaluate(**{**in_memory, "train": (text, digits.y_train[:8])}, forget="class=3"),
             "train images must be a tensor or array of numbers", "<U1")
    shifted = (digits.x_train, digits.y_train.float() + 0.5)  # truncated to the same classes before
    _refused(lambda: audit.evaluate(**{**in_memory, "train": shifted}, forget="class=3"),
             "train: labels must be whole class indices")
    huge = digits.y_train.clone()
    huge[0] = 10**12  # 10^12 class names were built before
    _refused(lambda: audit.evaluate(**{**in_memory, "train": (digits.x_train, huge)}, forget="class=3"),
             "at most 100,000 classes")


@pytest.mark.parametrize("cast", ["double", "half", "meta"])
def test_evaluate_refuses_a_model_that_is_not_float32_on_the_cpu(in_memory, cast):
    import copy

    import audit

    model = copy.deepcopy(in_memory["original"])
    model = model.to("meta") if cast == "meta" else getattr(model, cast)()
    dtype = {"double": "float64", "half": "float16", "meta": "float32"}[cast]
    _refused(lambda: audit.evaluate(**{**in_memory, "original": model}, forget="class=3"),
             f"original holds {dtype} weights", "pass model.float().cpu()")


def test_evaluate_says_a_failing_forward_in_one_line(in_memory):
    import copy

    import audit

    model = copy.deepcopy(in_memory["original"])

    def hook(module, args):
        raise RuntimeError("hook\nsays no")

    model.register_forward_pre_hook(hook)
    _refused(lambda: audit.evaluate(**{**in_memory, "original": model}, forget="class=3"),
             "original's forward pass on", "raised RuntimeError: hook says no", "(N, 10) logits")


def test_evaluate_puts_the_callers_model_back_in_training_mode(in_memory):
    import audit

    model = in_memory["original"]
    model.train()
    _refused(lambda: audit.evaluate(**in_memory, forget="class=3", alpha="0.05"), "--alpha must be a number")
    assert model.training
    model.eval()
    _refused(lambda: audit.evaluate(**in_memory, forget="class=3", alpha="0.05"), "--alpha must be a number")
    assert not model.training


def test_evaluate_refuses_a_factory_of_another_network_or_of_the_trained_one(in_memory):
    import torch

    import audit

    original = in_memory["original"]
    _refused(lambda: audit.evaluate(**in_memory, forget="class=3", model_factory=lambda: torch.nn.Linear(64, 10)),
             "model_factory builds a Linear that is not the original's architecture")
    _refused(lambda: audit.evaluate(**in_memory, forget="class=3", model_factory=lambda: original),
             "model_factory returns the trained original itself")


def test_load_results_refuses_a_path_that_is_not_one():
    from reports import ReportError, load_results

    with pytest.raises(ReportError, match="must be a path"):
        load_results(123)


# Major 9 and minor: the reference-model cache.
def test_a_cache_that_is_a_file_is_bad_input_before_any_work(in_memory, tmp_path, monkeypatch):
    import audit
    from audit.models import build_model

    trainable = {**in_memory, "model_factory": lambda: build_model("smallcnn", 1, 10, [0.0], [1.0]),
                 "recipe": {"epochs": 1}}
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("AMNESIA_AUDIT_CACHE", str(tmp_path / "cache"))
    _refused(lambda: audit.evaluate(**trainable, forget="class=3"), "the reference-model cache",
             "(AMNESIA_AUDIT_CACHE) is a file", "name a folder")
    _refused(lambda: audit.evaluate(**trainable, forget="class=3", cache_dir=tmp_path / "cache" / "below"),
             "(--cache-dir) lies under", "which is a file")


def test_a_cache_that_cannot_be_written_is_one_warning_not_a_failed_step():
    import warnings

    import numpy as np
    import torch

    from attacks.reference import ReferenceCache, load_or_train

    cache = ReferenceCache("/proc/amnesia-audit-cache", lambda: torch.nn.Linear(2, 2), "key")  # mkdir fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            model, cached = load_or_train(lambda ids, seed: torch.nn.Linear(2, 2), np.arange(4), seed, cache)
            assert isinstance(model, torch.nn.Linear) and not cached
    said = [str(w.message) for w in caught if "could not keep reference models" in str(w.message)]
    assert len(said) == 1 and "/proc/amnesia-audit-cache" in said[0], said


# Major 9: a Ray instance that ends the audit's process (its raylet gone) is exit 3 with one line.
_SUPERVISED = """
import os, sys
from audit.supervise import run_supervised
def body():
    print("progress line on stdout", flush=True)
    if sys.argv[1] == "native-exit":  # what Ray's C++ core does when its raylet dies
        os.write(2, b"[2026-12-07 16:35:29,190 E 732 732] core_worker_process.cc:247: Failed to register worker\\n")
        os._exit(1)
    if sys.argv[1] == "other-native":
        os.write(2, b"a native library's own message\\n")
    sys.exit(int(sys.argv[2]))
run_supervised(body, lambda line: print("error: " + line, file=sys.stderr))
"""


@pytest.mark.parametrize("mode, code", [("native-exit", 3), ("exit", 1), ("exit", 0), ("other-native", 2)])
def test_a_process_ended_by_native_code_is_exit_3_with_one_line(tmp_path, mode, code):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _SUPERVISED, mode, str(code)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == code, run.stderr
    assert "progress line on stdout" in run.stdout
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    if mode == "native-exit":
        assert len(lines) == 1 and lines[0].startswith("error: the audit's process exited with status 1"), lines
        assert "Failed to register worker" in lines[0] and "--executor local" in lines[0]
    elif mode == "other-native":
        assert lines == ["a native library's own message"]  # passed on, not swallowed
    else:
        assert lines == []


@pytest.mark.parametrize("argv, expected", [
    (["run", "m.pt", "--executor", "ray"], True), (["run", "m.pt", "--executor=ray"], True),
    (["run", "m.pt"], False), (["gate", "r.json", "--executor", "ray"], False),
])
def test_runs_on_ray_are_supervised(tmp_path, monkeypatch, argv, expected):
    from audit.supervise import wants_ray

    monkeypatch.chdir(tmp_path)
    assert wants_ray(argv) is expected
    (tmp_path / "audit.toml").write_text('executor = "ray"\n')
    assert wants_ray(["run", "m.pt"]) and not wants_ray(["run", "m.pt", "--isolated"])


# Minor: files that are not regular files are said to be so, not "not found".
@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_config_or_npz_that_is_no_regular_file_is_said_to_be_so(tmp_path, kind):
    import os

    from tests.cli_runner import assert_one_line_failure, run_audit

    path = {"device": "/dev/zero"}.get(kind, str(tmp_path / "odd"))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        os.mkdir(path)
    gate = run_audit(["gate", "r.json", "--config", path], tmp_path, in_process=True)
    assert_one_line_failure(gate, 2, f"config file {path} is not a regular file")
    run = run_audit(["run", "missing.pt", "--forget", "class=3", "--data", f"npz:{path}", "--isolated"], tmp_path,
                    in_process=True)
    assert_one_line_failure(run, 2, f"npz file {path} is not a regular file")


@pytest.mark.slow  # trains a small model and starts Ray: about a minute
def test_a_ray_instance_that_ends_the_audit_is_exit_3_with_one_line(tmp_path):
    """The whole command: Ray started, then the driving process ended from native code (``AUDIT_FAULT=ray-exit``
    ends it with status 1 and no clean-up, as Ray's core does when an agent killed at start-up takes the raylet
    along; killing the agent by hand gave the same line, quoting Ray's "Failed to register worker to Raylet")."""
    from tests.cli_runner import assert_one_line_failure, run_audit, train

    assert train(tmp_path, "m.pt", "--record", "none", epochs=2).returncode == 0
    run = run_audit(["run", "m.pt", "--forget", "random=0.1@2", "--method", "none", "--attacks", "mia", "--mia",
                     "loss", "--format", "none", "--executor", "ray", "--out", "out"], tmp_path,
                    env={"AUDIT_FAULT": "ray-exit", "AMNESIA_AUDIT_CACHE": str(tmp_path / "cache")})
    assert_one_line_failure(run, 3, "the audit's process exited with status 1 without finishing",
                            "its Ray instance failed", "use --executor local")
    assert not (tmp_path / "out").exists()


# Issue 23's leftover: under --json, stdout holds the document alone, whatever else prints while the command works.
_CHATTY_FACTORY = """
import os
import torch


def make():
    print("the factory's own print")
    os.write(1, b"a native write to stdout\\n")
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


def test_json_output_is_the_document_alone_though_user_code_prints(tmp_path):
    import json

    import torch

    from tests.cli_runner import run_audit

    (tmp_path / "chatty.py").write_text(_CHATTY_FACTORY)
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).state_dict(), tmp_path / "w.pt")
    run = run_audit(["info", "w.pt", "--arch", "chatty:make", "--code-path", ".", "--data", "digits", "--json"],
                    tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["kind"] == "state_dict"  # nothing but the document
    assert "the factory's own print" in run.stderr and "a native write to stdout" in run.stderr


@pytest.mark.slow  # trains two reference models on a Ray instance it starts: a minute or more
def test_json_output_on_ray_keeps_rays_raylet_lines_off_stdout(tmp_path):
    """A Ray worker that dies is retried, and Ray's driver prints ``(raylet)`` lines about it to stdout
    (``log_to_driver=False`` does not stop them); under --json they go to stderr."""
    import json

    from tests.cli_runner import run_audit, train

    assert train(tmp_path, "m.pt", "--record", "none", epochs=2).returncode == 0
    run = run_audit(["run", "m.pt", "--forget", "random=0.1@2", "--method", "none", "--attacks", "mia", "--mia",
                     "loss", "--reference-models", "2", "--format", "none", "--executor", "ray", "--out", "out",
                     "--json"], tmp_path,
                    env={"AUDIT_FAULT": "worker-exit-once", "AUDIT_FAULT_DIR": str(tmp_path / "faults"),
                         "AMNESIA_AUDIT_CACHE": str(tmp_path / "cache")}, timeout=900)
    assert run.returncode in (0, 1), run.stderr
    assert len(list((tmp_path / "faults").glob(".fault-*"))) == 2  # both tasks' workers died once
    assert "(raylet)" in run.stderr and "(raylet)" not in run.stdout
    assert json.loads(run.stdout) == json.loads((tmp_path / "out" / "results.json").read_text())


# Issue 23's leftover: the Python API on Ray. The part that drives Ray runs in a child process
# (audit.supervise.audit_in_child); tests/robustness/ray_child_bodies.py stands in for what it runs.
# make test keeps the case the child exists for; each other one starts an interpreter of its own too.
@pytest.mark.parametrize("mode", ["native-exit", pytest.param("bad-input", marks=pytest.mark.slow),
                                  pytest.param("raises", marks=pytest.mark.slow),
                                  pytest.param("finishes", marks=pytest.mark.slow)])
def test_the_api_child_that_drives_ray_reports_or_fails_as_a_step(tmp_path, capfd, mode):
    import json

    from audit.errors import StepError
    from audit.supervise import audit_in_child
    from tests.robustness.ray_child_bodies import body

    results = tmp_path / "results.json"
    call = lambda: audit_in_child(body, (mode, str(results)))  # noqa: E731
    if mode == "native-exit":  # the caller's process lives on, with one line naming Ray's error
        message = _failed(call, StepError)
        assert message.startswith("the audit's process exited with status 1 without finishing"), message
        assert "Failed to register worker" in message and "executor 'local'" in message
    elif mode == "bad-input":
        assert _failed(call, InputError) == "--ray-address 'x' is not HOST:PORT or auto"
    elif mode == "raises":
        assert _failed(call, StepError) == "RuntimeError: a bug over two lines"
    else:
        from reports import load_results
        from tests.reports.report_documents import build_document

        results.write_text(json.dumps(build_document(tmp_path / "images")))
        doc, files = call()
        assert doc == load_results(results) and files == [results]
        out, err = capfd.readouterr()
        assert "(raylet)" not in out and "(raylet)" in err  # the caller's stdout is left alone


def _failed(call, error: type) -> str:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error and "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.slow  # starts Ray twice and trains two reference models: a minute or more
def test_the_python_api_on_ray_survives_rays_native_exit(tmp_path, monkeypatch):
    import json

    import audit
    from audit.errors import StepError
    from tests.cli_runner import train

    assert train(tmp_path, "m.pt", "--record", "none", epochs=2).returncode == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMNESIA_AUDIT_CACHE", str(tmp_path / "cache"))
    options = dict(method="none", attacks=["mia"], mia_attacks=["loss"], reference_models=2, formats=[],
                   executor="ray")
    result = audit.run("m.pt", "random=0.1@2", out="out", **options)
    assert result.exit_code in (0, 1) and result.document.provenance.executor["executor"] == "ray"
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert json.loads(result.document.to_json()) == written
    monkeypatch.setenv("AUDIT_FAULT", "ray-exit")  # Ray's native core ends the process that drives it
    with pytest.raises(StepError, match="exited with status 1 without finishing: its Ray instance failed"):
        audit.run("m.pt", "random=0.1@2", out="again", **options)
    assert not (tmp_path / "again").exists()
