"""Amnesiac unlearning: subtract the recorded updates of every batch that held forget data.

Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021, Sec. 4: trained
weights are the initial weights plus the sum of every batch's update,
``theta_T = theta_0 + sum_t delta_t``, so forgetting is
``theta_T - sum_{t in S} delta_t`` where S are the steps whose batch held an example
to forget. Each delta here is the exact change of one ``optimizer.step()`` (Adam's
moments and scaling are baked in, as in the paper's notebooks).

Better than the notebooks:

* buffer deltas (BatchNorm running mean and variance) are subtracted too; the
  notebooks restore only ``weight``/``bias``. Integer buffers (``num_batches_tracked``)
  are not recorded and keep their final count; they only matter for BatchNorm with
  ``momentum=None``.
* the sum is formed in float64 and cast back once, so a float64 log undoes a step bit
  for bit and a float32 log to within float32 rounding.
* the log must verify and cover every forget id, or the method refuses rather than
  leave forget data silently in place. It is opened with
  :meth:`~unlearning.update_log.UpdateLog.open_trusted`: closed, header, covered ids and
  journal checked against the log's digest (``log_sha256``, which ``audit`` keeps in the
  model file), every step file present with its size. Steps are chosen by the batch ids
  in that verified journal, so only the removed steps' files are read, each checked
  against its SHA-256 as it is read.

* BatchNorm's running statistics are re-measured after the subtraction (given the
  training data): subtracting part of a running average's updates is no inverse, and the
  subtracted statistics no longer match the weights (digits, class 3 removed from a
  packed model, seeds 0-2: the other classes' test accuracy 60.6% as subtracted, 99.1%
  with the statistics re-measured on 256 retained examples, retraining 99.5%;
  ``benchmarks/results/packing-cost-digits.md``).
  The weights are exact, so the statistics that go with them are measured exactly, on
  retained examples only (:mod:`unlearning.batchnorm`); no weight changes.
* the repair is adaptive: it runs in quarter epochs only while the retain accuracy
  (on a seeded probe of retained examples) is more than ``tolerance`` below the
  original model's, up to the cap the repair recipe's epochs set, and keeps the best
  state it saw, so a removal that broke nothing gets no repair and a repair never
  leaves the probe worse than it found it.

What it cannot undo: each later update was computed at weights that the removed steps
had shaped, so removal is not retraining (the paper's accuracy drop beyond ~1% of
batches, hence the optional repair). Optimizer state is not part of a model: Adam's
moments from forgotten batches are gone with the optimizer, not rewound, and the
repair starts a fresh optimizer.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time

import torch
from torch import nn

from unlearning.batchnorm import reestimate_batchnorm
from unlearning.finetune import ProgressCallback, UnlearningResult, retain_mask, train_steps
from unlearning.training import TrainConfig, accuracy, steps_per_epoch
from unlearning.update_log import UpdateLog, UpdateLogError

#: Default repair: one epoch at an eighth of the recipe's batch size and twice its learning
#: rate, chosen on tuning seeds 10-12 (benchmarks/results/amnesiac_repair.md) and judged
#: on seeds 0-2 (benchmarks/results/unlearning.md).
AMNESIAC_REPAIR_EPOCHS = 1
AMNESIAC_REPAIR_BATCH_DIVISOR = 8
AMNESIAC_REPAIR_LR_FACTOR = 2.0
#: Adaptive repair: stop once the retain accuracy on the probe is within this many points
#: (a fraction) of the original model's on the same examples.
AMNESIAC_REPAIR_TOLERANCE = 0.01
#: Repair rounds per epoch: the retain accuracy is checked after each.
REPAIR_ROUNDS_PER_EPOCH = 4
#: Retained examples drawn (seeded) to check the retain accuracy during an adaptive repair.
PROBE_EXAMPLES = 2048
#: Of those, the first ones re-measure BatchNorm after the subtraction: one batch. On digits
#: (class 3, packed) 128 to 1,215 examples all gave the other classes 99.5-99.75% test
#: accuracy, and the pass costs time in proportion (0.07 s for 256, 0.28 s for 1,215 on a
#: loaded core, against a removal of 0.2 s).
BATCHNORM_EXAMPLES = 256


class AmnesiacRefused(UpdateLogError):
    """The update log cannot vouch for removing the forget set; relabel needs no log."""


def _refuse(reason: str) -> AmnesiacRefused:
    return AmnesiacRefused(f"amnesiac unlearning refused: {reason}; use the relabel method instead, "
                           "which needs no update log")


def open_log(log: UpdateLog | str | os.PathLike[str], log_sha256: str | None = None) -> UpdateLog:
    """Open a log with :meth:`UpdateLog.open_trusted`, turning any failure into :class:`AmnesiacRefused`.

    ``log_sha256``: the digest the log's owner recorded (``recorder.close()["log_sha256"]``);
    without it the log is checked against its own journal only. Each step file's SHA-256
    is checked by :func:`amnesiac_unlearn` as it reads the file (``lazy_steps``), so the
    removal reads the log once. An :class:`UpdateLog` passed in is returned as it is: its
    opener vouches for it.
    """
    if isinstance(log, UpdateLog):
        return log
    try:
        return UpdateLog.open_trusted(log, log_sha256, lazy_steps=True)
    except UpdateLogError as exc:
        raise _refuse(str(exc)) from None


def check_log(log: UpdateLog, model: nn.Module, forget_ids: torch.Tensor) -> None:
    """Raise :class:`AmnesiacRefused` unless ``log`` is closed, fits ``model`` and covers ``forget_ids``."""
    if not log.closed:
        raise _refuse(f"the update log {log.path} was never closed (training stopped before it ended), "
                      "so the model it belongs to is not the one given")
    params = [k for k, _ in model.named_parameters()]
    buffers = [k for k, b in model.named_buffers() if b.is_floating_point()]
    if log.header.get("param_names") != params or log.header.get("buffer_names") != buffers:
        raise _refuse(f"the update log {log.path} records other tensors than this model has; "
                      "it belongs to another architecture")
    missing = log.uncovered(forget_ids)
    if missing.numel():
        raise _refuse(f"the update log {log.path} records the batches of {log.header.get('record')!r}, "
                      f"which leaves {missing.numel()} of the {forget_ids.numel()} forget ids uncovered "
                      f"(first: {int(missing[0])})")


def default_repair(recipe: TrainConfig, epochs: int = AMNESIAC_REPAIR_EPOCHS) -> TrainConfig:
    """The repair recipe: the original's optimizer, ``epochs`` passes in smaller, larger steps.

    Removing the batches of a whole class (or of a few percent of examples trained on
    for many epochs) removes most steps and leaves weights near their initial state.
    One pass at the original batch size is then too few steps to recover (digits,
    class 3: ~80% test accuracy). The same examples in eight times as many steps at
    twice the learning rate come within ~1 point of retraining on the tuning seeds.
    """
    return dataclasses.replace(recipe, epochs=epochs,
                               batch_size=max(1, recipe.batch_size // AMNESIAC_REPAIR_BATCH_DIVISOR),
                               lr=recipe.lr * AMNESIAC_REPAIR_LR_FACTOR)


def amnesiac_unlearn(
    model: nn.Module,
    log: UpdateLog | str | os.PathLike[str],
    forget_ids: torch.Tensor,
    *,
    log_sha256: str | None = None,
    repair: TrainConfig | None = None,
    x_train: torch.Tensor | None = None,
    y_train: torch.Tensor | None = None,
    on_progress: ProgressCallback | None = None,
    tolerance: float | None = AMNESIAC_REPAIR_TOLERANCE,
    seed: int = 0,
) -> UnlearningResult:
    """Remove the recorded steps that saw ``forget_ids`` from a copy of ``model``.

    ``model`` must be in the state its training ended in (the log's last step).
    ``log``: an :class:`UpdateLog` opened with :meth:`UpdateLog.open_trusted`, or its
    folder, which is opened that way here against ``log_sha256`` (the digest
    ``recorder.close()`` returned; strongly advised: without it a rewritten journal goes
    unnoticed). With ``x_train``/``y_train`` (N, C, H, W)/(N,), the full training set,
    BatchNorm's running statistics are re-measured after the subtraction on
    :data:`BATCHNORM_EXAMPLES` retained examples drawn with ``seed``.

    ``repair``: when given with ``epochs > 0``, fine-tune the result on the retained
    examples (Graves et al. 2021, Sec. 6.2: one epoch brings MNIST non-target accuracy
    from 95.2% back to 98.9%). With ``tolerance`` (a fraction; default 1 point) the
    repair is adaptive: rounds of a quarter epoch while the probe's retain accuracy is
    more than ``tolerance`` below the original model's on the same examples, at most
    ``repair.epochs`` epochs, keeping the best state seen (none at all when the removal
    left the model within tolerance); ``tolerance=None`` repairs ``repair.epochs``
    epochs regardless. Progress: one unit per log entry scanned, then one per repair
    step. Raises :class:`AmnesiacRefused` when the log is missing, fails its
    checksums, was never closed, or does not cover the forget set.
    """
    start = time.perf_counter()
    forget_ids = torch.as_tensor(forget_ids, dtype=torch.int64).flatten().unique()
    log = open_log(log, log_sha256)
    check_log(log, model, forget_ids)
    repair_epochs = repair.epochs if repair is not None else 0
    if repair_epochs and (x_train is None or y_train is None):
        raise ValueError("amnesiac repair needs x_train and y_train")

    unlearned = copy.deepcopy(model)
    params = dict(unlearned.named_parameters())
    buffers = {k: b for k, b in unlearned.named_buffers() if b.is_floating_point()}
    targets = {f"p/{k}": p for k, p in params.items()}
    targets.update({f"b/{k}": b for k, b in buffers.items()})
    # Sum of removed deltas, in float64: summing many small float32 deltas in float32
    # would add rounding error of its own (see the recorder's note on exactness).
    total = {k: torch.zeros(t.shape, dtype=torch.float64) for k, t in targets.items()}
    forget_sorted = forget_ids.sort().values
    forget_set = set(forget_sorted.tolist())
    removed, removed_bytes, removed_ids = 0, 0, []
    for entry in log.entries:
        if entry.ids is not None and forget_set.isdisjoint(entry.ids):
            if on_progress is not None:
                on_progress(1)
            continue  # the journal says this batch held no forget id: nothing to read
        # One read per file, verified against the journal's SHA-256 as it is used.
        try:
            step = log.read_step(entry)
        except UpdateLogError as exc:
            raise _refuse(str(exc)) from None
        ids = step.pop("ids")
        if not forget_set.isdisjoint(ids.tolist()):
            if step.keys() != total.keys():
                raise _refuse(f"{log.path / entry.file} stores other tensors than this model has")
            for key, delta in step.items():
                if delta.shape != total[key].shape:
                    raise _refuse(f"{log.path / entry.file} stores {key!r} with shape {list(delta.shape)}, but this "
                                  f"model's is {list(total[key].shape)}: the log belongs to another architecture")
                total[key].add_(delta)  # computed in float64: the float32 delta converts exactly
            removed += 1
            removed_bytes += entry.bytes
            removed_ids.append(ids)
        if on_progress is not None:
            on_progress(1)
    kept_variances = 0
    with torch.no_grad():
        for key, t in targets.items():
            new = (t.detach().to(torch.float64) - total[key]).to(t.dtype)
            if key.endswith("running_var"):
                # Subtracting some of a running average's updates is not an exact inverse: with
                # packed batches (a part of the steps removed) a variance can come out at or
                # below 0, and normalising by its square root gives NaN. Such channels keep
                # the trained model's estimate (the repair, if any, re-estimates them).
                bad = new <= 0
                kept_variances += int(bad.sum())
                new = torch.where(bad, t.detach(), new)
            t.copy_(new)
    probe, bn_ids, bn_layers = None, torch.empty(0), 0
    if x_train is not None and y_train is not None:
        keep = torch.nonzero(retain_mask(len(y_train), forget_ids)).flatten()
        gen = torch.Generator().manual_seed(seed)
        drawn = keep[torch.randperm(len(keep), generator=gen)]
        probe = drawn[:PROBE_EXAMPLES]
        bn_ids = drawn[:BATCHNORM_EXAMPLES]
        bn_layers = reestimate_batchnorm(unlearned, x_train[bn_ids], batch_size=BATCHNORM_EXAMPLES)
    unlearned.eval()
    removal_seconds = time.perf_counter() - start

    details = {
        "batches_removed": removed,
        "batches_recorded": len(log.entries),
        "total_steps": log.total_steps,
        "fraction_of_batches_removed": removed / log.total_steps if log.total_steps else None,
        "retained_examples_in_removed_batches": _n_retained(removed_ids, forget_sorted),
        "log_bytes_read": removed_bytes,  # only the removed steps' files are read
        "log_bytes": log.bytes,
        "log_bytes_removed": removed_bytes,
        "log_dtype": log.header.get("dtype"),
        "removal_seconds": removal_seconds,
        "repair_epochs": repair_epochs,
        "running_variances_kept": kept_variances,
        "batchnorm_reestimated_layers": bn_layers,
        "batchnorm_examples": len(bn_ids) if bn_layers else 0,
    }
    if repair_epochs:
        assert repair is not None and x_train is not None and y_train is not None and probe is not None
        repair_start = time.perf_counter()
        if tolerance is None:
            keep = retain_mask(len(y_train), forget_ids)
            train_steps(unlearned, x_train[keep], y_train[keep], repair, on_progress)
        else:
            unlearned, details["repair"] = _adaptive_repair(model, unlearned, x_train, y_train, forget_ids, probe,
                                                            repair, tolerance, on_progress)
            details["repair_epochs"] = details["repair"]["epochs_run"]
        details["repair_seconds"] = time.perf_counter() - repair_start
        details["repair_config"] = repair.to_dict()
    return UnlearningResult(unlearned, "amnesiac", time.perf_counter() - start, details)


def _adaptive_repair(original: nn.Module, unlearned: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                     forget_ids: torch.Tensor, probe: torch.Tensor, repair: TrainConfig, tolerance: float,
                     on_progress: ProgressCallback | None) -> tuple[nn.Module, dict]:
    """Repair in rounds of 1/:data:`REPAIR_ROUNDS_PER_EPOCH` epoch until the probe's retain accuracy
    is within ``tolerance`` of the original's, at most ``repair.epochs`` epochs; the best state seen.

    Each round trains the next slice of a seeded permutation of the retained examples with a
    fresh optimizer (``repair``'s recipe; its schedule runs over the round). Returns the model
    and what was done: the accuracies after each round, rounds run, the one kept, and why it stopped.
    """
    target = accuracy(original, x_train[probe], y_train[probe])
    best_acc = accuracy(unlearned, x_train[probe], y_train[probe])
    trail = [best_acc]
    best, best_round, rounds, stop = unlearned, 0, 0, "within tolerance"
    keep = torch.nonzero(retain_mask(len(y_train), forget_ids)).flatten()
    max_rounds = repair.epochs * REPAIR_ROUNDS_PER_EPOCH
    current = unlearned
    while best_acc < target - tolerance:
        if rounds == max_rounds:
            stop = "cap reached"
            break
        epoch, part = divmod(rounds, REPAIR_ROUNDS_PER_EPOCH)
        order = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(repair.seed + epoch))]
        chunk = order[part * len(order) // REPAIR_ROUNDS_PER_EPOCH:(part + 1) * len(order) // REPAIR_ROUNDS_PER_EPOCH]
        if best is current:
            current = copy.deepcopy(current)  # the best state so far stays as it is
        round_config = dataclasses.replace(repair, epochs=1, seed=repair.seed + rounds)
        train_steps(current, x_train[chunk], y_train[chunk], round_config, on_progress)
        rounds += 1
        acc = accuracy(current, x_train[probe], y_train[probe])
        trail.append(acc)
        if acc > best_acc:
            best, best_acc, best_round = current, acc, rounds
    return best.eval(), {
        "tolerance": tolerance,
        "original_retain_accuracy": target,
        "retain_accuracy_after_round": trail,  # [0]: right after the removal
        "rounds_run": rounds,
        "rounds_per_epoch": REPAIR_ROUNDS_PER_EPOCH,
        "epochs_run": rounds / REPAIR_ROUNDS_PER_EPOCH,
        "round_kept": best_round,
        "stopped": stop,
        "probe_examples": len(probe),
    }


def _n_retained(removed_ids: list[torch.Tensor], forget_sorted: torch.Tensor) -> int:
    if not removed_ids:
        return 0
    seen = torch.cat(removed_ids).unique()
    return int((~torch.isin(seen, forget_sorted)).sum())


def amnesiac_progress_total(log: UpdateLog, n_retained: int, repair: TrainConfig | None) -> int:
    """The most units of work :func:`amnesiac_unlearn` reports, for a progress bar (an adaptive
    repair that stops early reports fewer)."""
    repair_steps = repair.epochs * steps_per_epoch(n_retained, repair.batch_size) if repair else 0
    return len(log.entries) + repair_steps
