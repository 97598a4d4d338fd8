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

from audit.data import Dataset
from audit.errors import InputError
from audit.forget import ForgetSet, parse_forget
from audit.harness import AuditResult, audit_loaded
from audit.options import AuditOptions
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
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().reshape(-1)
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
        raise InputError(f"original must be a trained nn.Module, not {type(original).__name__}")
    x_train, y_train = _tensors(train, "train")
    x_test, y_test = _tensors(held_out, "held_out")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"train images are {tuple(x_train.shape[1:])} but held_out images {tuple(x_test.shape[1:])}")
    classes = num_classes or int(max(y_train.max(), y_test.max())) + 1
    names = list(class_names) if class_names else [str(i) for i in range(classes)]
    data = Dataset("memory", x_train, y_train, x_test, y_test, classes, names, split={"source": "given in memory"})
    if isinstance(recipe, dict):
        recipe = TrainConfig.from_dict(recipe)
    if recipe is not None:
        try:
            recipe.validate()
        except ValueError as exc:
            raise InputError(f"recipe: {exc}") from None
    if model_factory is not None and (not callable(model_factory) or isinstance(model_factory, nn.Module)):
        raise InputError(f"model_factory must be a function () -> nn.Module that builds a fresh, untrained model, "
                         f"not {_shown(model_factory)}")
    if (train_fn is not None or recipe is not None) and model_factory is None:
        raise InputError("reference models and retrains need model_factory, a () -> nn.Module that builds a fresh model")
    if train_fn is not None and not callable(train_fn):
        raise InputError("train_fn must be a function fit(model, x, y, *, seed, epochs=None) -> nn.Module")
    from audit.usercode import guard

    # Whatever the user's functions raise (SystemExit too) is a failed step that names them.
    model_factory, train_fn = guard(model_factory, "model_factory"), guard(train_fn, "train_fn")
    channels = int(x_train.shape[1])
    mf = ModelFile(model=original.eval(), arch=_name(model_factory) or type(original).__name__,
                   input_shape=tuple(int(d) for d in x_train.shape[1:]), num_classes=classes,
                   mean=[0.0] * channels, std=[1.0] * channels, data=None,
                   recipe=recipe.to_dict() if recipe is not None else None, kind="memory",
                   factory=model_factory, train_fn=train_fn)
    with torch.no_grad():
        mf.metrics = {"train_accuracy": float((original(x_train[:4096]).argmax(1) == y_train[:4096]).float().mean())}
    unlearned_mf = None
    if isinstance(unlearned, nn.Module):
        unlearned_mf = dataclasses.replace(mf, model=unlearned.eval(), kind="memory")
        options["original"] = Path("<memory: original>")
        method = "auto"
    elif isinstance(unlearned, str):
        method = unlearned
    else:
        raise InputError("unlearned must be an nn.Module unlearned elsewhere or a method name "
                         "(auto, amnesiac, relabel, finetune, retrain, none)")
    known = AuditOptions.names() - {"method"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"audit.evaluate got an unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    opts = AuditOptions.from_flat(Path("<memory>"), ["<memory>"], method=method,
                                  out=Path(out) if out is not None else None,
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
