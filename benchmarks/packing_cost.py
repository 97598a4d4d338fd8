"""Why packed recording costs accuracy, measured: training variants side by side (issue 24).

    python benchmarks/packing_cost.py --data digits --seeds 0 1 2
    python benchmarks/packing_cost.py --data fashion-mnist --subset 12000 --seeds 0 1 --out-name packing-cost-fashion-12k

For each seed and forget setting (a class; a random 1% of the training ids) the toolkit's
default recipe for the data (``audit.models.DEFAULT_RECIPES``) trains the same initial
weights with each variant:

``unpacked``     random batches (recording observes and changes nothing, so no log is written)
``packed``       ``PackedBatchSampler``: the recordable ids in batches of their own
``packed+normalize``, ``packed+contain``: measured with commit 11a445e (``UpdateRecorder``'s
                 ``normalize_recorded`` and ``contain_recorded``, since removed: see docs/unlearning.md)
``packed+recal`` the packed model with BatchNorm's running statistics re-measured on the
                 non-recordable examples after training: tells whether the running
                 statistics (moved by one-class batches) or the weights carry the cost
``fill=F``       ``PackedBatchSampler(fill=F)``: each recordable batch also holds F times its
                 size in other examples (drawn anew, trained in their own batches too)
``bnfill=F``     diagnostic: as ``fill=F``, but the other examples only shape BatchNorm's batch
                 statistics; the loss (the gradient) is the recordable examples' alone
``statsfill=F``  ``PackedBatchSampler(fill=F, fill_in_loss=False)``: ``bnfill=F`` as the library does it
                 (``fit`` leaves the fill examples out of the loss), recorded and removed
``gradfill=F``   diagnostic: as ``fill=F``, but the recordable and the other examples go through
                 the network in two forward passes (each normalised by its own statistics);
                 the loss is over both: a two-sided gradient with one-class BatchNorm

Columns: test accuracy (all classes; for a class record also the class itself and the
others), and for a class record the other classes' test accuracy right after the
amnesiac removal, as subtracted and with BatchNorm re-estimated on the retained examples
(``unlearning.batchnorm``). Means with 95% t-intervals over the seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # this checkout's packages before an installed copy

import _common  # noqa: E402
from _common import mean_ci  # noqa: E402

from audit.data import load_dataset  # noqa: E402
from audit.forget import parse_forget  # noqa: E402
from audit.models import build_model, default_recipe  # noqa: E402
from unlearning import (PackedBatchSampler, TrainConfig, UpdateRecorder, accuracy, amnesiac_unlearn, fit,  # noqa: E402
                        retrain_unlearn)
from unlearning.amnesiac import default_repair  # noqa: E402
from unlearning.batchnorm import reestimate_batchnorm  # noqa: E402
from unlearning.training import make_optimizer  # noqa: E402

#: Where unpacked models are kept between runs (``--cache``); None keeps nothing.
CACHE: Path | None = None


def subset(data, n: int, seed: int = 0):
    if not n or n >= len(data.y_train):
        return data
    keep = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])


def spec_for(setting: str, seed: int) -> str:
    return setting if setting.startswith("class=") else f"random=0.01@{1000 + seed}"


def quality_fn(data, forget):
    """Test accuracy (all classes, and for a class record the class and the others: SalUn's TA)."""
    classes = torch.tensor(forget.classes or [], dtype=torch.int64)
    in_class = torch.isin(data.y_test, classes)

    def quality(m) -> dict:
        out = {"test": accuracy(m, data.x_test, data.y_test)}
        if forget.classes:
            out["test_class"] = accuracy(m, data.x_test[in_class], data.y_test[in_class])
            out["test_others"] = accuracy(m, data.x_test[~in_class], data.y_test[~in_class])
        return out

    return quality


def new_model(data, arch: str, seed: int):
    mean, std = data.channel_stats()
    return build_model(arch, data.input_shape[0], data.num_classes, mean, std, seed=seed)


def run_retrain(data, arch: str, recipe: TrainConfig, setting: str) -> dict:
    spec = spec_for(setting, recipe.seed)
    forget = parse_forget(spec, data.y_train, data.num_classes)
    res = retrain_unlearn(lambda: new_model(data, arch, recipe.seed), data.x_train, data.y_train, forget.ids, recipe)
    return {"setting": setting, "spec": spec, "seed": recipe.seed, "seconds": res.seconds,
            **quality_fn(data, forget)(res.model)}


def run_cell(data, arch: str, recipe: TrainConfig, setting: str, variant: str, work: Path,
             unpacked_cache: dict | None = None) -> dict:
    spec = spec_for(setting, recipe.seed)
    forget = parse_forget(spec, data.y_train, data.num_classes)
    quality = quality_fn(data, forget)
    if variant == "unpacked" and unpacked_cache is not None and recipe.seed in unpacked_cache:
        # Random batches do not depend on the record spec (and recording changes nothing): one model a seed.
        model, seconds = unpacked_cache[recipe.seed]
        return {"setting": setting, "spec": spec, "seed": recipe.seed, "variant": variant, "train_seconds": seconds,
                "shared_with_other_setting": True, **quality(model)}
    model = new_model(data, arch, recipe.seed)
    cached = CACHE / f"{data.spec}-{len(data.y_train)}-{arch}-{recipe.seed}-unpacked.pt" if CACHE else None
    if variant == "unpacked" and cached is not None and cached.is_file():
        saved = torch.load(cached, weights_only=True)
        model.load_state_dict(saved["state"])
        model.eval()
        if unpacked_cache is not None:
            unpacked_cache[recipe.seed] = (model, saved["seconds"])
        return {"setting": setting, "spec": spec, "seed": recipe.seed, "variant": variant,
                "train_seconds": saved["seconds"], "from_cache": str(cached), **quality(model)}
    optimizer = make_optimizer(model, recipe)
    sampler, recorder = None, None
    kind, _, fill = variant.partition("=")
    if variant != "unpacked":
        sampler = PackedBatchSampler(len(data.y_train), forget.ids, recipe.batch_size, seed=recipe.seed,
                                     fill=float(fill or 0))
    if kind == "statsfill":  # the library's bnfill: PackedBatchSampler(fill_in_loss=False), recorded
        sampler = PackedBatchSampler(len(data.y_train), forget.ids, recipe.batch_size, seed=recipe.seed,
                                     fill=float(fill), fill_in_loss=False)
    if kind in ("packed", "fill", "statsfill"):
        recorder = UpdateRecorder(model, work / "run.updates", record_ids=forget.ids, record=spec)
        optimizer = recorder.attach(optimizer)
    start = time.perf_counter()
    if kind in ("bnfill", "gradfill"):
        fit_split(model, data.x_train, data.y_train, recipe, optimizer, sampler, kind)
    else:
        fit(model, data.x_train, data.y_train, recipe, optimizer=optimizer, batch_sampler=sampler)
    seconds = time.perf_counter() - start
    if variant == "unpacked" and unpacked_cache is not None:
        unpacked_cache[recipe.seed] = (model, seconds)
    if variant == "unpacked" and cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), "seconds": seconds}, cached)
    summary = recorder.close() if recorder else None
    keep = ~torch.isin(torch.arange(len(data.y_train)), forget.ids)
    cell = {"setting": setting, "spec": spec, "seed": recipe.seed, "variant": variant, "train_seconds": seconds,
            **quality(model)}
    if summary is not None:
        cell.update(recorded=summary["recorded"], total_steps=summary["total_steps"], log_bytes=summary["bytes"])
        recal = _copy(model)
        reestimate_batchnorm(recal, data.x_train[keep], recipe.batch_size)
        cell["recal"] = quality(recal)
        log = work / "run.updates"
        res = amnesiac_unlearn(model, log, forget.ids, log_sha256=summary["log_sha256"])
        cell["removed"] = {**quality(res.model), "seconds": res.seconds}
        # The method as it ships: subtraction, BatchNorm re-measured on 256 retained examples.
        res = amnesiac_unlearn(model, log, forget.ids, log_sha256=summary["log_sha256"], x_train=data.x_train,
                               y_train=data.y_train, seed=recipe.seed)
        cell["removed_bn"] = {**quality(res.model), "seconds": res.seconds,
                              "removal_seconds": res.details["removal_seconds"],
                              "batches_removed": res.details["batches_removed"]}
        res = amnesiac_unlearn(model, log, forget.ids, log_sha256=summary["log_sha256"], x_train=data.x_train,
                               y_train=data.y_train, seed=recipe.seed, repair=default_repair(recipe))
        cell["repaired"] = {**quality(res.model), "seconds": res.seconds, "repair": res.details.get("repair")}
    return cell


def fit_split(model, x, y, recipe: TrainConfig, optimizer, sampler: PackedBatchSampler, kind: str) -> None:
    """``fit``'s loop (same batches, schedule and seed) where a recordable batch's fill examples
    shape only BatchNorm (``bnfill``) or only the gradient (``gradfill``); see the module docstring."""
    from torch.nn import functional as F

    from unlearning.training import _scheduler

    scheduler, _ = _scheduler(optimizer, recipe, len(sampler))
    torch.manual_seed(recipe.seed)
    marked = torch.zeros(len(y), dtype=torch.bool)
    marked[sampler.recordable_positions] = True
    for epoch in range(recipe.epochs):
        model.train()
        for idx in sampler.batches(epoch):
            optimizer.zero_grad(set_to_none=True)
            own = marked[idx]
            if not own.any() or own.all():
                loss = F.cross_entropy(model(x[idx]), y[idx])
            elif kind == "bnfill":
                loss = F.cross_entropy(model(x[idx])[own], y[idx][own])
            else:
                logits = torch.cat([model(x[idx[own]]), model(x[idx[~own]])])
                loss = F.cross_entropy(logits, torch.cat([y[idx[own]], y[idx[~own]]]))
            loss.backward()
            optimizer.step()
            scheduler.step() if scheduler is not None else None
    model.eval()


def _copy(model):
    import copy

    return copy.deepcopy(model)


def _col(cells: list[dict], key: str, sub: str | None = None) -> str:
    vals = [(c.get(sub) or {}).get(key) if sub else c.get(key) for c in cells]
    return mean_ci([v for v in vals if v is not None])


def render(p: dict) -> str:
    lines = [f"{p['data']} ({p['n_train']} training examples), `{p['arch']}`, recipe {p['recipe']}; seeds "
             f"{', '.join(map(str, p['seeds']))}; one torch thread; test accuracy in %, mean ± 95% t-interval over "
             "the seeds (class: the class's test examples, others: the other classes'). Times are from a machine "
             f"shared with other jobs (load average {p.get('load_start', float('nan')):.1f} at the start); ratios "
             "divide two times of the same seed.", "",
             "## Training", "",
             "| setting | variant | steps recorded | test | class | others | packed+recal test | train s (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for setting in p["settings"]:
        for variant in p["variants"]:
            cs = [c for c in p["cells"] if c["setting"] == setting and c["variant"] == variant]
            if not cs:
                continue
            rec = (f"{statistics.fmean(c['recorded'] / c['total_steps'] for c in cs):.1%}" if "recorded" in cs[0]
                   else "-")
            lines.append(f"| {setting} | {variant} | {rec} | {_col(cs, 'test')} | {_col(cs, 'test_class')} | "
                         f"{_col(cs, 'test_others')} | {_col(cs, 'test', 'recal')} | "
                         f"{statistics.median(c['train_seconds'] for c in cs):.1f} |")
    lines += ["", "## Removal", "",
              "Accuracy = the other classes' test accuracy for a class (TA), the test accuracy for random ids. "
              "Removal: `amnesiac_unlearn` end to end (log opened and checked, steps subtracted, BatchNorm "
              "re-measured on 256 retained examples). Repair: the adaptive repair (default recipe, 1-point tolerance "
              "on a 2,048-example retain probe, cap one epoch); rounds are quarter epochs.", "",
              "| setting | variant | steps removed | removal s (median) | retrain s (median) | retrain / removal "
              "(median, min) | as subtracted | + BatchNorm re-measured | after adaptive repair | repair rounds "
              "(per seed) | retrain |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting in p["settings"]:
        key = "test_others" if setting.startswith("class=") else "test"
        rt = {r["seed"]: r for r in p.get("retrain", []) if r["setting"] == setting}
        for variant in p["variants"]:
            cs = [c for c in p["cells"] if c["setting"] == setting and c["variant"] == variant and "removed_bn" in c]
            if not cs:
                continue
            ratios = [rt[c["seed"]]["seconds"] / c["removed_bn"]["seconds"] for c in cs if c["seed"] in rt]
            rounds = [str(((c.get("repaired") or {}).get("repair") or {}).get("rounds_run", "-")) for c in cs]
            lines.append(
                f"| {setting} | {variant} | {statistics.fmean(c['removed_bn']['batches_removed'] for c in cs):.0f} | "
                f"{statistics.median(c['removed_bn']['seconds'] for c in cs):.3f} | "
                + (f"{statistics.median(r['seconds'] for r in rt.values()):.1f} | "
                   f"{statistics.median(ratios):,.0f}x, {min(ratios):,.0f}x | " if ratios else "- | - | ")
                + f"{_col(cs, key, 'removed')} | {_col(cs, key, 'removed_bn')} | {_col(cs, key, 'repaired')} | "
                f"{', '.join(rounds)} | {mean_ci([r[key] for r in rt.values()])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--subset", type=int, default=0, help="train on this many training examples (0: all)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", default="class=3;random 1%")
    ap.add_argument("--variants", default="unpacked;packed;fill=1")
    ap.add_argument("--retrain", action="store_true", help="also retrain from scratch without each forget set")
    ap.add_argument("--retrain-seeds", type=int, default=None, help="retrain on the first N seeds only")
    ap.add_argument("--cache", default=None, help="folder to keep the unpacked models in, reused by later runs")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--out-name", default="packing-cost")
    args = ap.parse_args(argv)
    if args.out_dir:
        _common.RESULTS = Path(args.out_dir)
    global CACHE
    CACHE = Path(args.cache) if args.cache else None
    torch.set_num_threads(1)
    data = subset(load_dataset(args.data), args.subset)
    arch, fields = default_recipe(args.data)
    if args.epochs:
        fields = {**fields, "epochs": args.epochs}
    import os

    payload = {"data": args.data, "n_train": len(data.y_train), "arch": arch, "recipe": fields, "seeds": args.seeds,
               "settings": args.settings.split(";"), "variants": args.variants.split(";"), "cells": [], "retrain": [],
               "load_start": os.getloadavg()[0]}
    unpacked: dict = {}
    for seed in args.seeds:
        recipe = TrainConfig(**fields, seed=seed)
        for setting in payload["settings"]:
            for variant in payload["variants"]:
                with tempfile.TemporaryDirectory(prefix="packing-cost-") as tmp:
                    cell = run_cell(data, arch, recipe, setting, variant, Path(tmp), unpacked)
                payload["cells"].append(cell)
                print(f"seed {seed} {setting} {variant}: test {cell['test']:.4f} "
                      f"({cell['train_seconds']:.0f} s)", flush=True)
                _common.write_tables(args.out_name, render(payload), payload)
            if args.retrain and (args.retrain_seeds is None or seed in args.seeds[:args.retrain_seeds]):
                payload["retrain"].append(run_retrain(data, arch, recipe, setting))
                print(f"seed {seed} {setting} retrain: {payload['retrain'][-1]['seconds']:.0f} s", flush=True)
                payload["load_end"] = os.getloadavg()[0]
                _common.write_tables(args.out_name, render(payload), payload)
    print(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
