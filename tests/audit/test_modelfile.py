"""model.pt: a plain dictionary under ``weights_only``; TorchScript and bare state_dicts
load too; anything that needs a full unpickle is refused without running a byte of it."""

from __future__ import annotations

import json
import pickle
import warnings

import pytest
import torch

from audit.errors import InputError
from audit.modelfile import FORMAT, FORMAT_VERSION, load_model
from audit.models import build_model
from unlearning import accuracy


def test_toolkit_file_is_a_plain_weights_only_dictionary(acceptance_model):
    doc = torch.load(acceptance_model.path, map_location="cpu", weights_only=True)
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION
    for key in ("arch", "arch_args", "input_shape", "num_classes", "normalization", "data", "recipe", "seed",
                "state_dict", "update_log", "metrics"):
        assert key in doc, key
    assert doc["arch"] == "smallcnn" and doc["input_shape"] == [1, 8, 8] and doc["num_classes"] == 10
    assert doc["seed"] == 0 and doc["recipe"]["epochs"] == 20
    assert doc["data"]["spec"] == "digits" and doc["data"]["split"]["seed"] == 0
    assert all(isinstance(v, torch.Tensor) for v in doc["state_dict"].values())


def test_toolkit_file_round_trips(acceptance_model, digits):
    mf = load_model(acceptance_model.path)
    assert mf.kind == "toolkit" and mf.arch == "smallcnn"
    # The reloaded model predicts exactly as the one that was trained and measured.
    assert accuracy(mf.model, digits.x_test, digits.y_test) == pytest.approx(acceptance_model.info["test_accuracy"])


def _evil_files(tmp, marker_payload):
    marker = tmp / "pwned"
    zipped = tmp / "zipped.pt"
    torch.save({"format": FORMAT, "state_dict": marker_payload(marker)}, zipped)
    legacy = tmp / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"state_dict": marker_payload(marker)}, protocol=2))
    return marker, {"torch.save zip": zipped, "legacy pickle": legacy}


def test_malicious_model_file_executes_nothing(tmp_path, cli, marker_payload):
    marker, files = _evil_files(tmp_path, marker_payload)
    runs = {"torch.save zip": cli.run(["info", str(files["torch.save zip"])], tmp_path),
            "legacy pickle": cli.run(["info", str(files["legacy pickle"])], tmp_path, in_process=True)}
    for name, run in runs.items():
        line = cli.one_line_failure(run, 2, "refused", "full unpickle", "--arch")
        assert "io.open" in line or "builtins.open" in line, line
        assert "\x1b" not in line  # no terminal escape codes from torch's message
    for path in files.values():
        with pytest.raises(InputError, match="refused"):
            load_model(path)
    assert not marker.exists()

    # Control: the payload is live; a full unpickle would have created the marker.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(files["torch.save zip"], weights_only=False)
    assert marker.exists()


def test_whole_pickled_module_is_refused_with_conversion_advice(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(build_model("smallcnn", 1, 10, [0.0], [1.0], seed=0), path)
    with pytest.raises(InputError) as err:
        load_model(path)
    msg = str(err.value)
    assert "refused" in msg and "state_dict" in msg and "torch.jit.script" in msg and "\n" not in msg


@pytest.fixture(scope="module")
def foreign_files(tmp_path_factory):
    """A TorchScript archive and a bare state_dict of a trained-looking smallcnn."""
    tmp = tmp_path_factory.mktemp("foreign")
    model = build_model("smallcnn", 1, 10, [0.0], [1.0], seed=3)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(tmp / "model.ts"))
    torch.save(model.net.state_dict(), tmp / "weights.pt")
    return tmp, model


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_torchscript_and_state_dict_through_info(foreign_files, cli, digits):
    tmp, model = foreign_files
    expected = accuracy(model, digits.x_test, digits.y_test)
    runs = cli.run_many({
        "ts": (["info", "model.ts", "--data", "digits", "--json"], tmp),
        "sd": (["info", "weights.pt", "--arch", "smallcnn", "--data", "digits", "--json"], tmp),
    }, workers=2)
    runs.update({
        "sd-no-arch": cli.run(["info", "weights.pt", "--data", "digits"], tmp, in_process=True),
        "sd-wrong-arch": cli.run(["info", "weights.pt", "--arch", "resnet18", "--data", "digits"], tmp,
                                 in_process=True),
        "ts-text": cli.run(["info", "model.ts", "--data", "digits"], tmp, in_process=True),
    })
    for key in ("ts", "sd"):
        run = runs[key]
        assert run.returncode == 0, run.stderr
        assert run.stderr.strip() == "", run.stderr  # silence on success (no deprecation noise)
        doc = json.loads(run.stdout)
        assert doc["kind"] == {"ts": "torchscript", "sd": "state_dict"}[key]
        assert doc["input_shape"] == [1, 8, 8] and doc["num_classes"] == 10
        assert doc["test_accuracy"] == pytest.approx(expected)
        assert len(doc["per_class_test_accuracy"]) == 10
        assert doc["update_log"] is None
    assert "torchscript model" in runs["ts-text"].stdout
    # Without --arch a bare state_dict is described by its tensors, and the line says what would say more.
    assert runs["sd-no-arch"].returncode == 0, runs["sd-no-arch"].stderr
    assert runs["sd-no-arch"].stdout.startswith("weights.pt: bare state_dict, ") and "--arch" in runs["sd-no-arch"].stdout
    cli.one_line_failure(runs["sd-wrong-arch"], 2, "does not fit", "resnet18")


def test_bare_state_dict_loads_in_python(foreign_files, digits):
    tmp, model = foreign_files
    mf = load_model(tmp / "weights.pt", arch="smallcnn", input_shape=digits.input_shape, num_classes=10)
    assert mf.kind == "state_dict"
    for key, value in model.net.state_dict().items():
        assert torch.equal(mf.model.net.state_dict()[key], value), key
    x = digits.x_test[:16]
    assert torch.equal(mf.model(x).argmax(1), model(x).argmax(1))


def test_unreadable_model_files(tmp_path, cli, acceptance_model):
    good = acceptance_model.path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "text.pt").write_text("hello, I am not a model\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    names = ["truncated.pt", "garbage.pt", "text.pt", "empty.pt", "list.pt", "missing.pt"]
    before = sorted(p.name for p in tmp_path.iterdir())
    in_a_subprocess = {"truncated.pt", "garbage.pt"}
    runs = cli.run_many({n: (["info", n], tmp_path) for n in in_a_subprocess}, workers=2)
    runs.update({n: cli.run(["info", n], tmp_path, in_process=True) for n in names if n not in in_a_subprocess})
    for name, run in runs.items():
        line = cli.one_line_failure(run, 2, name)
        assert "refused" not in line, line  # damaged is not the same as dangerous
    assert sorted(p.name for p in tmp_path.iterdir()) == before
