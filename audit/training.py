"""Training recipes: ``audit train`` builds a model, trains it with an update log, saves it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from audit.data import Dataset, load_dataset
from audit.errors import InputError
from audit.forget import parse_forget
from audit.modelfile import ModelFile, save_model
from audit.models import build_model, check_forward
from audit.progress import progress_bar
from unlearning import TrainConfig, UpdateRecorder, accuracy, fit, per_class_accuracy
from unlearning.training import make_optimizer

LOG_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}


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
    return out.with_name(out.name + ".updates")


def train_model(
    data: Dataset,
    out: str | os.PathLike[str],
    arch: str = "smallcnn",
    config: TrainConfig = TrainConfig(),
    record: str = "none",
    log_dtype: str = "float32",
    arch_args: dict | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train from scratch and save ``out``; with ``record`` also write ``out.updates/``."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'model.pt'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"--out {out}: {out.parent} is a file, not a folder")
    if log_dtype not in LOG_DTYPES:
        raise InputError(f"--log-dtype {log_dtype!r} is unknown; use float32, float16 or float64")
    try:
        config.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if config.epochs < 1:
        raise InputError(f"--epochs must be at least 1 to train a model, not {config.epochs}")
    record_ids = _record_ids(record, data)
    mean, std = data.channel_stats()
    model = build_model(arch, data.input_shape[0], data.num_classes, mean, std, arch_args, seed=config.seed)
    check_forward(model, data.input_shape, data.num_classes, arch)
    recorder = None
    optimizer = make_optimizer(model, config)
    if record != "none":
        recorder = UpdateRecorder(model, log_dir_for(out), record_ids=record_ids, dtype=LOG_DTYPES[log_dtype],
                                  record=record, all_ids=torch.arange(len(data.y_train)))
        optimizer = recorder.wrap(optimizer)
    try:
        steps = config.epochs * ((len(data.y_train) + config.batch_size - 1) // config.batch_size)
        start = time.perf_counter()
        with progress_bar(f"training {arch} on {data.spec}", steps, show_progress) as advance:
            fit(model, data.x_train, data.y_train, config, optimizer=optimizer, on_step=lambda *_: advance(1))
        seconds = time.perf_counter() - start
        summary = recorder.close() if recorder else None
        metrics = evaluate(model, data)
        metrics["train_seconds"] = seconds
        mf = ModelFile(
            model=model, arch=arch, input_shape=data.input_shape, num_classes=data.num_classes, mean=mean, std=std,
            arch_args=dict(arch_args or {}), data=data.describe(), recipe={**config.to_dict(), "arch": arch},
            seed=config.seed, metrics=metrics,
            update_log=None if summary is None else {"dir": log_dir_for(out).name, "record": record,
                                                     "dtype": log_dtype, **summary},
            path=out,
        )
        save_model(out, mf)
    except BaseException:
        # A failed or interrupted run leaves no half-written log behind (the model file is
        # written last, atomically, so it is either absent or the previous one).
        if recorder is not None:
            recorder.discard()
        raise
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
