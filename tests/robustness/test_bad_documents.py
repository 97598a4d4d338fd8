"""Issue 16, items 9 and 10: bad input exits 2 with one line, never 3 with a raw exception,
and never hangs: results documents that are pipes, devices, huge numbers or deep nesting;
an image path with a NUL byte; float8 weights; ``audit.evaluate`` given the wrong types.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.cli_runner import assert_one_line_failure, run_audit
from tests.reports.report_documents import build_document


@pytest.fixture()
def sound(tmp_path) -> dict:
    return build_document(tmp_path)


def _text_with(doc: dict, marker: str, replacement: str) -> str:
    """``doc`` as JSON with the string ``"marker"`` replaced by raw JSON text."""
    return json.dumps(doc).replace(json.dumps(marker), replacement)


@pytest.mark.parametrize("command", ["gate", "report"])
def test_a_400_digit_integer_is_refused(sound, tmp_path, command):
    sound["exit_code"] = "HUGE"
    (tmp_path / "r.json").write_text(_text_with(sound, "HUGE", "9" * 400))
    assert_one_line_failure(run_audit([command, "r.json"], tmp_path, in_process=True), 2, "beyond 64-bit integers")


def test_a_float_beyond_64_bits_is_refused(sound, tmp_path):
    sound["targets"][0]["p_value"] = "HUGE"
    (tmp_path / "r.json").write_text(_text_with(sound, "HUGE", "1e400"))
    assert_one_line_failure(run_audit(["gate", "r.json"], tmp_path, in_process=True), 2, "overflows a 64-bit float")


@pytest.mark.parametrize("depth", [200_000, 100])
def test_deep_nesting_is_refused(sound, tmp_path, depth):
    sound["notes"] = "DEEP"
    (tmp_path / "r.json").write_text(_text_with(sound, "DEEP", "[" * depth + "]" * depth))
    assert_one_line_failure(run_audit(["gate", "r.json"], tmp_path, in_process=True), 2, "nested")


@pytest.mark.parametrize("command", ["gate", "report"])
def test_a_device_or_a_fifo_in_place_of_results_json_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):  # a subprocess: a hang fails the test instead of stalling the suite
        run = run_audit([command, path], tmp_path, timeout=60)
        assert_one_line_failure(run, 2, "not a regular file")


def test_a_folder_in_place_of_results_json_is_refused(tmp_path):
    assert_one_line_failure(run_audit(["gate", str(tmp_path)], tmp_path, in_process=True), 2, "is a folder")


def test_a_nul_byte_in_an_image_path_is_refused(sound, tmp_path):
    sound["targets"][0]["inversion"]["original"]["images"][0] = "inversion/a\x00b.png"
    (tmp_path / "r.json").write_text(json.dumps(sound))
    for command in ("report", "gate"):
        assert_one_line_failure(run_audit([command, "r.json"], tmp_path, in_process=True), 2, "NUL byte")


def test_the_image_embedder_does_not_raise_on_a_nul_byte(tmp_path):
    from reports.images import embed

    assert embed("a\x00b.png", tmp_path).problem == "not a valid path, not embedded"


def test_float8_weights_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    from audit.models import build_model

    net = build_model("smallcnn", 1, 10, [0.0], [1.0]).net
    save_file({k: v.to(torch.float8_e4m3fn) if v.is_floating_point() else v for k, v in net.state_dict().items()},
              str(tmp_path / "w.safetensors"))
    run = run_audit(["info", "w.safetensors", "--arch", "smallcnn", "--data", "digits"], tmp_path, in_process=True)
    assert_one_line_failure(run, 2, "float8_e4m3fn", "convert the weights to float32")


@pytest.fixture(scope="module")
def in_memory(digits):
    from audit.models import build_model

    model = build_model("smallcnn", 1, digits.num_classes, [0.0], [1.0])
    return {"original": model, "train": (digits.x_train, digits.y_train),
            "held_out": (digits.x_test, digits.y_test)}


@pytest.mark.parametrize("forget, needle", [(3.5, "float 3.5"), ([3.5, 7], "float 3.5"), (3, "int 3"),
                                            ([True, False], "list"), (None, "NoneType")])
def test_evaluate_refuses_forget_values_of_the_wrong_type(in_memory, forget, needle):
    import audit
    from audit.errors import InputError

    with pytest.raises(InputError, match="forget must be") as info:
        audit.evaluate(**in_memory, forget=forget, reference="none", mia_attacks=["loss"], attacks=["mia"])
    assert needle in str(info.value)


def test_evaluate_refuses_float_ids_instead_of_truncating_them(in_memory):
    import numpy as np

    import audit
    from audit.errors import InputError

    with pytest.raises(InputError, match="forget must be"):
        audit.evaluate(**in_memory, forget=np.array([3.7, 17.2]), reference="none", mia_attacks=["loss"],
                       attacks=["mia"])


@pytest.mark.parametrize("factory", ["make_net", 3])
def test_evaluate_refuses_a_model_factory_that_is_not_a_function(in_memory, factory):
    import audit
    from audit.errors import InputError

    with pytest.raises(InputError, match="model_factory must be a function"):
        audit.evaluate(**in_memory, forget="class=3", model_factory=factory, recipe={"epochs": 1})


def test_evaluate_refuses_an_unknown_option(in_memory):
    import audit
    from audit.errors import InputError

    with pytest.raises(InputError, match="unknown option 'retrain'"):
        audit.evaluate(**in_memory, forget="class=3", retrain=2)
