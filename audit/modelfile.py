"""``model.pt``: a plain dictionary that loads with ``torch.load(weights_only=True)``.

Keys: ``format``, ``format_version``, ``arch``, ``arch_args``, ``input_shape``,
``num_classes``, ``normalization`` (mean, std), ``data`` (spec, split, digest), ``recipe``,
``seed``, ``metrics``, ``update_log`` (where the amnesiac log is and its checksum),
``lineage`` (for unlearned models: parent file, method, what was forgotten) and
``state_dict``. TorchScript archives, and bare state_dicts together with ``--arch``,
load too. Nothing that needs a full unpickle is ever loaded: it could run code.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unlearning import TrainFunction

from audit.atomic import atomic_path
from audit.errors import InputError
from audit.models import Classifier, build_model

FORMAT = "amnesia-audit/model"
FORMAT_VERSION = 1


@dataclass
class ModelFile:
    """A loaded model and what its file says about it."""

    model: nn.Module
    arch: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: list[float]
    std: list[float]
    arch_args: dict = field(default_factory=dict)
    data: dict | None = None
    recipe: dict | None = None
    seed: int | None = None
    metrics: dict = field(default_factory=dict)
    update_log: dict | None = None
    lineage: dict | None = None
    kind: str = "toolkit"  # toolkit | torchscript | state_dict | memory
    path: Path | None = None
    # The user's own code, chosen by them (--arch package.module:factory, --train package.module:fit,
    # or audit.evaluate): never code carried in a model file. Not saved.
    factory: Callable[[], nn.Module] | None = field(default=None, repr=False, compare=False)
    train_fn: TrainFunction | None = field(default=None, repr=False, compare=False)

    @property
    def trainable(self) -> bool:
        """Whether reference models and retrains can be built: a fresh model and a way to train it."""
        rebuild = self.kind != "torchscript" or self.factory is not None
        return rebuild and (self.recipe is not None or self.train_fn is not None)

    @property
    def log_dir(self) -> Path | None:
        """Where the amnesiac update log lives, resolved beside the model file."""
        if not self.update_log or self.path is None:
            return None
        return self.path.parent / self.update_log["dir"]

    def to_dict(self) -> dict:
        if not isinstance(self.model, Classifier):
            raise InputError("only models built by the toolkit can be saved as model.pt; this one is "
                             f"a {self.kind} model")
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "arch_args": dict(self.arch_args),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "data": self.data,
            "recipe": self.recipe,
            "seed": self.seed,
            "metrics": self.metrics,
            "update_log": self.update_log,
            "lineage": self.lineage,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.model.net.state_dict().items()},
        }

    def fresh_model(self, seed: int | None = None) -> nn.Module:
        """A newly initialised model of the same architecture and normalisation."""
        if self.factory is not None:
            if seed is not None:
                torch.manual_seed(seed)
            net = self.factory()
            if not isinstance(net, nn.Module):
                raise InputError(f"the model factory returned {type(net).__name__}, not an nn.Module")
            return net if self.kind == "memory" else Classifier(net, self.mean, self.std)
        if self.kind == "torchscript":
            raise InputError("a TorchScript model cannot be rebuilt from scratch; save a toolkit model.pt "
                             "(audit train) or pass a bare state_dict with --arch")
        return build_model(self.arch, self.input_shape[0], self.num_classes, self.mean, self.std,
                           self.arch_args, seed=seed)


def save_model(path: str | Path, mf: ModelFile, stage: str | None = None) -> None:
    """Write ``mf`` atomically to ``path`` (``stage``: the crash point before the rename, for crash tests)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a directory; give a file name such as {path / 'model.pt'}")
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise InputError(f"output {path} lies under a file, not a folder; choose another path")
    doc = mf.to_dict()
    with atomic_path(path, stage) as tmp:
        torch.save(doc, tmp)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _one_line(exc: Exception, limit: int) -> str:
    """A library's (often multi-line) message squeezed onto one line for the CLI."""
    return " ".join(str(exc).split())[:limit]


def _weights_only_reason(exc: Exception) -> str:
    """The one informative sentence of torch's long weights-only refusal (ANSI codes removed)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (rest if found else text).splitlines() if ln.strip()]
    reason = lines[0] if lines else "unknown content"
    reason = reason.split(" Please use ")[0].split(" was not an allowed global")[0]
    return reason[:160]


def load_model(
    path: str | Path,
    arch: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> ModelFile:
    """Load a toolkit model.pt, a TorchScript archive, or a bare state_dict (needs ``arch``).

    ``input_shape`` and ``num_classes`` (from ``--data``) are needed for bare state_dicts
    and TorchScript files, which do not carry them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {path} not found")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript; accepting it is still the point
                warnings.simplefilter("ignore", FutureWarning)
                scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - a damaged archive
            raise InputError(f"{path} looks like TorchScript but does not load: {exc}") from None
        scripted.eval()
        shape = input_shape or (1, 8, 8)
        return ModelFile(scripted, "torchscript", tuple(shape), int(num_classes or 0), [0.0] * shape[0],
                         [1.0] * shape[0], kind="torchscript", path=path)
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = _weights_only_reason(exc)
        if not what.startswith("Unsupported global"):
            # Random bytes or a damaged file trip the same unpickler on an unknown opcode.
            raise InputError(f"{path} is not a readable model file ({what})") from None
        raise InputError(
            f"{path} refused: it holds Python objects that only a full unpickle could load ({what}), "
            "and a full unpickle runs any code inside the file. In a trusted environment re-save it as "
            "torch.save(model.state_dict(), 'weights.pt') and pass --arch NAME, or export TorchScript "
            "with torch.jit.script(model).save('model.ts')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files
        raise InputError(f"{path} is not a readable model file: it is not a torch.save archive or TorchScript "
                         f"(torch says {type(exc).__name__}: {_one_line(exc, 100)})") from None
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return _from_document(doc, path)
    if isinstance(doc, dict) and doc and all(isinstance(v, torch.Tensor) for v in doc.values()):
        return _from_state_dict(doc, path, arch, input_shape, num_classes)
    raise InputError(f"{path} is neither a toolkit model.pt, a TorchScript archive nor a state_dict")


def _from_document(doc: dict, path: Path) -> ModelFile:
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path} has model format version {version}; this toolkit reads version {FORMAT_VERSION}")
    norm = doc["normalization"]
    shape = tuple(int(v) for v in doc["input_shape"])
    model = build_model(doc["arch"], shape[0], int(doc["num_classes"]), norm["mean"], norm["std"], doc.get("arch_args"))
    try:
        model.net.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: the weights do not fit architecture {doc['arch']!r} ({_one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, doc["arch"], shape, int(doc["num_classes"]), list(norm["mean"]), list(norm["std"]),
                     dict(doc.get("arch_args") or {}), doc.get("data"), doc.get("recipe"), doc.get("seed"),
                     dict(doc.get("metrics") or {}), doc.get("update_log"), doc.get("lineage"), "toolkit", path)


def _from_state_dict(sd: dict, path: Path, arch: str | None, input_shape, num_classes) -> ModelFile:
    if not arch:
        raise InputError(f"{path} is a bare state_dict: pass --arch NAME (smallcnn, resnet18, or a torchvision model)")
    if input_shape is None or not num_classes:
        raise InputError(f"{path} is a bare state_dict: pass --data SPEC so that its input shape and classes are known")
    c = input_shape[0]
    # Bare weights carry no normalisation: the network is fed images in [0, 1] as they are.
    model = build_model(arch, c, int(num_classes), [0.0] * c, [1.0] * c)
    try:
        model.net.load_state_dict(sd)
    except RuntimeError as exc:
        raise InputError(f"{path}: the state_dict does not fit --arch {arch} ({_one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, arch, tuple(input_shape), int(num_classes), [0.0] * c, [1.0] * c, kind="state_dict", path=path)
