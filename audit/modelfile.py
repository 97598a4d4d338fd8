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
import math
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NoReturn

import torch
from torch import nn

from unlearning import TrainFunction

from audit.atomic import atomic_path
from audit.data import MAX_CLASSES
from audit.errors import InputError
from audit.models import Classifier, build_model, build_network

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
        from audit.scripted import ScriptedNet

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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# torch.save stores its members uncompressed; an archive that unpacks to many times its
# size on disk is a zip bomb, not a model.
MAX_EXPANSION = 20
# Bounds on what a model file may claim, checked before anything is built from the claims.
MAX_INPUT_VALUES = 1 << 24  # C*H*W of one input image (e.g. 3x2048x2048 fits)


def _check_archive(path: Path) -> None:
    """Refuse a zip archive whose members claim far more bytes than the file holds."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable model file: a damaged zip archive ({_one_line(exc, 100)})") from None
    size = path.stat().st_size
    if unpacked > max(MAX_EXPANSION * size, 1 << 20):
        raise InputError(f"{path} refused: its {size:,} bytes claim to unpack to {unpacked:,} bytes (a zip bomb?); "
                         "a model saved with torch.save is stored uncompressed, so save the model again")


def _is_raw_pickle(path: Path) -> bool:
    """Whether the file starts with a pickle's PROTO opcode (protocol 2 to 5)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _archive_kind(path: Path) -> str | None:
    """"torchscript" (``constants.pkl`` and ``code/``), "exported" (a torch.export .pt2:
    ``archive_format`` and ``models/*.json``) or None, from one read of the zip's listing."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names):
        return "exported"
    return None


class ForwardOnly(nn.Module):
    """A module that only runs forward (an exported program): ``train()``/``eval()`` change
    nothing inside it, since ``torch.export`` captured it in eval mode."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> "ForwardOnly":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _load_exported(path: Path) -> nn.Module:
    """Load a .pt2 archive without unpickling: ``torch.export.load`` unpickles constants and
    may fall back to a full ``torch.load``; here tensors load with ``weights_only=True`` and
    any pickled Python object is refused."""
    from unittest import mock

    original_load = torch.load

    def tensors_only(*args, **kwargs):
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("the archive holds pickled Python objects, which this toolkit never loads")

    try:
        with warnings.catch_warnings(), mock.patch.object(torch, "load", tensors_only), \
                mock.patch.object(pickle, "loads", refuse), mock.patch.object(torch._C, "_pickle_load_obj", refuse):
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
        return ForwardOnly(program.module())
    except Exception as exc:  # noqa: BLE001 - a damaged archive or one that needs pickled objects
        raise InputError(f"{path} looks like a torch.export archive (.pt2) but does not load safely "
                         f"({_one_line(exc, 140)}); export it again with torch.export.save") from None


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
    user=None,
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
    _check_archive(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - not a safetensors file
            raise InputError(f"{path} is not a readable safetensors file ({_one_line(exc, 120)})") from None
        return with_user_code(_from_state_dict(sd, path, arch, input_shape, num_classes, user), user)
    archive = _archive_kind(path)
    if archive:
        if archive == "torchscript":
            try:
                with warnings.catch_warnings():  # torch deprecates TorchScript; accepting it is still the point
                    warnings.simplefilter("ignore", FutureWarning)
                    net = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:  # noqa: BLE001 - a damaged archive
                raise InputError(f"{path} looks like TorchScript but does not load: {exc}") from None
            from audit.scripted import ScriptedNet

            net = ScriptedNet(net).eval()
        else:
            net = _load_exported(path)
        if input_shape is None or not num_classes:
            raise InputError(f"{path} is a {'TorchScript' if archive == 'torchscript' else 'torch.export'} archive, "
                             "which does not say what data it takes: pass --data SPEC")
        shape = tuple(input_shape)
        mean, std = _normalization(user, shape[0], path, [])  # an archive may normalise inside: no assumption to state
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
    try:
        with warnings.catch_warnings():  # torch's warnings about a file's pickle protocol: the error says it all
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler says, a bare pickle is refused
        if not zipfile.is_zipfile(path) and _is_raw_pickle(path):
            # Only a named global is worth repeating; "Unsupported operand 149" says nothing to a user.
            what = _weights_only_reason(exc) if isinstance(exc, pickle.UnpicklingError) else ""
            calls = f" ({what})" if what.startswith("Unsupported global") else ""
            raise InputError(
                f"{path} refused: the file is a pickle that would run code on load{calls}; this toolkit never does a full "
                "unpickle. In a trusted environment re-save it as torch.save(model.state_dict(), "
                "'weights.pt') and pass --arch NAME, or export TorchScript with torch.jit.script(model).save('model.ts')"
            ) from None
        _refuse_unreadable(path, exc)
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
        _check_archive(path)
        if _archive_kind(path):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a model.pt this check can read
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def _refuse_unreadable(path: Path, exc: Exception) -> NoReturn:
    """Raise the one-line :class:`InputError` for a torch.load failure."""
    if isinstance(exc, pickle.UnpicklingError):
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
    # Truncated or foreign files.
    raise InputError(f"{path} is not a readable model file: it is not a torch.save archive or TorchScript "
                     f"(torch says {type(exc).__name__}: {_one_line(exc, 100)})") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_document(doc: dict, path: Path) -> None:
    """Every field ``_from_document`` uses has the type and range it needs, before anything is built."""
    def bad(field: str, want: str) -> InputError:
        return InputError(f"{path}: field {field!r} must be {want}; the file is damaged or was not written by "
                          "audit train, so train or unlearn the model again")

    if not isinstance(doc.get("arch"), str) or not doc["arch"] or len(doc["arch"]) > 100:
        raise bad("arch", "an architecture name such as 'smallcnn'")
    arch_args = doc.get("arch_args")
    if arch_args is not None and not (isinstance(arch_args, dict)
                                      and all(isinstance(k, str) and _is_int(v) and 0 < v <= 1 << 16
                                              for k, v in arch_args.items())):
        raise bad("arch_args", "a table of positive whole numbers such as {'width': 16}")
    shape = doc.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)
            and math.prod(shape) <= MAX_INPUT_VALUES):
        raise bad("input_shape", f"[channels, height, width], positive, at most {MAX_INPUT_VALUES:,} values")
    k = doc.get("num_classes")
    if not (_is_int(k) and 1 <= k <= MAX_CLASSES):
        raise bad("num_classes", f"a whole number from 1 to {MAX_CLASSES:,}")
    norm = doc.get("normalization")
    if not (isinstance(norm, dict) and all(isinstance(norm.get(key), (list, tuple)) and len(norm[key]) == shape[0]
                                           and all(_is_number(v) for v in norm[key]) for key in ("mean", "std"))
            and all(v > 0 for v in norm["std"])):
        raise bad("normalization", f"{{'mean': [...], 'std': [...]}} with {shape[0]} finite numbers each, std above 0")
    sd = doc.get("state_dict")
    if not (isinstance(sd, dict) and sd and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())):
        raise bad("state_dict", "a table of weight tensors")
    for key in ("data", "recipe", "metrics", "update_log", "lineage"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise bad(key, "a table or absent")
    if doc.get("seed") is not None and not _is_int(doc["seed"]):
        raise bad("seed", "a whole number or absent")
    if doc.get("data") is not None and not isinstance(doc["data"].get("spec"), str):
        raise bad("data", "a table whose 'spec' is a data spec such as 'digits'")
    log = doc.get("update_log")
    if log is not None:
        name = log.get("dir")
        # The log lives beside the model file, under a plain folder name.
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise bad("update_log", "a table whose 'dir' names the log folder beside the model file")
    if doc.get("recipe") is not None:
        from unlearning import TrainConfig

        try:
            TrainConfig.from_dict(doc["recipe"]).validate()
        except (TypeError, ValueError):
            raise bad("recipe", "a training recipe (epochs, batch_size, lr, optimizer, seed, ...)") from None


# Weights the toolkit trains and attacks: float8, complex and quantised tensors have no arithmetic on the CPU.
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool)


def _check_supported_dtypes(sd: dict, path: Path) -> None:
    # Complex tensors are left to _check_dtypes, which says what the model's weights are instead.
    odd = next(((k, v.dtype) for k, v in sd.items() if v.dtype not in WEIGHT_DTYPES and not v.dtype.is_complex), None)
    if odd is not None:
        name = str(odd[1]).removeprefix("torch.")
        raise InputError(f"{path}: tensor {odd[0]} is {name}, which this toolkit cannot train or attack; "
                         "convert the weights to float32 (or float16/bfloat16) and save them again")


def _check_dtypes(sd: dict, want: dict, path: Path) -> list[str]:
    """Refuse integer, boolean or complex tensors where the model holds floating-point weights
    (``load_state_dict`` would cast them without a word); return one line per other cast."""
    casts: dict[tuple, list[str]] = {}
    for key, tensor in sd.items():
        need = want.get(key)
        if need is None or not need.is_floating_point or tensor.dtype == need:
            continue
        if not tensor.is_floating_point():
            have = str(tensor.dtype).replace("torch.", "")
            raise InputError(f"{path}: {key} is stored as {have}, but the model's weights are "
                             f"{str(need).replace('torch.', '')}: weights must be floating-point numbers; save the "
                             "trained model's state_dict as it is, without converting it")
        casts.setdefault((tensor.dtype, need), []).append(key)
    return [f"{path.name} stores {len(keys)} weight tensor(s) as {str(have).replace('torch.', '')} (e.g. {keys[0]}); "
            f"they are cast to {str(need).replace('torch.', '')}, the model's type"
            for (have, need), keys in casts.items()]


def _check_weights_fit(sd: dict, arch: str, in_channels: int, num_classes: int, arch_args: dict | None,
                       path: Path, what: str) -> list[str]:
    """Compare the file's tensors with the shapes the claimed architecture needs, on the meta
    device (no memory), so that a small file claiming 30 million classes is refused before
    a 7 GB layer is allocated. Returns the casts that loading will do (one line each)."""
    _check_supported_dtypes(sd, path)
    try:
        with torch.device("meta"):
            skeleton = build_network(arch, in_channels, num_classes, arch_args)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a builder refusing its arguments
        raise InputError(f"{path}: architecture {arch!r} cannot be built with {in_channels} channels and "
                         f"{num_classes} classes ({_one_line(exc, 120)})") from None
    need = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = sorted(need.keys() - have.keys())
    extra = sorted(have.keys() - need.keys())
    wrong = [k for k in need if k in have and need[k] != have[k]]
    if missing or extra or wrong:
        if wrong:
            detail = f"{wrong[0]} has shape {list(have[wrong[0]])} but needs {list(need[wrong[0]])}"
        elif missing:
            detail = f"{len(missing)} tensors are missing, e.g. {missing[0]}"
        else:
            detail = f"{len(extra)} tensors are unexpected, e.g. {extra[0]}"
        raise InputError(f"{path}: the state_dict does not fit {what} ({detail})")
    casts = _check_dtypes(sd, {k: v.dtype for k, v in skeleton.state_dict().items()}, path)
    nonfinite = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise InputError(f"{path}: the weights hold NaN or infinite values (in {nonfinite[0]}); the model diverged "
                         "when it was trained, so train it again with a lower learning rate")
    return casts


def _from_document(doc: dict, path: Path) -> ModelFile:
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path} has model format version {version}; this toolkit reads version {FORMAT_VERSION}")
    _check_document(doc, path)
    norm = doc["normalization"]
    shape = tuple(int(v) for v in doc["input_shape"])
    casts = _check_weights_fit(doc["state_dict"], doc["arch"], shape[0], doc["num_classes"], doc.get("arch_args"), path,
                       f"the file's claim of architecture {doc['arch']!r} with {doc['num_classes']} classes and "
                       f"{'x'.join(map(str, shape))} inputs")
    model = build_model(doc["arch"], shape[0], int(doc["num_classes"]), norm["mean"], norm["std"], doc.get("arch_args"))
    try:
        model.net.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: the weights do not fit architecture {doc['arch']!r} ({_one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, doc["arch"], shape, int(doc["num_classes"]), list(norm["mean"]), list(norm["std"]),
                     dict(doc.get("arch_args") or {}), doc.get("data"), doc.get("recipe"), doc.get("seed"),
                     dict(doc.get("metrics") or {}), doc.get("update_log"), doc.get("lineage"), "toolkit", path,
                     assumptions=casts)


def _from_state_dict(sd: dict, path: Path, arch: str | None, input_shape, num_classes, user=None) -> ModelFile:
    factory = getattr(user, "factory", None)
    if not arch and factory is None:
        raise InputError(f"{path} is a bare state_dict: pass --arch NAME (smallcnn, resnet18, a torchvision model, "
                         "or your own package.module:factory)")
    if input_shape is None or not num_classes:
        raise InputError(f"{path} is a bare state_dict: pass --data SPEC so that its input shape and classes are known")
    c = input_shape[0]
    if factory is not None:
        _check_supported_dtypes(sd, path)
        net = user.build()
        casts = _check_dtypes(sd, {k: v.dtype for k, v in net.state_dict().items()}, path)
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise InputError(f"{path}: the state_dict does not fit the model --arch {user.arch} builds "
                             f"({_one_line(exc, 160)}); check --arch and --arch-args") from None
        nonfinite = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if nonfinite:
            raise InputError(f"{path}: the weights hold NaN or infinite values (in {nonfinite[0]})")
        assumed: list[str] = casts
        mean, std = _normalization(user, c, path, assumed)
        model = Classifier(net, mean, std).eval()
        return ModelFile(model, user.arch, tuple(input_shape), int(num_classes), mean, std, dict(user.arch_args),
                         kind="state_dict", path=path, assumptions=assumed)
    claim = f"--arch {arch} with {num_classes} classes and {'x'.join(map(str, input_shape))} inputs"
    assumed: list[str] = _check_weights_fit(sd, arch, c, int(num_classes), None, path, claim)
    mean, std = _normalization(user, c, path, assumed)
    model = build_model(arch, c, int(num_classes), mean, std)
    try:
        model.net.load_state_dict(sd)
    except RuntimeError as exc:
        raise InputError(f"{path}: the state_dict does not fit --arch {arch} ({_one_line(exc, 160)})") from None
    model.eval()
    return ModelFile(model, arch, tuple(input_shape), int(num_classes), mean, std, kind="state_dict", path=path,
                     assumptions=assumed)


def _normalization(user, channels: int, path: Path, assumed: list[str]) -> tuple[list[float], list[float]]:
    """The input normalisation of a file that does not record it: ``--normalize``, or an
    identity that is noted in ``assumed`` and said out loud (never assumed silently)."""
    from audit.usercode import parse_normalize

    given = parse_normalize(getattr(user, "normalize", None), channels)
    if given is not None:
        return given
    assumed.append(f"{path.name} records no input normalisation: assuming the network takes images in [0, 1] as "
                   "they are (mean 0, std 1); pass --normalize MEAN,STD if it was trained on normalised inputs")
    return [0.0] * channels, [1.0] * channels


def say_assumptions(*files: "ModelFile | None") -> list[str]:
    """Warn once (one ``warning:`` line each) about what loading these files assumed; returns the lines."""
    lines = [line for mf in files if mf is not None for line in mf.assumptions]
    for line in lines:
        warnings.warn(line, UserWarning, stacklevel=2)
    return lines


def with_user_code(mf: ModelFile, user) -> ModelFile:
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
