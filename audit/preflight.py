"""Checks that the models fit the data and each other, run once before any training.

A model that cannot take the data, or answers with the wrong number of class scores, used
to load, train every reference model and only then fail (or, worse, be audited): a factory
with 20 outputs on 10-class data scored 4.7% and passed. One probe forward pass on a few
real images finds it first (exit 2). It runs with two batch sizes other than 1, so that a
``.pt2`` exported with a fixed batch size fails here, whatever that size was.

After the run, :func:`chance_warnings` flags a model whose test accuracy is near chance:
its verdict measures nothing (most likely a wrong ``--arch``, ``--normalize`` or ``--data``).
"""

from __future__ import annotations

import math
import os

import torch

from attacks.registry import NEEDS_REFERENCE
from audit.archive_loading import ForwardOnly
from audit.errors import InputError
from audit.forget import ForgetSet
from audit.modelfile import ModelFile, file_sha256
from audit.options import AuditOptions
from reports.document import Target

# Two batch sizes, neither 1: a graph exported with a fixed batch size matches at most one.
PROBE_BATCHES = (3, 5)


def _name(mf: ModelFile, fallback: str) -> str:
    return str(mf.path) if mf.path is not None else fallback


def probe_forward(mf: ModelFile, data, what: str = "the model") -> None:
    """One forward pass per probe batch on real training images: the output must be
    (N, num_classes). :class:`InputError` (one line) otherwise."""
    name = _name(mf, what)
    x = data.x_train[: max(PROBE_BATCHES)]
    k = data.num_classes
    model = mf.model
    was_training = model.training
    model.eval()
    try:
        for n in PROBE_BATCHES:
            if n > len(x):
                continue
            try:
                with torch.no_grad():
                    out = model(x[:n])
            except Exception as exc:  # noqa: BLE001 - a shape mismatch, a fixed-size graph's guard, a user's assert
                text = " ".join(str(exc).split())[:160] or type(exc).__name__
                hint = ("it was exported with a fixed batch size: export it again with a dynamic batch dimension "
                        "(torch.export.Dim)" if any(isinstance(m, ForwardOnly) for m in model.modules()) else
                        "check --arch, --arch-args and --data")
                raise InputError(f"{name} fails on a batch of {n} {'x'.join(map(str, data.input_shape))} images of "
                                 f"{data.spec} ({type(exc).__name__}: {text}); {hint}") from None
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, k):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise InputError(f"{name} answers {n} images of {data.spec} with output {shape}, not ({n}, {k}): "
                                 f"one score per class of the {k} classes; the model does not fit this data "
                                 "(check --arch, --arch-args and --data)")
    finally:
        model.train(was_training)


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Floating parameter and buffer shapes by name, without the wrappers' ``net.`` and ``module.``."""
    out = {}
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            while key.startswith(("net.", "module.")):  # Classifier and ForwardOnly wrappers
                key = key.split(".", 1)[1]
            out[key] = tuple(value.shape)
    return out


def check_pair(original: ModelFile, unlearned: ModelFile) -> None:
    """A model unlearned elsewhere that is the ``--original`` file itself is said (the no-op
    control), and it must carry every weight of the original by name and shape (archives record
    no architecture, and a toolkit file's name can hide another width)."""
    a, b = original.path, unlearned.path
    if a is not None and b is not None and a.is_file() and b.is_file():
        same = os.path.samefile(a, b) or (a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b))
        if same:  # allowed (it is the no-op control, which must fail), but never without a word
            unlearned.assumptions.append(
                f"{b} is the same model as --original {a}, so nothing was unlearned: this run is the no-op control, "
                "which must not pass (to audit an unlearned model, pass it first)")
    want, have = _layout(original.model), _layout(unlearned.model)
    if not have or not want:
        return  # a graph that keeps its weights as constants: only the probe's output shape can be checked
    # Every weight of the original, by name and shape (an archive may add its normalisation's mean and std).
    missing = sorted(set(want) - set(have))
    wrong = [k for k in want if k in have and want[k] != have[k]]
    if missing or wrong:
        detail = (f"{wrong[0]} has shape {list(have[wrong[0]])}, not {list(want[wrong[0]])}" if wrong
                  else f"it has no {missing[0]}")
        raise InputError(f"{b} is not the network of --original {a} ({detail}); pass the model that was "
                         "unlearned from it")


def check_before_work(mf: ModelFile, data, unlearned: ModelFile | None = None) -> None:
    """Every model fits the data (one probe forward pass each) and, with ``--original``, each other;
    an archive given a recipe it cannot be trained with says exactly what to pass instead."""
    why = mf.cannot_rebuild
    if why is not None and (mf.recipe is not None or mf.train_fn is not None):
        raise InputError(f"{_name(mf, 'the model')} cannot be rebuilt to train reference models and retrains with "
                         f"the recipe given: {why}; pass --arch package.module:factory (a fresh model of this "
                         "architecture) as well, or --reference none --mia loss for a weaker audit")
    probe_forward(mf, data, "the model")
    if unlearned is not None:
        check_pair(mf, unlearned)
        probe_forward(unlearned, data, "the unlearned model")


def chance_level(y_test: torch.Tensor, num_classes: int) -> float:
    """The accuracy of always answering the commonest test class (at least 1/num_classes)."""
    counts = torch.bincount(y_test.long(), minlength=num_classes).float()
    return max(float(counts.max() / counts.sum()) if len(y_test) else 0.0, 1.0 / max(num_classes, 1))


def near_chance(acc: float | None, chance: float, n: int) -> bool:
    """Whether test accuracy ``acc`` on ``n`` examples is within three standard errors (or
    5 points) of ``chance``: indistinguishable from a model that learnt nothing."""
    if acc is None or not isinstance(acc, (int, float)) or math.isnan(acc) or n <= 0:
        return False
    margin = max(0.05, 3 * math.sqrt(chance * (1 - chance) / n))
    return acc < chance + margin


def chance_warnings(targets: list[Target], y_test: torch.Tensor, num_classes: int) -> list[str]:
    """One note per model (original, unlearned) whose test accuracy is near chance, for the summary and report."""
    chance = chance_level(y_test, num_classes)

    def line(who: str, test: float) -> str:
        return (f"Warning: {who} scores {test:.1%} on the test split, near chance ({chance:.1%}): a verdict on it "
                "measures nothing. Most likely the --arch, --normalize or --data does not match how the model was "
                "trained.")

    originals = [t.accuracy.original.test for t in targets if t.accuracy.original is not None]
    original = next((v for v in originals if v is not None), None)
    if near_chance(original, chance, len(y_test)):
        return [line("the original model", original)]  # the unlearned models then say nothing more
    lines = []
    for t in targets:
        test = t.accuracy.unlearned.test if t.accuracy.unlearned is not None else None
        if near_chance(test, chance, len(y_test)):
            lines.append(line(f"the unlearned model of {t.name}", test))
    return lines


def _check_pair(original: ModelFile, unlearned: ModelFile, data) -> None:
    """An unlearned model audited against ``--original`` must be the same network on the same data."""
    same = ((original.arch == unlearned.arch or unlearned.kind == "torchscript")
            and tuple(original.input_shape) == tuple(unlearned.input_shape)
            and original.num_classes == unlearned.num_classes)
    if not same:
        raise InputError(f"{unlearned.path} ({unlearned.arch}, {'x'.join(map(str, unlearned.input_shape))}, "
                         f"{unlearned.num_classes} classes) is not the same network as --original {original.path} "
                         f"({original.arch}, {'x'.join(map(str, original.input_shape))}, {original.num_classes} "
                         "classes); pass the model that was unlearned from it")
    names = set(original.model.state_dict())
    if unlearned.kind != "torchscript" and set(unlearned.model.state_dict()) != names:
        raise InputError(f"{unlearned.path} has other weights than --original {original.path}; "
                         "pass the model that was unlearned from it")
    recorded = (unlearned.data or {}).get("sha256")
    if recorded and recorded != data.sha256():
        raise InputError(f"{unlearned.path} was unlearned on other data than --original {original.path} "
                         f"was trained on ({data.spec}); pass the matching --data")


def check_fit(opts: AuditOptions, mf: ModelFile, data, forget_sets: list[ForgetSet],
              unlearned_given: ModelFile | None) -> None:
    """Bad input found before any work: the pieces must fit, and what the run needs must be there."""
    source = opts.inputs.original or opts.inputs.model
    if tuple(mf.input_shape) != tuple(data.input_shape) or mf.num_classes != data.num_classes:
        raise InputError(f"the data {data.spec!r} ({'x'.join(map(str, data.input_shape))} images, {data.num_classes} "
                         f"classes) does not fit {source} ({'x'.join(map(str, mf.input_shape))}, "
                         f"{mf.num_classes} classes); pass the --data the model was trained on")
    if unlearned_given is not None:
        _check_pair(mf, unlearned_given, data)
    check_before_work(mf, data, unlearned_given)  # one probe forward pass per model, before any training
    if not mf.trainable and (opts.verdict.reference != "none" or NEEDS_REFERENCE & set(opts.attack.mia_attacks)):
        raise InputError(f"{source} carries no training recipe, so reference models cannot be trained; pass "
                         "--arch package.module:factory with --train package.module:fit (or a recipe: --epochs, "
                         "--lr, ...), or --reference none --mia loss for a weaker audit")
    if not mf.unlearnable and unlearned_given is None and opts.method != "none":
        raise InputError(f"{source} is a TorchScript archive, which cannot be unlearned here; unlearn it elsewhere "
                         "and audit the result with --original, or pass its state_dict with --arch")
    for fs in forget_sets:
        if len(fs) >= len(data.y_train):
            raise InputError(f"--forget {fs.spec} selects every training example; nothing would be left to keep")
