"""``model.pt``: a plain dictionary that loads with ``torch.load(weights_only=True)``.

Keys: ``format``, ``format_version``, ``arch``, ``arch_args``, ``input_shape``,
``num_classes``, ``normalization`` (mean, std), ``data`` (spec, split, digest), ``recipe``,
``seed``, ``metrics``, ``update_log`` (where the amnesiac log is and its checksum),
``lineage`` (for unlearned models: parent file, method, what was forgotten) and
``state_dict``. TorchScript and torch.export archives, and bare state_dicts together with
``--arch``, load too (:func:`load_model`). Nothing that needs a full unpickle is ever
loaded: it could run code.

The pieces: :mod:`audit.file_safety` (what a file is, read without running it),
:mod:`audit.model_document` (the fields of a model.pt), :mod:`audit.weight_checks`
(whether a state_dict fits its network), :mod:`audit.archive_loading` (TorchScript and
torch.export) and :mod:`audit.usercode` (the user's factory, training function and
normalisation). This module puts them together into a :class:`ModelFile`.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unlearning import TrainFunction

from audit.archive_loading import load_exported, load_torchscript
from audit.atomic import atomic_path
from audit.errors import InputError
from audit.file_safety import archive_kind, check_archive, file_sha256, load_tensors_only, one_line
from audit.model_document import check_document
from audit.models import Classifier, build_model
from audit.scripted import ScriptedNet
from audit.usercode import UserCode, normalization_or_identity
from audit.weight_checks import check_dtypes, check_supported_dtypes, check_weights_fit, first_nonfinite

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
    # What loading had to assume (e.g. no normalisation recorded): said once the inputs are all checked.
    assumptions: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def scripted(self):
        """The :class:`audit.scripted.ScriptedNet` of a TorchScript archive (inside the normalisation), else None."""
        net = self.model.net if isinstance(self.model, Classifier) else self.model
        return net if self.kind == "torchscript" and isinstance(net, ScriptedNet) else None

    @property
    def cannot_rebuild(self) -> str | None:
        """Why fresh models of this architecture cannot be built (None: they can)."""
        if self.kind != "torchscript" or self.factory is not None:
            return None
        scripted = self.scripted
        if scripted is None:
            return "it is a torch.export graph (.pt2), which runs forward only and cannot be trained"
        unknown = scripted.unknown_layers()
        if unknown:
            return (f"its layer {unknown[0]} holds parameters whose initialisation is not known here, so a fresh "
                    "copy cannot be drawn")
        return None

    @property
    def unlearnable(self) -> bool:
        """Whether an unlearning method can train this model: any but an archive, or a
        TorchScript archive with a way to train it (a .pt2 graph runs forward only)."""
        return self.kind != "torchscript" or (self.trainable and self.scripted is not None)

    @property
    def trainable(self) -> bool:
        """Whether reference models and retrains can be built: a fresh model and a way to train it."""
        return self.cannot_rebuild is None and (self.recipe is not None or self.train_fn is not None)

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
            why = self.cannot_rebuild
            if why is not None:
                raise InputError(f"{self.path} cannot be rebuilt from scratch: {why}; pass --arch "
                                 "package.module:factory, or a bare state_dict with --arch")
            fresh = self.scripted.reinitialised(seed)  # type: ignore[union-attr]
            return Classifier(fresh, self.mean, self.std) if isinstance(self.model, Classifier) else fresh
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



def say_assumptions(*files: "ModelFile | None") -> list[str]:
    """Warn once (one ``warning:`` line each) about what loading these files assumed; returns the lines."""
    lines = [line for mf in files if mf is not None for line in mf.assumptions]
    for line in lines:
        warnings.warn(line, UserWarning, stacklevel=2)
    return lines


def with_user_code(mf: ModelFile, user: UserCode | None) -> ModelFile:
    """Attach the user's factory and training function (and a declarative recipe) to a loaded model."""
    if user is None:
        return mf
    if getattr(user, "factory", None) is not None:
        mf.factory = user.factory
        mf.arch, mf.arch_args = user.arch, dict(user.arch_args)
    if getattr(user, "train_fn", None) is not None:
        mf.train_fn = user.train_fn
    recipe = getattr(user, "recipe", None)
    if recipe is not None and mf.recipe is None:
        mf.recipe = recipe
    return mf


def load_model(
    path: str | Path,
    arch: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    user: UserCode | None = None,
) -> ModelFile:
    """Load a toolkit model.pt, a TorchScript or ``torch.export`` (.pt2) archive, or a bare
    state_dict (torch.save or .safetensors; needs ``arch`` or the user's factory).

    ``input_shape`` and ``num_classes`` (from ``--data``) are needed for bare state_dicts
    and archives, which do not carry them. ``user``: :class:`audit.usercode.UserCode`, the
    user's factory, training function and normalisation, by their explicit choice.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {path} not found")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise InputError(f"{path} is not a regular file (a pipe, socket or device?); give a model file")
    check_archive(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - not a safetensors file
            raise InputError(f"{path} is not a readable safetensors file ({one_line(exc, 120)})") from None
        return with_user_code(_from_state_dict(sd, path, arch, input_shape, num_classes, user), user)
    archive = archive_kind(path)
    if archive:
        return _from_archive(archive, path, input_shape, num_classes, user)
    doc = load_tensors_only(path)
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        if getattr(user, "names_factory", False):  # said before the factory is ever imported
            raise InputError(f"{path} is a toolkit model.pt, which records its architecture; --arch "
                             "package.module:factory applies to bare state_dicts and archives, so drop it")
        mf = _from_document(doc, path)
        if getattr(user, "train_fn", None) is not None:
            mf.train_fn = user.train_fn  # the user's own training function replaces the recorded recipe's loop
        return mf
    if isinstance(doc, dict) and doc and all(isinstance(v, torch.Tensor) for v in doc.values()):
        return with_user_code(_from_state_dict(doc, path, arch, input_shape, num_classes, user), user)
    raise InputError(f"{path} is neither a toolkit model.pt, a TorchScript archive nor a state_dict")


def records_architecture(path: str | Path) -> bool:
    """Whether ``path`` is a toolkit model.pt (which records its architecture, so needs no
    ``--arch``): a tensors-only read of its header, the weights memory-mapped, not loaded.
    Anything unreadable answers False; loading it later says what is wrong."""
    path = Path(path)
    try:
        if not path.is_file() or path.suffix == ".safetensors" or not zipfile.is_zipfile(path):
            return False
        check_archive(path)
        if archive_kind(path):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a model.pt this check can read
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def _from_archive(archive: str, path: Path, input_shape, num_classes, user: UserCode | None) -> ModelFile:
    """A TorchScript or torch.export archive, wrapped in ``--normalize`` when given."""
    net = load_torchscript(path) if archive == "torchscript" else load_exported(path)
    if input_shape is None or not num_classes:
        raise InputError(f"{path} is a {'TorchScript' if archive == 'torchscript' else 'torch.export'} archive, "
                         "which does not say what data it takes: pass --data SPEC")
    shape = tuple(input_shape)
    mean, std = normalization_or_identity(user, shape[0], path, [])  # an archive may normalise inside: no assumption to state
    model = Classifier(net, mean, std) if (mean, std) != ([0.0] * shape[0], [1.0] * shape[0]) else net
    mf = ModelFile(model, "torchscript" if archive == "torchscript" else "exported", shape, int(num_classes),
                   mean, std, kind="torchscript", path=path)
    if archive == "torchscript":  # which graph this is: reference models of another one must not be shared
        mf.arch_args = {"graph": net.identity()}
    mf = with_user_code(mf, user)
    if mf.factory is None and mf.recipe is not None and mf.cannot_rebuild is None:
        layers = sorted(set(net.layer_types().values()))
        mf.assumptions.append(f"{path.name} is TorchScript without a factory: reference models and retrains "
                              f"start from copies of it with every parameter re-initialised as torch's layers "
                              f"initialise ({', '.join(layers)}), trained with the recipe given")
    return mf


def _from_document(doc: dict, path: Path) -> ModelFile:
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path} has model format version {version}; this toolkit reads version {FORMAT_VERSION}")
    check_document(doc, path)
    norm = doc["normalization"]
    shape = tuple(int(v) for v in doc["input_shape"])
    casts = check_weights_fit(doc["state_dict"], doc["arch"], shape[0], doc["num_classes"], doc.get("arch_args"), path,
                              f"the file's claim of architecture {doc['arch']!r} with {doc['num_classes']} classes "
                              f"and {'x'.join(map(str, shape))} inputs")
    model = build_model(doc["arch"], shape[0], int(doc["num_classes"]), norm["mean"], norm["std"], doc.get("arch_args"))
    try:
        model.net.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: the weights do not fit architecture {doc['arch']!r} ({one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, doc["arch"], shape, int(doc["num_classes"]), list(norm["mean"]), list(norm["std"]),
                     dict(doc.get("arch_args") or {}), doc.get("data"), doc.get("recipe"), doc.get("seed"),
                     dict(doc.get("metrics") or {}), doc.get("update_log"), doc.get("lineage"), "toolkit", path,
                     assumptions=casts)


def _from_state_dict(sd: dict, path: Path, arch: str | None, input_shape, num_classes,
                     user: UserCode | None = None) -> ModelFile:
    factory = getattr(user, "factory", None)
    if not arch and factory is None:
        raise InputError(f"{path} is a bare state_dict: pass --arch NAME (smallcnn, resnet18, a torchvision model, "
                         "or your own package.module:factory)")
    if input_shape is None or not num_classes:
        raise InputError(f"{path} is a bare state_dict: pass --data SPEC so that its input shape and classes are known")
    c = input_shape[0]
    if factory is not None:
        check_supported_dtypes(sd, path)
        net = user.build()  # type: ignore[union-attr]
        assumed = check_dtypes(sd, {k: v.dtype for k, v in net.state_dict().items()}, path)
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise InputError(f"{path}: the state_dict does not fit the model --arch {user.arch} builds "  # type: ignore[union-attr]
                             f"({one_line(exc, 160)}); check --arch and --arch-args") from None
        nonfinite = first_nonfinite(sd)
        if nonfinite is not None:
            raise InputError(f"{path}: the weights hold NaN or infinite values (in {nonfinite})")
        mean, std = normalization_or_identity(user, c, path, assumed)
        model = Classifier(net, mean, std).eval()
        return ModelFile(model, user.arch, tuple(input_shape), int(num_classes), mean, std,  # type: ignore[union-attr]
                         dict(user.arch_args), kind="state_dict", path=path, assumptions=assumed)  # type: ignore[union-attr]
    claim = f"--arch {arch} with {num_classes} classes and {'x'.join(map(str, input_shape))} inputs"
    assumed = check_weights_fit(sd, arch, c, int(num_classes), None, path, claim)
    mean, std = normalization_or_identity(user, c, path, assumed)
    model = build_model(arch, c, int(num_classes), mean, std)
    try:
        model.net.load_state_dict(sd)
    except RuntimeError as exc:
        raise InputError(f"{path}: the state_dict does not fit --arch {arch} ({one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, arch, tuple(input_shape), int(num_classes), mean, std, kind="state_dict", path=path,
                     assumptions=assumed)
