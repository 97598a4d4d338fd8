"""Issue 11, items 7, 8 and 10: files built to hurt. Pickles that run code, zip bombs,
model files whose claims would allocate gigabytes, FIFOs and symlinks where files belong.
Each is refused with exit 2 and one line, runs nothing, allocates nothing it merely
claims, blocks on nothing, and leaves nothing behind."""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import signal
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from audit.atomic import atomic_dir
from audit.data import load_dataset
from audit.errors import InputError
from audit.modelfile import load_model
from audit.training import train_model
from reports.images import embed
from unlearning import TrainConfig

from tests.cli_runner import listing, refused, run_audit
from tests.dataset_files import MarkerPayload


@contextlib.contextmanager
def fails_fast(seconds: int = 20):
    """Turn a hang (a blocking open of a FIFO) into a test failure instead of a stuck suite."""
    def alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def model_doc(tmp_path_factory) -> dict:
    """The document of a real model.pt (digits, smallcnn, one epoch, no update log)."""
    path = tmp_path_factory.mktemp("doc") / "m.pt"
    train_model(load_dataset("digits"), path, "smallcnn", TrainConfig(epochs=1, seed=0), record="none",
                show_progress=False)
    return torch.load(path, weights_only=True)


def _info(folder: Path, name: str, *extra: str):
    before = listing(folder)
    with fails_fast():
        run = run_audit(["info", name, *extra], folder, in_process=True)
    return run, before


def test_a_bare_pickle_is_refused_in_one_line_without_torch_warnings(tmp_path):
    marker = tmp_path / "pwned"
    # Protocol 4: torch's weights-only unpickler warns about it, then fails on its FRAME opcode.
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": MarkerPayload(marker)}, protocol=4))
    before = listing(tmp_path)
    run = run_audit(["info", "evil.pt"], tmp_path, timeout=120)  # a subprocess: warnings reach stderr as users see them
    line = refused(run, 2, "refused: the file is a pickle that would run code on load", "--arch")
    assert "Unsupported operand" not in line and "Warning" not in run.stderr
    assert not marker.exists() and listing(tmp_path) == before


def test_a_torch_save_archive_with_a_reduce_payload_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "amnesia-audit/model", "state_dict": MarkerPayload(marker)}, tmp_path / "evil.pt")
    run, before = _info(tmp_path, "evil.pt")
    refused(run, 2, "refused", "full unpickle")
    assert not marker.exists() and listing(tmp_path) == before


def test_a_zip_bomb_posing_as_model_pt_is_refused_before_unpacking(tmp_path, model_doc):
    torch.save(model_doc, tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as src, \
            zipfile.ZipFile(tmp_path / "bomb.pt", "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with dst.open("archive/data/zeros", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(64):  # 64 MB of zeros in about 64 kB
                fh.write(chunk)
    (tmp_path / "good.pt").unlink()
    run, before = _info(tmp_path, "bomb.pt")
    refused(run, 2, "bomb.pt refused", "zip bomb")
    assert listing(tmp_path) == before


def _mutated(doc: dict, **fields) -> dict:
    out = copy.deepcopy(doc)
    for key, value in fields.items():
        if value is KeyError:
            out.pop(key)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("fields, needle", [
    ({"normalization": "abc"}, "field 'normalization'"),
    ({"num_classes": -3}, "field 'num_classes'"),
    ({"num_classes": 30_000_000}, "field 'num_classes'"),
    ({"state_dict": KeyError}, "field 'state_dict'"),
    ({"input_shape": [1, 100_000, 100_000]}, "field 'input_shape'"),
    ({"arch": None}, "field 'arch'"),
    ({"recipe": {"lr": "fast"}}, "field 'recipe'"),
    ({"update_log": {"dir": "../../elsewhere"}}, "field 'update_log'"),
    # Within the bounds, but the weights say otherwise: checked on the meta device, so the
    # 60000-wide network (tens of GB) is never built.
    ({"arch_args": {"width": 60_000}}, "features.0.weight has shape [16, 1, 3, 3] but needs [60000, 1, 3, 3]"),
    ({"num_classes": 99_999}, "head.3.weight has shape [10, 64] but needs [99999, 64]"),
])
def test_model_files_whose_fields_or_claims_are_wrong(tmp_path, model_doc, fields, needle):
    torch.save(_mutated(model_doc, **fields), tmp_path / "m.pt")
    run, before = _info(tmp_path, "m.pt")
    refused(run, 2, "m.pt", needle)
    assert listing(tmp_path) == before


def test_a_model_whose_weights_are_nan_is_refused(tmp_path, model_doc):
    sd = {k: v.clone() for k, v in model_doc["state_dict"].items()}
    sd["head.3.bias"][0] = float("nan")
    torch.save(_mutated(model_doc, state_dict=sd), tmp_path / "m.pt")
    run, before = _info(tmp_path, "m.pt")
    refused(run, 2, "NaN or infinite", "head.3.bias")
    assert listing(tmp_path) == before


def test_fifos_and_devices_where_a_model_file_belongs(tmp_path, model_doc):
    os.mkfifo(tmp_path / "fifo.pt")
    (tmp_path / "via-link.pt").symlink_to(tmp_path / "fifo.pt")
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    for name in ("fifo.pt", "via-link.pt", "zero.pt"):
        run, before = _info(tmp_path, name)
        refused(run, 2, name, "not a regular file")
        assert listing(tmp_path) == before
    # Control: a symlink to a real model file is followed.
    torch.save(model_doc, tmp_path / "real.pt")
    (tmp_path / "link.pt").symlink_to(tmp_path / "real.pt")
    assert load_model(tmp_path / "link.pt").num_classes == 10


def test_a_fifo_as_forget_ids_file(tmp_path, model_doc):
    torch.save(model_doc, tmp_path / "m.pt")
    os.mkfifo(tmp_path / "ids.txt")
    before = listing(tmp_path)
    with fails_fast():
        run = run_audit(["unlearn", "m.pt", "--forget", "samples=ids.txt", "--method", "relabel",
                         "--out", "u.pt"], tmp_path, in_process=True)
    refused(run, 2, "ids.txt is not a regular file")
    assert listing(tmp_path) == before


def test_a_fifo_in_place_of_an_inversion_image_does_not_block_the_report(tmp_path):
    os.mkfifo(tmp_path / "class3.png")
    with fails_fast():
        got = embed("class3.png", tmp_path)
    assert got.data_uri is None and "not a regular file" in got.problem


def test_a_fifo_named_like_an_image_in_a_folder_data_set_is_not_opened(tmp_path):
    from PIL import Image

    for part in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / part / cls).mkdir(parents=True)
            Image.new("L", (8, 8), 40 if cls == "a" else 200).save(tmp_path / part / cls / "0.png")
    os.mkfifo(tmp_path / "train" / "a" / "1.png")
    with fails_fast():
        ds = load_dataset(f"folder:{tmp_path}")
    assert len(ds.y_train) == 2
    os.unlink(tmp_path / "train" / "b" / "0.png")
    os.mkfifo(tmp_path / "train" / "b" / "0.png")
    with fails_fast(), pytest.raises(InputError, match="holds no images"):
        load_dataset(f"folder:{tmp_path}")


def test_atomic_folders_get_the_same_mode_as_files(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "inversion") as tmp:
            (tmp / "class3.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "inversion").stat().st_mode) == 0o755
