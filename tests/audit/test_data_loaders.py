"""``--data SPEC`` loaders on tiny files written here in torchvision's on-disk formats."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.data import load_dataset
from audit.errors import InputError


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


# --- digits -----------------------------------------------------------------------------------

def test_digits_split_is_fixed_and_recorded(digits):
    again = load_dataset("digits")
    assert digits.x_train.shape == (1348, 1, 8, 8) and digits.x_test.shape == (449, 1, 8, 8)
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    assert digits.sha256() == again.sha256()
    assert digits.describe()["split"]["seed"] == 0
    assert 0.0 <= float(digits.x_train.min()) and float(digits.x_train.max()) <= 1.0
    assert set(digits.y_train.tolist()) == set(range(10))


# --- MNIST and Fashion-MNIST (IDX) -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_idx_files_load_exactly(make_mnist, kind, gz):
    tiny = make_mnist(kind, gz=gz)
    ds = load_dataset(kind, str(tiny.root))
    assert ds.x_train.shape == (60, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32
    np.testing.assert_array_equal(_as_uint8(ds.x_train), tiny.x_train)
    np.testing.assert_array_equal(_as_uint8(ds.x_test), tiny.x_test)
    np.testing.assert_array_equal(ds.y_train.numpy(), tiny.y_train)
    np.testing.assert_array_equal(ds.y_test.numpy(), tiny.y_test)
    assert ds.num_classes == 10
    if kind == "fashion-mnist":
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_mnist_missing_files_name_them_and_where(tmp_path, make_mnist, kind):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as err:
        load_dataset(kind, str(empty))
    msg = str(err.value)
    assert "\n" not in msg
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in msg
    folder = "MNIST" if kind == "mnist" else "FashionMNIST"
    assert str(empty / folder / "raw") in msg

    # One file short of a full set is missing files too, not a crash.
    tiny = make_mnist(kind)
    (tiny.root / folder / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte"):
        load_dataset(kind, str(tiny.root))


def test_mnist_needs_data_root():
    with pytest.raises(InputError, match="--data-root"):
        load_dataset("mnist", None)


def test_truncated_idx_file_is_refused(make_mnist):
    tiny = make_mnist("mnist")
    images = tiny.root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated"):
        load_dataset("mnist", str(tiny.root))


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_train_on_mnist_through_the_cli(make_mnist, cli, tmp_path):
    tiny = make_mnist("mnist", gz=True)
    work = tmp_path / "work"
    work.mkdir()
    run = cli.run(["train", "--data", "mnist", "--data-root", str(tiny.root), "--epochs", "1", "--out", "m.pt"], work)
    assert run.returncode == 0, run.stderr
    assert "wrote m.pt" in run.stdout and "test accuracy" in run.stdout
    info = cli.run(["info", "m.pt", "--json"], work)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["input_shape"] == [1, 28, 28]
    assert doc["data"]["spec"] == "mnist" and doc["data"]["n_train"] == 60 and doc["data"]["n_test"] == 20
    assert doc["update_log"]["verified"] is True
    # The digest the model file records is the digest of the files it was trained on.
    assert doc["data"]["sha256"] == load_dataset("mnist", str(tiny.root)).sha256()


# --- CIFAR-10 and CIFAR-100 (pickled batches) ----------------------------------------------------

@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar10_batches_load_exactly(make_cifar, protocol):
    tiny = make_cifar("cifar10", protocol=protocol)
    ds = load_dataset("cifar10", str(tiny.root))
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(_as_uint8(ds.x_train), tiny.x_train)
    np.testing.assert_array_equal(_as_uint8(ds.x_test), tiny.x_test)
    np.testing.assert_array_equal(ds.y_train.numpy(), tiny.y_train)
    np.testing.assert_array_equal(ds.y_test.numpy(), tiny.y_test)
    assert ds.num_classes == 10
    assert ds.class_names[:3] == ["airplane", "automobile", "bird"]


def test_cifar100_files_load_exactly(make_cifar):
    tiny = make_cifar("cifar100")
    ds = load_dataset("cifar100", str(tiny.root))
    assert ds.num_classes == 100 and ds.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(_as_uint8(ds.x_train), tiny.x_train)
    np.testing.assert_array_equal(ds.y_train.numpy(), tiny.y_train)  # fine labels, not coarse
    np.testing.assert_array_equal(ds.y_test.numpy(), tiny.y_test)
    assert ds.class_names[0] == "fine0" and ds.class_names[99] == "fine99"


@pytest.mark.parametrize("kind, expected", [
    ("cifar10", ["data_batch_1", "data_batch_5", "test_batch", "cifar-10-batches-py"]),
    ("cifar100", ["train", "test", "cifar-100-python"]),
])
def test_cifar_missing_files_name_them_and_where(tmp_path, kind, expected):
    with pytest.raises(InputError) as err:
        load_dataset(kind, str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg
    for name in expected:
        assert name in msg


def test_malicious_cifar_batch_executes_nothing(make_cifar, marker_payload, tmp_path):
    tiny = make_cifar("cifar10")
    marker = tmp_path / "pwned-by-cifar"
    evil = {b"data": marker_payload(marker), b"labels": [0]}
    path = tiny.root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(pickle.dumps(evil, protocol=2))

    with pytest.raises(InputError) as err:
        load_dataset("cifar10", str(tiny.root))
    assert "data_batch_3" in str(err.value) and "refusing" in str(err.value)
    assert not marker.exists()

    # Control: the payload is live, a plain unpickle would have run it.
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_cifar_batch_with_wrong_shape_is_refused(make_cifar, cifar_pickle_writer):
    tiny = make_cifar("cifar10")
    cifar_pickle_writer(tiny.root / "cifar-10-batches-py" / "test_batch",
                        {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(InputError, match="3072"):
        load_dataset("cifar10", str(tiny.root))


def test_train_on_cifar10(make_cifar, tmp_path):
    """Three-channel 32x32 data trains end to end and lands in the model file."""
    from audit.modelfile import load_model
    from audit.training import train_model
    from unlearning import TrainConfig

    ds = load_dataset("cifar10", str(make_cifar("cifar10").root))
    res = train_model(ds, tmp_path / "c.pt", "smallcnn", TrainConfig(epochs=1, batch_size=8), record="all",
                      show_progress=False)
    assert res.log_batches == 4 == res.total_steps
    mf = load_model(tmp_path / "c.pt")
    assert mf.input_shape == (3, 32, 32) and mf.data["spec"] == "cifar10"
    assert len(mf.mean) == 3


# --- npz:PATH and folder:PATH ----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["NHW-uint8", "NHWC-uint8", "NCHW-float"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 3, 6, 6), dtype=np.uint8)
    if layout == "NHW-uint8":
        x = x[:, 0]
        stored, expected = x, x[:, None].astype(np.float32) / 255
    elif layout == "NHWC-uint8":
        stored, expected = x.transpose(0, 2, 3, 1), x.astype(np.float32) / 255
    else:
        stored = expected = x.astype(np.float32) / 255
    y = np.arange(12) % 4
    path = tmp_path / "d.npz"
    np.savez(path, x_train=stored[:8], y_train=y[:8], x_test=stored[8:], y_test=y[8:])
    ds = load_dataset(f"npz:{path}")
    np.testing.assert_allclose(ds.x_train.numpy(), expected[:8], atol=1e-6)
    np.testing.assert_allclose(ds.x_test.numpy(), expected[8:], atol=1e-6)
    assert ds.y_train.tolist() == y[:8].tolist() and ds.num_classes == 4
    assert ds.spec == f"npz:{path}"


def test_npz_problems_are_one_line(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4)), y_train=np.zeros(2))
    with pytest.raises(InputError, match="lacks arrays x_test, y_test"):
        load_dataset(f"npz:{path}")
    with pytest.raises(InputError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([object()] * 2), y_train=np.zeros(2), x_test=np.zeros((1, 2, 2)),
             y_test=np.zeros(1))
    with pytest.raises(InputError):
        load_dataset(f"npz:{objects}")


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_image_folder(tmp_path, mode):
    from PIL import Image

    rng = np.random.default_rng(5)
    expected = {}
    for part, n in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):  # labels follow sorted names: cat=0, dog=1
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(n):
                shape = (7, 7) if mode == "L" else (7, 7, 3)
                arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(arr, mode=mode).save(tmp_path / part / cls / f"{i}.png")
                expected[(part, cls, i)] = arr
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}")
    channels = 1 if mode == "L" else 3
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.x_train.shape == (6, channels, 7, 7) and ds.x_test.shape == (4, channels, 7, 7)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    first_dog = expected[("train", "dog", 0)]
    first_dog = first_dog[None] if mode == "L" else first_dog.transpose(2, 0, 1)
    np.testing.assert_array_equal(_as_uint8(ds.x_train[3]), first_dog)


def test_image_folder_without_test_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="train/ and test/"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize("spec", ["imagenet", "npz:", "folder:", "digits:extra", "mnist:x"])
def test_unknown_data_spec(spec):
    with pytest.raises(InputError, match="unknown data spec"):
        load_dataset(spec)


# --- Debian's Fashion-MNIST (the real-size data set), when installed ----------------------------

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                                          reason="apt-get install dataset-fashion-mnist (.ci/run installs it)")


@needs_debian_fashion
def test_fashion_mnist_is_found_in_debians_folder_without_data_root():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60_000, 1, 28, 28) and ds.x_test.shape == (10_000, 1, 28, 28)
    assert ds.root == str(DEBIAN_FASHION) and ds.class_names[9] == "Ankle boot"
    assert np.bincount(ds.y_train.numpy()).tolist() == [6000] * 10


@pytest.mark.slow  # five 28x28 trainings: `make test-slow` (CI runs it after `make test`)
@needs_debian_fashion
def test_a_slice_of_fashion_mnist_is_audited_against_the_pool(tmp_path):
    """Real images at 28x28 through the default architecture and the pool null, on a slice small enough
    for the suite: 1,200 training and 400 held-out images."""
    from audit.models import default_recipe
    from tests.cli_runner import run_audit

    ds = load_dataset("fashion-mnist")
    np.savez(tmp_path / "slice.npz", x_train=_as_uint8(ds.x_train[:1200])[:, 0], y_train=ds.y_train[:1200].numpy(),
             x_test=_as_uint8(ds.x_test[:400])[:, 0], y_test=ds.y_test[:400].numpy())
    arch, recipe = default_recipe("fashion-mnist")
    assert arch == "convnet"
    trained = run_audit(["train", "--data", "npz:slice.npz", "--arch", arch, "--epochs", "3", "--batch-size", "64",
                         "--lr", str(recipe["lr"]), "--lr-schedule", recipe["lr_schedule"], "--record", "none",
                         "--out", "m.pt", "--quiet"], tmp_path, in_process=True)
    assert trained.returncode == 0, trained.stderr
    proc = run_audit(["run", "m.pt", "--forget", "random=120@1", "--method", "none", "--reference-models", "4",
                      "--mia", "loss", "--attacks", "mia", "--format", "none", "--out", "out"], tmp_path,
                     in_process=True)
    [target] = json.loads((tmp_path / "out" / "results.json").read_text())["targets"]
    assert target["verdict"] in ("fail", "not_memorised", "inconclusive"), target["verdict_reason"]
    assert proc.returncode == (0 if target["verdict"] == "not_memorised" else 1)
    membership = next(t for t in target["tests"] if t["name"] == "membership")
    assert membership["detail"]["null"] == "pool" and membership["detail"]["n_forget"] == 120
    assert target["accuracy"]["original"]["test"] > 0.6  # convnet learns real 28x28 images
