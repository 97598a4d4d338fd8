"""``audit.evaluate``: the audit on models and tensors in memory, with the user's own code.

The command line and :func:`audit.run` load files and call the same core
(:func:`audit.harness.audit_loaded`); this entry point skips the files::

    import audit

    report = audit.evaluate(
        model,                                    # the original, trained nn.Module (takes images in [0, 1])
        train=(x_train, y_train), held_out=(x_test, y_test),
        forget=[3, 17, 256],                      # training ids, a spec ("class=3", "random=0.05@0"), or a list of them
        unlearned="relabel",                      # or an nn.Module unlearned elsewhere, or "none" (the no-op control)
        model_factory=lambda: MyNet(),            # a fresh, untrained model
        train_fn=my_fit,                          # fit(model, x, y, *, seed, epochs=None) -> nn.Module
    )
    report.verdict, report.exit_code, report.targets[0].p_value, report.document  # results.json's content

``train_fn`` follows :data:`unlearning.training.TrainFunction`; without it, ``recipe`` (a
:class:`unlearning.TrainConfig` or its dict) trains with the toolkit's loop. Reference
models and retrains are built with ``model_factory`` and trained with it. Nothing is
written unless ``out`` names a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from audit.data import MAX_CLASSES, Dataset
from audit.errors import InputError
from audit.forget import ForgetSet, parse_forget
from audit.harness import AuditResult, audit_loaded
from audit.options import AuditOptions, check_whole
from audit.modelfile import ModelFile
from unlearning import TrainConfig, TrainFunction


def _tensors(data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a pair of tensors/arrays or a torch Dataset yielding (x, y)."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if not items:
            raise InputError(f"{what} is empty")
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.as_tensor([int(item[1]) for item in items])
    else:
        raise InputError(f"{what} must be (x, y) tensors or a torch Dataset of (x, y) pairs, not {type(data).__name__}")
    x, y = _numbers(x, f"{what} images"), _numbers(y, f"{what} labels")
    if y.is_floating_point():  # 3.7 is not class 3: a float label is taken only when it is whole
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise InputError(f"{what}: labels must be whole class indices 0..C-1; some are not whole numbers")
    if y.numel() and (float(y.max()) >= MAX_CLASSES or float(y.min()) < 0):
        raise InputError(f"{what}: labels must be class indices 0..C-1 with at most {MAX_CLASSES:,} classes; "
                         f"found {float(y.max() if float(y.min()) >= 0 else y.min()):.0f}")
    x = x.to(torch.float32)
    y = y.long().reshape(-1)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
        raise InputError(f"{what}: x must be (N, C, H, W) images and y (N,) labels of the same length; "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise InputError(f"{what}: images must be finite and lie in [0, 1]; normalisation belongs inside the model")
    if int(y.min()) < 0:
        raise InputError(f"{what}: labels must be class indices 0..C-1")
    return x.contiguous(), y.contiguous()


def _numbers(value, what: str) -> torch.Tensor:
    """A tensor or array of real numbers (not text, objects or complex numbers), as a CPU tensor."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged lists
            raise InputError(f"{what} must be a tensor or array of numbers ({' '.join(str(exc).split())[:80]})") \
                from None
        if array.dtype.kind not in "biuf":
            raise InputError(f"{what} must be a tensor or array of numbers, not of {array.dtype} values")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex() or tensor.dtype == torch.bool and "labels" not in what or tensor.device.type == "meta":
        raise InputError(f"{what} must be real numbers in memory, not a {tensor.dtype} tensor on {tensor.device}")
    return tensor.detach().cpu()


def _check_model(model: nn.Module, what: str) -> None:
    """A float32 network on the CPU: the toolkit trains and attacks in float32 and would otherwise cast or crash later."""
    tensors = list(model.parameters()) + list(model.buffers())
    bad = next((t for t in tensors if t.is_floating_point() and (t.dtype != torch.float32 or t.device.type != "cpu")),
               None)
    if bad is not None:
        raise InputError(f"{what} holds {str(bad.dtype).removeprefix('torch.')} weights on {bad.device.type}; "
                         "audit.evaluate takes a float32 model on the CPU: pass model.float().cpu()")


def _probe(model: nn.Module, x: torch.Tensor, classes: int, what: str) -> torch.Tensor:
    """One forward pass on a few images, in eval mode: the model must answer (N, classes) logits."""
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's forward (or a hook on it) failed
        raise InputError(f"{what}'s forward pass on {len(x)} training images raised {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}; it must take (N, C, H, W) images in [0, 1] and "
                         f"return (N, {classes}) logits") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{what} answers {len(x)} images with {shape}; it must return (N, {classes}) logits")
    return out


def _forget_sets(forget, y_train: torch.Tensor, num_classes: int) -> list[ForgetSet]:
    """Specs ("class=3"), id sequences, or a list mixing them: one forget target each."""
    usage = ("forget must be a spec such as \"class=3\", a sequence of training ids (whole numbers), or a list of "
             "them")
    if isinstance(forget, str) or isinstance(forget, (torch.Tensor, np.ndarray)) or (
            isinstance(forget, (list, tuple)) and forget and all(_is_id(v) for v in forget)):
        forget = [forget]
    if not isinstance(forget, (list, tuple)) or not forget:
        raise InputError(f"{usage}, not {_shown(forget)}")
    targets = []
    for item in forget:
        if isinstance(item, str):
            targets.append(parse_forget(item, y_train, num_classes))
            continue
        array = item.numpy() if isinstance(item, torch.Tensor) else np.asarray(item) \
            if isinstance(item, (list, tuple, np.ndarray)) else None
        if array is None or (array.size and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer))):
            raise InputError(f"{usage}; {_shown(item)} is not")
        ids = torch.as_tensor(array, dtype=torch.int64).reshape(-1)
        if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= len(y_train):
            raise InputError(f"forget ids must be a non-empty set of training ids in 0..{len(y_train) - 1}")
        ids = torch.unique(ids)
        digest = hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:8]
        targets.append(ForgetSet(f"ids={ids.numel()}@{digest}", ids))
    return targets


def evaluate(
    original: nn.Module,
    *,
    train,
    held_out,
    forget,
    unlearned: nn.Module | str = "auto",
    model_factory: Callable[[], nn.Module] | None = None,
    train_fn: TrainFunction | None = None,
    recipe: TrainConfig | dict | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    out: str | Path | None = None,
    **options,
) -> AuditResult:
    """Audit ``original`` in memory; see the module docstring. Returns :class:`audit.harness.AuditResult`.

    ``options`` are the flat names of :class:`audit.options.AuditOptions` (alpha, retrains,
    reference_models, attacks, mia_attacks, inconclusive, seed, fail_on, cache_dir, ...).
    """
    if not isinstance(original, nn.Module):
        raise InputError(f"original must be a trained nn.Module, not {_shown(original)}")
    _check_model(original, "original")
    if isinstance(unlearned, nn.Module):
        _check_model(unlearned, "unlearned")
        if unlearned is original:
            raise InputError("unlearned is the original model itself; pass the model unlearned elsewhere, or a "
                             "method name such as \"relabel\"")
    elif not isinstance(unlearned, str):
        raise InputError(f"unlearned must be an nn.Module unlearned elsewhere or a method name "
                         f"(auto, amnesiac, relabel, finetune, retrain, none), not {_shown(unlearned)}")
    x_train, y_train = _tensors(train, "train")
    x_test, y_test = _tensors(held_out, "held_out")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"train images are {tuple(x_train.shape[1:])} but held_out images {tuple(x_test.shape[1:])}")
    seen = int(max(y_train.max(), y_test.max())) + 1
    if num_classes is not None:
        check_whole("num_classes", num_classes, 2, MAX_CLASSES, "the classes of the model's output")
        if num_classes < seen:
            raise InputError(f"num_classes is {num_classes} but the labels reach {seen - 1}; give at least {seen}")
    classes = num_classes or seen
    if class_names is not None:
        if isinstance(class_names, str) or not isinstance(class_names, Sequence) or \
                not all(isinstance(n, str) for n in class_names) or len(class_names) != classes:
            raise InputError(f"class_names must be a list of {classes} strings, one per class, not "
                             f"{_shown(class_names)}")
    names = list(class_names) if class_names else [str(i) for i in range(classes)]
    data = Dataset("memory", x_train, y_train, x_test, y_test, classes, names, split={"source": "given in memory"})
    if recipe is not None and not isinstance(recipe, (TrainConfig, dict)):
        raise InputError(f"recipe must be a TrainConfig or a dict of its fields, not {_shown(recipe)}")
    if isinstance(recipe, dict):
        fields = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(str(k) for k in set(recipe) - fields)
        if unknown:
            raise InputError(f"recipe has an unknown key {unknown[0]!r}; known: {', '.join(sorted(fields))}")
        recipe = TrainConfig.from_dict(recipe)
    if recipe is not None:
        try:
            recipe.validate()
        except (ValueError, TypeError) as exc:
            raise InputError(f"recipe: {exc}") from None
    if model_factory is not None and (not callable(model_factory) or isinstance(model_factory, nn.Module)):
        raise InputError(f"model_factory must be a function () -> nn.Module that builds a fresh, untrained model, "
                         f"not {_shown(model_factory)}")
    if (train_fn is not None or recipe is not None) and model_factory is None:
        raise InputError("reference models and retrains need model_factory, a () -> nn.Module that builds a fresh model")
    if train_fn is not None and not callable(train_fn):
        raise InputError(f"train_fn must be a function fit(model, x, y, *, seed, epochs=None) -> nn.Module, "
                         f"not {_shown(train_fn)}")
    from audit.usercode import guard

    # Whatever the user's functions raise (SystemExit too) is a failed step that names them.
    model_factory, train_fn = guard(model_factory, "model_factory"), guard(train_fn, "train_fn")
    if model_factory is not None:
        _check_factory(model_factory, original)
    channels = int(x_train.shape[1])
    # The caller's models are put back in the mode they came in (the audit runs them in eval mode).
    modes = [(m, m.training) for m in (original, unlearned) if isinstance(m, nn.Module)]
    try:
        return _evaluate_loaded(original, unlearned, model_factory, train_fn, recipe, x_train, y_train, classes,
                                channels, data, forget, out, options)
    finally:
        for model, training in modes:
            model.train(training)


def _check_factory(factory: Callable[[], nn.Module], original: nn.Module) -> None:
    """The factory builds a fresh network of the original's architecture: the same parameter names and shapes."""
    with torch.random.fork_rng(devices=[]):  # the check draws no number the audit's models would have drawn
        built = factory()
    if built is original:
        raise InputError("model_factory returns the trained original itself; it must build a fresh, untrained "
                         "model of the same architecture (e.g. lambda: MyNet())")
    if not isinstance(built, nn.Module):
        raise InputError(f"model_factory must return an nn.Module, not {_shown(built)}")
    want = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if want != got:
        diff = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
        name = diff[0]
        raise InputError(f"model_factory builds a {type(built).__name__} that is not the original's architecture "
                         f"({type(original).__name__}): {name!r} is {got.get(name, 'missing')} in it and "
                         f"{want.get(name, 'missing')} in the original; it must build the same network, untrained")


def _evaluate_loaded(original, unlearned, model_factory, train_fn, recipe, x_train, y_train, classes, channels, data,
                     forget, out, options) -> AuditResult:
    mf = ModelFile(model=original.eval(), arch=_name(model_factory) or type(original).__name__,
                   input_shape=tuple(int(d) for d in x_train.shape[1:]), num_classes=classes,
                   mean=[0.0] * channels, std=[1.0] * channels, data=None,
                   recipe=recipe.to_dict() if recipe is not None else None, kind="memory",
                   factory=model_factory, train_fn=train_fn)
    probe = _probe(original, x_train[:4096], classes, "original")
    mf.metrics = {"train_accuracy": float((probe.argmax(1) == y_train[:4096]).float().mean())}
    unlearned_mf = None
    if isinstance(unlearned, nn.Module):
        unlearned_mf = dataclasses.replace(mf, model=unlearned.eval(), kind="memory")
        _probe(unlearned, x_train[:64], classes, "unlearned")
        options["original"] = Path("<memory: original>")
        method = "auto"
    else:
        method = unlearned
    known = AuditOptions.names() - {"method"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"audit.evaluate got an unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    opts = AuditOptions.from_flat(Path("<memory>"), ["<memory>"], method=method,
                                  out=out,
                                  show_progress=options.pop("show_progress", False),
                                  formats=options.pop("formats", ["html", "pdf"] if out is not None else []),
                                  command=options.pop("command", "audit.evaluate(...)"), **options)
    gates = opts.validate()
    targets = _forget_sets(forget, y_train, classes)
    opts.forget = [t.spec for t in targets]
    return audit_loaded(opts, gates, mf, data, targets, unlearned_mf)


def _is_id(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _name(fn) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"
