"""``audit unlearn``: forget a set of training examples and write the unlearned model file.

The glue between model files, data specs, forget specs and the plain-torch methods of
:mod:`unlearning`. The output is a model file of the same format whose ``lineage``
records the parent file (path and SHA-256), the method, what was forgotten, the
epochs, seed, time and the method's details. ``audit run`` chooses its method here
(:func:`choose_method`) and unlearns with :func:`unlearn`, which hands back the model only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from audit.data import Dataset, load_dataset
from audit.errors import InputError, unknown_choice
from audit.forget import ForgetSet, parse_forget
from audit.forget_accuracy import forget_metrics
from audit.modelfile import ModelFile, file_sha256, load_model, save_model, say_assumptions
from audit.progress import progress_bar
from audit.training import evaluate, load_data_for
from unlearning import (
    AMNESIAC_REPAIR_EPOCHS,
    FINETUNE_EPOCHS,
    RELABEL_EPOCHS,
    RELABEL_SAMPLE_COPIES,
    AmnesiacRefused,
    TrainConfig,
    UnlearningResult,
    UpdateLog,
    UpdateLogError,
    amnesiac_unlearn,
    finetune_unlearn,
    relabel_unlearn,
    retrain_unlearn,
)
from unlearning.amnesiac import AMNESIAC_REPAIR_TOLERANCE, amnesiac_progress_total, default_repair
from unlearning.training import steps_per_epoch

METHODS = ("amnesiac", "relabel", "finetune", "retrain")


def _recipe(mf: ModelFile) -> TrainConfig | None:
    return TrainConfig.from_dict(mf.recipe) if mf.recipe else None


def default_epochs(method: str, mf: ModelFile) -> int:
    """Each method's default epochs (benchmarks/results/unlearning.md says why)."""
    if method == "amnesiac":
        return AMNESIAC_REPAIR_EPOCHS
    if method == "relabel":
        return RELABEL_EPOCHS
    if method == "finetune":
        return FINETUNE_EPOCHS
    recipe = _recipe(mf)
    return recipe.epochs if recipe else 0


def trusted_log_or_problem(mf: ModelFile, lazy_steps: bool = False) -> tuple[UpdateLog | None, str | None]:
    """(the model's update log opened with :meth:`UpdateLog.open_trusted`, None) or (None, what is wrong).

    Every file of the log is checked against the digest ``mf`` records (``log_sha256``);
    a model file written before that digest existed records only ``journal_sha256``, and
    then the journal is checked against it and every other file against the journal.
    ``lazy_steps``: step files are hashed as they are read rather than all now.
    """
    rec = mf.update_log
    if not rec or mf.log_dir is None:
        return None, f"{mf.path} has no amnesiac update log (train it with audit train --record SPEC)"
    log_sha256, journal_sha256 = rec.get("log_sha256"), rec.get("journal_sha256")
    if not log_sha256 and not journal_sha256:
        return None, (f"{mf.path} records no digest of its update log {mf.log_dir}, so the log cannot be checked "
                      "(retrain with audit train --record SPEC)")
    if not mf.log_dir.is_dir():
        return None, (f"the update log {mf.log_dir} that {mf.path} names is missing (a model file and its log "
                      "are copied and moved together)")
    try:
        log = UpdateLog.open_trusted(mf.log_dir, log_sha256 or None,
                                     journal_sha256=None if log_sha256 else journal_sha256, lazy_steps=lazy_steps)
    except UpdateLogError as exc:
        return None, str(exc)
    return log, None


def open_trusted_log(mf: ModelFile, lazy_steps: bool = False) -> UpdateLog:
    """The model's update log, every file checked against the digest ``mf`` records.

    The one way the CLI and the harness open a log they rely on. Raises
    :class:`InputError` (one line, ending in what to do) when there is no log or it does
    not verify. It does not check that the log covers a forget set: ``log.uncovered(ids)``.
    """
    log, problem = trusted_log_or_problem(mf, lazy_steps)
    if log is None:
        raise InputError(f"amnesiac unlearning refused: {problem}; use --method relabel instead, "
                         "which needs no update log")
    return log


@dataclass
class MethodChoice:
    """The unlearning method for one target and why; ``log``: the model's update log, opened
    and checked against its digest, when the choice (``auto``) had to open it to choose
    amnesiac. Hand it to :func:`unlearn` so that the log is not opened and hashed again."""

    name: str
    reason: str
    log: UpdateLog | None = None


def choose_method(requested: str, mf: ModelFile, forget: ForgetSet) -> MethodChoice:
    """The method ``requested``, or for ``auto``: amnesiac when the update log verifies and
    covers the target, relabel otherwise (with the reason)."""
    if requested != "auto":
        return MethodChoice(requested, f"requested with --method {requested}")
    if not mf.update_log:
        return MethodChoice("relabel", "the model has no update log, so amnesiac unlearning is impossible")
    # Every step file is hashed now: a log damaged anywhere is a reason to choose relabel,
    # not a failure halfway through the removal.
    log, problem = trusted_log_or_problem(mf)
    if log is None:
        return MethodChoice("relabel", f"the update log cannot be used ({problem})")
    missing = log.uncovered(forget.ids)
    if missing.numel():
        return MethodChoice("relabel", f"the update log does not cover {missing.numel()} of the {len(forget)} "
                                       "forget examples")
    return MethodChoice("amnesiac", "the update log covers every forget example", log)


def unlearn(
    mf: ModelFile,
    data: Dataset,
    forget: ForgetSet,
    method: str,
    epochs: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
    log: UpdateLog | None = None,
) -> UnlearningResult:
    """Unlearn ``forget`` from ``mf``'s model with ``method``; the result holds the new model.

    ``epochs``: for amnesiac the most repair epochs (the repair stops as soon as the retain
    accuracy is back within a point of the original's, and does not start when it already
    is), training epochs otherwise (None: the method's default; retrain defaults to the
    recipe's). ``seed`` draws relabel's wrong
    labels and the batch order (and retrain's initial weights). Batch size, learning
    rate and optimizer come from the model's recipe (toolkit defaults when it has none).
    ``log``: for amnesiac, the update log already opened with :func:`open_trusted_log`
    (:attr:`MethodChoice.log`); None opens it here, step files hashed as they are read.
    :func:`unlearning.amnesiac_unlearn` checks that the log fits the model and covers
    ``forget``. Raises :class:`InputError` for an unknown method, a log that cannot vouch
    for the removal, or ``retrain`` on a file without a recipe.
    """
    if method not in METHODS:
        raise unknown_choice("--method", method, METHODS)
    if not mf.unlearnable:
        raise InputError(f"{mf.path} is a TorchScript archive, which cannot be trained or saved as model.pt; "
                         "pass its state_dict with --arch instead")
    if epochs is not None and epochs < 0:
        raise InputError(f"--epochs must be 0 or more, not {epochs}")
    recipe = _recipe(mf)
    if method == "retrain" and recipe is None and mf.train_fn is None:
        raise InputError(f"{mf.path} carries no training recipe, so it cannot be retrained from scratch; "
                         "retrain needs a model.pt written by audit train")
    k = default_epochs(method, mf) if epochs is None else epochs
    config = dataclasses.replace(recipe or TrainConfig(), epochs=k, seed=seed)
    n_keep = len(data.y_train) - len(forget)
    steps = k * steps_per_epoch(n_keep, config.batch_size)
    x, y = data.x_train, data.y_train
    label = f"{method} unlearning {forget.spec}"

    if method == "amnesiac":
        config = default_repair(config, k)
        if log is None:  # step files are hashed as amnesiac_unlearn reads them: it reads only the removed ones
            log = open_trusted_log(mf, lazy_steps=True)
        with progress_bar(label, amnesiac_progress_total(log, n_keep, config), show_progress) as advance:
            try:
                # A class removal gets the full repair epoch: stopping once retain accuracy is back left the
                # class reconstructable (MI-Face: 14 of 16 inversions recognised against 1-2 for retrained models
                # on the demo's class 3), while the epoch overwrites it. Sample removals repair adaptively.
                tolerance = None if forget.classes else AMNESIAC_REPAIR_TOLERANCE
                return amnesiac_unlearn(mf.model, log, forget.ids, repair=config if k else None, x_train=x,
                                        y_train=y, on_progress=advance, seed=seed, tolerance=tolerance)
            except AmnesiacRefused as exc:
                raise InputError(str(exc).replace("use the relabel method instead", "use --method relabel instead")) from None
    if method == "relabel":
        # Class forgetting relabels each example once; individual samples are replaced
        # by a few relabelled copies (Graves et al. 2021, Sec. 5).
        copies = 1 if forget.classes else RELABEL_SAMPLE_COPIES
        n_train = n_keep + copies * len(forget)
        with progress_bar(label, k * steps_per_epoch(n_train, config.batch_size), show_progress) as adv:
            return relabel_unlearn(mf.model, x, y, forget.ids, config, num_classes=data.num_classes, seed=seed,
                                   copies=copies, on_progress=adv, train_fn=mf.train_fn)
    if method == "finetune":
        with progress_bar(label, steps, show_progress) as advance:
            return finetune_unlearn(mf.model, x, y, forget.ids, config, on_progress=advance, train_fn=mf.train_fn)
    with progress_bar(label, steps, show_progress) as advance:
        return retrain_unlearn(lambda: mf.fresh_model(seed=seed), x, y, forget.ids, config,
                               on_progress=advance, train_fn=mf.train_fn)


def unlearn_model(
    mf: ModelFile,
    data: Dataset,
    forget: ForgetSet,
    method: str,
    epochs: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
    log: UpdateLog | None = None,
) -> tuple[ModelFile, UnlearningResult]:
    """:func:`unlearn`, then the new model file: its accuracies (``metrics``) and its
    ``lineage`` (parent file and digest, method, what was forgotten, epochs, seed, time).
    ``audit unlearn`` writes it; the audit needs only the model (:func:`unlearn`)."""
    result = unlearn(mf, data, forget, method, epochs, seed, show_progress, log)
    k = default_epochs(method, mf) if epochs is None else epochs
    accuracies = forget_metrics(result.model, data, forget)
    metrics = {**evaluate(result.model, data), **accuracies}
    lineage = {
        "parent": str(mf.path) if mf.path else None,
        "parent_sha256": file_sha256(mf.path) if mf.path and Path(mf.path).is_file() else None,
        "method": method,
        "forget": forget.describe(),
        "epochs": k,
        "seed": seed,
        "seconds": result.seconds,
        "details": result.details,
        "accuracy": accuracies,
        "parent_lineage": mf.lineage,
    }
    out = dataclasses.replace(mf, model=result.model, metrics=metrics, update_log=None, lineage=lineage,
                              data=data.describe(), path=None)
    return out, result


def _load(model_path: Path, data: str | None, data_root: str | None, arch: str | None) -> tuple[ModelFile, Dataset]:
    """The model file and its data; a bare state_dict takes its shape from ``--data``."""
    if data is None:
        mf = load_model(model_path, arch=arch)
        return mf, load_data_for(None, data_root, mf)
    ds = load_dataset(data, data_root)
    mf = load_model(model_path, arch=arch, input_shape=ds.input_shape, num_classes=ds.num_classes)
    if mf.data and mf.data.get("spec") == ds.spec and mf.data.get("sha256") not in (None, ds.sha256()):
        raise InputError(f"the data {ds.spec!r} differs from the data {model_path} was trained on "
                         "(its digest does not match the one recorded in the model file)")
    if tuple(mf.input_shape) != ds.input_shape or mf.num_classes != ds.num_classes:
        raise InputError(f"--data {data} has inputs {ds.input_shape} and {ds.num_classes} classes, but {model_path} "
                         f"expects {tuple(mf.input_shape)} and {mf.num_classes}")
    return mf, ds


def unlearn_command(
    model_path: Path,
    *,
    forget: str,
    method: str,
    epochs: int | None,
    seed: int,
    out: Path,
    data: str | None,
    data_root: str | None,
    arch: str | None,
    quiet: bool,
) -> None:
    """``audit unlearn``: checks every input before any work, writes ``out`` atomically, prints one line."""
    out = Path(out)
    if method not in METHODS:
        raise unknown_choice("--method", method, METHODS)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'unlearned.pt'}")
    if any(parent.exists() and not parent.is_dir() for parent in out.parents):
        raise InputError(f"--out {out} lies under a file, not a folder; choose another path")
    if Path(model_path).exists() and out.resolve() == Path(model_path).resolve():
        raise InputError(f"--out {out} is the input model; write the unlearned model to another file")
    if epochs is not None and epochs < 0:
        raise InputError(f"--epochs must be 0 or more, not {epochs}")
    if epochs == 0 and method != "amnesiac":
        # Amnesiac's epochs are repair epochs (0: subtraction alone); the others would do nothing
        # (or, for retrain, write an untrained model) yet be labelled as unlearned.
        raise InputError(f"--epochs {epochs} with --method {method} would leave the model "
                         f"{'untrained' if method == 'retrain' else 'unchanged'}; give --epochs 1 or more")
    mf, ds = _load(Path(model_path), data, data_root, arch)
    forget_set = parse_forget(forget, ds.y_train, ds.num_classes)
    if method == "retrain" and epochs is None and mf.recipe and default_epochs(method, mf) < 1:
        raise InputError(f"{model_path}'s recipe trains for {default_epochs(method, mf)} epochs, so retraining would "
                         "write an untrained model; give --epochs 1 or more")
    if len(forget_set) >= len(ds.y_train):
        raise InputError(f"forget spec {forget_set.spec!r} selects all {len(ds.y_train)} training examples, leaving no "
                         "retain set to keep or measure; forget fewer examples")
    if method == "retrain" and mf.recipe is None and mf.train_fn is None:
        raise InputError(f"{mf.path} carries no training recipe, so it cannot be retrained from scratch; "
                         "retrain needs a model.pt written by audit train")
    say_assumptions(mf)  # every input checked: now say what loading assumed
    start = time.perf_counter()
    new, result = unlearn_model(mf, ds, forget_set, method, epochs, seed, show_progress=not quiet)
    save_model(out, new)
    if quiet:
        return
    import typer

    m = new.metrics
    extra = ""
    if method == "amnesiac":
        d = result.details
        extra = f", removed {d['batches_removed']}/{d['total_steps']} batches ({d['fraction_of_batches_removed']:.1%}), "
        repair = d.get("repair")
        if repair is None:
            extra += f"{d['repair_epochs']} repair epoch{'' if d['repair_epochs'] == 1 else 's'}"
        elif not repair["rounds_run"]:
            extra += (f"no repair needed (retain accuracy {repair['retain_accuracy_after_round'][0]:.1%}, "
                      f"original {repair['original_retain_accuracy']:.1%})")
        else:
            cap = default_epochs(method, mf) if epochs is None else epochs
            extra += (f"repaired {repair['epochs_run']:g} of at most {cap} epochs ({repair['stopped']}; retain accuracy "
                      f"{repair['retain_accuracy_after_round'][0]:.1%} -> "
                      f"{repair['retain_accuracy_after_round'][repair['round_kept']]:.1%}, original "
                      f"{repair['original_retain_accuracy']:.1%})")
    test_what = "test accuracy (kept classes)" if forget_set.classes else "test accuracy"
    typer.echo(f"wrote {out}: {method} forgot {forget_set.spec} ({len(forget_set)} examples): "
               f"forget accuracy {m['forget_accuracy']:.1%}, retain accuracy {m['retain_accuracy']:.1%}, "
               f"{test_what} {m['test_accuracy_kept_classes']:.1%}{extra}, {time.perf_counter() - start:.1f}s")
