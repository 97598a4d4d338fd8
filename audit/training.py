"""Training recipes: ``audit train`` builds a model, trains it with an update log, saves it.

A model file and its update log are replaced as one unit. The model file names its log
folder and records the log's digest, and a new log never takes the name of a log that
an existing model file may name: the first log of ``m.pt`` is ``m.pt.updates``, a log
written over an existing ``m.pt`` gets a fresh ``m.pt.updates.<8 hex>``. The one
commit point is the atomic rename of the new model file onto ``m.pt``; the old log is
removed only after it. A kill -9 at any moment therefore leaves ``m.pt`` with the log it
names, the old pair before the rename and the new pair after; what the killed run left
(an unclosed ``*.partial`` log, a closed log no model names, a staged ``.m.pt.*.tmp``,
an old log half-deleted under a hidden ``.m.pt.updates*.trash-*`` name) is never named by
a model file and is swept by the next successful ``audit train --out m.pt``.

Crash-test stages (``AUDIT_FAULT_STOP=<stage>`` exits 137 there, see :mod:`audit.atomic`),
in order:

``log-open``
    training finished, the new log is still ``<dir>.partial`` (not closed).
``log-closed``
    the new log is closed under its final name; no model file names it yet.
``model-staged``
    the new model file is written and fsynced under a temporary name, not renamed.
``model-replaced``
    the new model file is in place; the old log has not been touched.
``old-log-removing``
    the old log has been renamed to its hidden trash name, not yet deleted.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from audit.atomic import crash_point, sweep_stale
from audit.data import Dataset, load_dataset
from audit.errors import InputError, unknown_choice
from audit.forget import parse_forget
from audit.modelfile import ModelFile, save_model
from audit.models import build_model, check_forward
from audit.progress import progress_bar
from unlearning import TrainConfig, UpdateRecorder, accuracy, fit, per_class_accuracy
from unlearning.packing import PackedBatchSampler
from unlearning.training import make_optimizer, steps_per_epoch

LOG_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}
PACKING = ("on", "off")


@dataclass
class TrainResult:
    model_file: ModelFile
    seconds: float
    log_bytes: int
    log_batches: int
    total_steps: int


def evaluate(model: torch.nn.Module, data: Dataset) -> dict:
    """Train and test accuracy and per-class test accuracy (fractions in [0, 1])."""
    return {
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "per_class_test_accuracy": per_class_accuracy(model, data.x_test, data.y_test, data.num_classes),
    }


def log_dir_for(out: Path) -> Path:
    """The first log name of a model file: ``<out>.updates``."""
    return out.with_name(out.name + ".updates")


def fresh_log_dir(out: Path) -> Path:
    """A log folder for a new model at ``out`` that no existing model file can name.

    ``<out>.updates`` when there is neither a model at ``out`` nor a folder of that name,
    else ``<out>.updates.<8 hex>``.
    """
    first = log_dir_for(out)

    def taken(d: Path) -> bool:
        return d.exists() or d.with_name(d.name + ".partial").exists()

    if not out.exists() and not taken(first):
        return first
    while True:
        candidate = out.with_name(f"{first.name}.{secrets.token_hex(4)}")
        if not taken(candidate):
            return candidate


def _names_log(model_path: Path, log_name: str) -> bool:
    """Whether the model file at ``model_path`` names the log folder ``log_name``."""
    try:
        doc = torch.load(model_path, map_location="cpu", weights_only=True)
        return isinstance(doc, dict) and (doc.get("update_log") or {}).get("dir") == log_name
    except Exception:  # noqa: BLE001 - absent or unreadable: it names nothing
        return False


def _sweep_logs(out: Path, keep: str | None) -> None:
    """After ``out`` was replaced: remove every log folder of ``out`` except ``keep``.

    Each folder is first renamed to a hidden trash name (atomic), so a kill during the
    deletion leaves a folder no model file names and that this sweep finds next time.
    """
    base = re.escape(out.name + ".updates")
    log_name = re.compile(rf"{base}(\.[0-9a-f]{{8}})?(\.partial)?")
    trash_name = re.compile(rf"\.{base}.*\.trash-[0-9a-f]+")
    for entry in sorted(out.parent.iterdir()):
        if entry.name == keep or not entry.is_dir():
            continue
        if log_name.fullmatch(entry.name):
            trash = out.parent / f".{entry.name}.trash-{secrets.token_hex(4)}"
            try:
                os.replace(entry, trash)
            except OSError:
                continue
            crash_point("old-log-removing")
            shutil.rmtree(trash, ignore_errors=True)
        elif trash_name.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
    sweep_stale(out)


def train_model(
    data: Dataset,
    out: str | os.PathLike[str],
    arch: str = "smallcnn",
    config: TrainConfig = TrainConfig(),
    record: str = "none",
    log_dtype: str = "float32",
    arch_args: dict | None = None,
    show_progress: bool = True,
    packing: str = "on",
) -> TrainResult:
    """Train from scratch and save ``out``; with ``record`` also write its update log.

    The model file and its log replace an earlier pair at ``out`` as one unit (see the
    module docstring); the log is ``out.updates/`` or, over an existing model,
    ``out.updates.<8 hex>/``, named in the model file. ``packing`` "on" (with a
    ``record`` spec that names some ids): the recordable examples are trained in batches
    of their own (:class:`~unlearning.packing.PackedBatchSampler`), so only about their
    share of the steps is recorded; "off": every batch is a random draw. The model file's
    ``update_log`` records which was used.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'model.pt'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"--out {out}: {out.parent} is a file, not a folder")
    if log_dtype not in LOG_DTYPES:
        raise unknown_choice("--log-dtype", log_dtype, ("float32", "float16", "float64"), "float32")
    try:
        config.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if config.epochs < 1:
        raise InputError(f"--epochs must be at least 1 to train a model, not {config.epochs}")
    if packing not in PACKING:
        raise unknown_choice("--packing", packing, ("on", "off"), "on")
    record_ids = _record_ids(record, data)
    # Packing needs a set of recordable ids: with "all" every batch is recorded anyway.
    sampler = None
    if packing == "on" and record_ids is not None:
        sampler = PackedBatchSampler(len(data.y_train), record_ids, config.batch_size, seed=config.seed)
    mean, std = data.channel_stats()
    model = build_model(arch, data.input_shape[0], data.num_classes, mean, std, arch_args, seed=config.seed)
    check_forward(model, data.input_shape, data.num_classes, arch)
    recorder = None
    optimizer = make_optimizer(model, config)
    log_dir = fresh_log_dir(out)
    if record != "none":
        recorder = UpdateRecorder(model, log_dir, record_ids=record_ids, dtype=LOG_DTYPES[log_dtype],
                                  record=record, all_ids=torch.arange(len(data.y_train)))
        optimizer = recorder.wrap(optimizer)
    try:
        per_epoch = len(sampler) if sampler is not None else steps_per_epoch(len(data.y_train), config.batch_size)
        steps = config.epochs * per_epoch
        start = time.perf_counter()
        with progress_bar(f"training {arch} on {data.spec}", steps, show_progress) as advance:
            fit(model, data.x_train, data.y_train, config, optimizer=optimizer, on_step=lambda *_: advance(1),
                batch_sampler=sampler)
        seconds = time.perf_counter() - start
        crash_point("log-open")
        summary = recorder.close() if recorder else None
        crash_point("log-closed")
        metrics = evaluate(model, data)
        metrics["train_seconds"] = seconds
        mf = ModelFile(
            model=model, arch=arch, input_shape=data.input_shape, num_classes=data.num_classes, mean=mean, std=std,
            arch_args=dict(arch_args or {}), data=data.describe(), recipe={**config.to_dict(), "arch": arch},
            seed=config.seed, metrics=metrics,
            update_log=None if summary is None else {"dir": log_dir.name, "record": record,
                                                     "dtype": log_dtype,
                                                     "packing": "on" if sampler is not None else "off",
                                                     **({"fill": sampler.fill} if sampler is not None else {}),
                                                     **summary},
            path=out,
        )
        save_model(out, mf, stage="model-staged")  # the commit point: the new pair replaces the old
    except BaseException:
        # A failed or interrupted run leaves no half-written log behind (the model file is
        # written last, atomically, so it is either absent or the previous one). An
        # interrupt that lands just after the rename must not delete the log it names.
        if recorder is not None and not _names_log(out, log_dir.name):
            recorder.discard()
        raise
    crash_point("model-replaced")
    _sweep_logs(out, keep=log_dir.name if summary is not None else None)
    return TrainResult(mf, seconds, summary["bytes"] if summary else 0, summary["recorded"] if summary else 0, steps)


def _record_ids(record: str, data: Dataset) -> torch.Tensor | None:
    """None records every batch; otherwise the ids whose batches are recorded."""
    if record in ("all", "none"):
        return None
    return parse_forget(record, data.y_train, data.num_classes).ids


def load_data_for(spec: str | None, root: str | None, mf: ModelFile | None = None,
                  loaded: Dataset | None = None) -> Dataset:
    """The data a command works on: ``--data`` if given (or ``loaded``), else what the model file names.

    Raises :class:`InputError` when it is the model's data spec but not the same arrays.
    """
    if spec is None and mf is not None and mf.data:
        spec, root = mf.data["spec"], root or mf.data.get("root")
    data = loaded if loaded is not None else load_dataset(spec or "digits", root)
    if mf is not None and mf.data and mf.data.get("sha256") and data.spec == mf.data.get("spec"):
        if data.sha256() != mf.data["sha256"]:
            raise InputError(f"the data {data.spec!r} differs from the data the model was trained on "
                             "(its digest does not match the one recorded in the model file)")
    return data
