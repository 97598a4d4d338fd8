"""Issue 11, items 2, 7, 8 and 10: data that would train a NaN model, allocate what it
merely claims, or fail half-way is refused with exit 2 before any work; training that
diverges stops with exit 3. Every refusal is one line and leaves nothing behind."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.data import load_dataset
from audit.errors import InputError
from unlearning import NonFiniteTraining, TrainConfig, fit

from tests.cli_runner import listing, refused, run_audit
from tests.dataset_files import write_cifar_pickle


@pytest.fixture(scope="module")
def digits_arrays():
    """The digits as (x_train, y_train, x_test, y_test) numpy arrays in [0, 1]."""
    ds = load_dataset("digits")
    return tuple(t.numpy().copy() for t in (ds.x_train[:, 0], ds.y_train, ds.x_test[:, 0], ds.y_test))


def _npz(path: Path, arrays, **replace) -> Path:
    names = ("x_train", "y_train", "x_test", "y_test")
    np.savez(path, **{**dict(zip(names, arrays)), **replace})
    return path


def _train(tmp_path: Path, data: str, *extra: str):
    before = listing(tmp_path)
    run = run_audit(["train", "--data", data, "--epochs", "1", "--out", "m.pt", *extra], tmp_path, in_process=True)
    return run, before


@pytest.mark.parametrize("where, value, needle", [
    ("x_train", np.nan, "NaN or infinite"),
    ("x_train", -np.inf, "NaN or infinite"),
    ("x_test", np.inf, "NaN or infinite"),
    ("x_train", -5.0, "pixel values run from -5"),
    ("x_test", 300.0, "to 300"),
])
def test_non_finite_or_out_of_range_pixels_are_refused(tmp_path, digits_arrays, where, value, needle):
    arrays = list(digits_arrays)
    i = {"x_train": 0, "x_test": 2}[where]
    arrays[i] = arrays[i].copy()
    arrays[i][3, 2, 2] = value
    _npz(tmp_path / "d.npz", arrays)
    run, before = _train(tmp_path, "npz:d.npz")
    refused(run, 2, "d.npz", where, needle)
    assert listing(tmp_path) == before


def test_a_label_of_ten_million_is_refused_before_a_layer_is_sized_by_it(tmp_path, digits_arrays):
    y = digits_arrays[1].copy()
    y[5] = 10_000_000
    _npz(tmp_path / "d.npz", digits_arrays, y_train=y)
    run, before = _train(tmp_path, "npz:d.npz")
    refused(run, 2, "y_train", "10000000", "at most 100,000 classes")
    assert listing(tmp_path) == before


def test_npz_whose_header_claims_a_billion_pixels_is_refused_before_loading(tmp_path, digits_arrays):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 8, 8)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("x_train.npy", header.getvalue() + bytes(256))  # 256 bytes where 256 GB are claimed
        for name, array in zip(("y_train", "x_test", "y_test"), digits_arrays[1:]):
            buf = io.BytesIO()
            np.save(buf, array)
            z.writestr(f"{name}.npy", buf.getvalue())
    run, before = _train(tmp_path, "npz:d.npz")
    refused(run, 2, "x_train claims shape (1000000000, 8, 8)")
    assert listing(tmp_path) == before


def test_text_pixels_and_one_pixel_images_are_refused(tmp_path, digits_arrays):
    x, y, xt, yt = digits_arrays
    _npz(tmp_path / "text.npz", digits_arrays, x_train=np.full(x.shape, "a"))
    _npz(tmp_path / "tiny.npz", digits_arrays, x_train=x[:, :1, :1], x_test=xt[:, :1, :1])
    refused(_train(tmp_path, "npz:text.npz")[0], 2, "x_train holds <U1 values")
    run, before = _train(tmp_path, "npz:tiny.npz")
    refused(run, 2, "images are 1x1 pixels", "at least 2x2")
    assert listing(tmp_path) == before


def _image_folder(root: Path, n: int = 3, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for cls in ("a", "b"):
            (root / part / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / part / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("damage, needle", [
    ("text", "is not a readable image"),
    ("corrupt", "is not a readable image"),
    ("empty-class", "holds no images"),
    ("one-pixel", "images are 1x1 pixels"),
])
def test_bad_image_folders_are_refused(tmp_path, damage, needle):
    from PIL import Image

    root = _image_folder(tmp_path / "imgs")
    bad = root / "train" / "a" / "0.png"
    if damage == "text":
        bad.write_text("not an image\n")
    elif damage == "corrupt":
        bad.write_bytes(bad.read_bytes()[:40])  # the PNG signature and header, then nothing
    elif damage == "empty-class":
        (root / "train" / "c").mkdir()
        bad = root / "train" / "c"
    else:
        for f in root.rglob("*.png"):
            Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(f)
    run, before = _train(tmp_path, f"folder:{root}")
    refused(run, 2, needle, *(() if damage == "one-pixel" else (str(bad.relative_to(tmp_path)),)))
    assert listing(tmp_path) == before


def test_cifar_batch_with_more_images_than_labels_is_refused(tmp_path):
    base = tmp_path / "cifar" / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n_labels = 3 if name == "data_batch_2" else 10
        write_cifar_pickle(base / name, {b"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8),
                                         b"labels": [int(v) for v in rng.integers(0, 10, n_labels)]})
    run, before = _train(tmp_path, "cifar10", "--data-root", "cifar")
    refused(run, 2, "data_batch_2 holds 10 images but 3 labels")
    assert listing(tmp_path) == before


def test_an_infinite_learning_rate_is_refused(tmp_path):
    run, before = _train(tmp_path, "digits", "--lr", "inf")
    refused(run, 2, "learning rate", "finite")
    assert listing(tmp_path) == before
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(lr=float("nan")).validate()


def test_training_that_diverges_stops_with_exit_3_and_writes_nothing(tmp_path):
    run, before = _train(tmp_path, "digits", "--lr", "1e30", "--record", "all")
    refused(run, 3, "NonFiniteTraining", "diverged", "lower the learning rate")
    assert listing(tmp_path) == before  # neither m.pt nor m.pt.updates(.partial)


def test_fit_raises_non_finite_training_on_real_data():
    from audit.models import build_model

    ds = load_dataset("digits")
    model = build_model("smallcnn", 1, 10, [0.3], [0.3], seed=0)
    with pytest.raises(NonFiniteTraining, match="loss became nan"):
        fit(model, ds.x_train[:256], ds.y_train[:256], TrainConfig(epochs=2, lr=1e30))
    assert issubclass(NonFiniteTraining, RuntimeError)


def test_an_architecture_that_cannot_take_the_input_is_refused_before_training(tmp_path):
    run, before = _train(tmp_path, "digits", "--arch", "vit_b_16")
    refused(run, 2, "--arch vit_b_16 cannot take 1x8x8 inputs")
    assert listing(tmp_path) == before


def test_good_npz_still_loads(tmp_path, digits_arrays):
    x, y, xt, yt = digits_arrays
    ds = load_dataset(f"npz:{_npz(tmp_path / 'd.npz', digits_arrays, x_train=x * 255, x_test=xt * 255)}")
    assert ds.num_classes == 10 and torch.allclose(ds.x_train[:, 0], torch.from_numpy(x), atol=1e-6)
    with pytest.raises(InputError, match="holds label -1"):
        load_dataset(f"npz:{_npz(tmp_path / 'neg.npz', digits_arrays, y_test=yt - 1)}")
