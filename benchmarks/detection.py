"""Does the verdict do its job? Share of pass / fail / inconclusive per method and forget setting.

Targets: the default digits model (smallcnn, 1348 training digits, the `audit train`
recipe) and a leaky one (smallcnn without BatchNorm on the first 500 training digits,
same recipe), each trained once with every batch recorded. Forget settings: class 3,
and random 1%, 5%, 10% of the training set (``--sets`` random forget sets each). Rows:

- ``none``: the no-op control (weights unchanged): must never pass;
- ``retrain``: exact unlearning, retrained with a seed other than the target's and the
  audit's retrained models: must not *fail* more than alpha of the time;
- ``amnesiac``, ``relabel``, ``finetune``: the toolkit's methods, at their defaults.

Each cell runs the same verdict code as ``audit run`` (``audit.harness.audit_target``),
with the default 16 reference models and 3 retrained models; the population attacks'
ROC diagnostics, which do not enter the verdict, are skipped to save time.

    python benchmarks/detection.py                        # both targets, all settings
    python benchmarks/detection.py --target leaky --sets 50 --out-name detection-leaky
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# benchmarks/attacks.py and unlearning.py carry the packages' names: keep this folder off
# the import path and load the shared helpers by path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
sys.path.append(str(_HERE))  # after the packages: only _common.py is looked up here


import _common  # noqa: E402  (benchmarks/_common.py, found at the end of the path)

RESULTS, write_tables = _common.RESULTS, _common.write_tables

from audit.attacking import AttackContext  # noqa: E402
from audit.data import load_dataset  # noqa: E402
from audit.forget import ForgetSet, parse_forget  # noqa: E402
from audit.harness import AuditOptions, audit_target  # noqa: E402
from audit.training import train_model  # noqa: E402
from unlearning import TrainConfig  # noqa: E402

METHODS = ("none", "retrain", "amnesiac", "relabel", "finetune")
SETTINGS = ("class=3", "random 1%", "random 5%", "random 10%")


def target_data(name: str):
    data = load_dataset("digits")
    if name == "leaky":
        n = 500
        data = dataclasses.replace(data, spec="digits-first-500", x_train=data.x_train[:n].clone(),
                                   y_train=data.y_train[:n].clone())
    return data


def forget_sets(setting: str, data, count: int, seed0: int) -> list[ForgetSet]:
    if setting.startswith("class="):
        return [parse_forget(setting, data.y_train, data.num_classes)]
    fraction = float(setting.split()[1].rstrip("%")) / 100
    return [parse_forget(f"random={fraction}@{seed0 + k}", data.y_train, data.num_classes) for k in range(count)]


def run_target(name: str, sets: int, methods: list[str], settings: list[str], cache: Path, work: Path,
               partial: Path, first_seed: int = 1000) -> dict:
    data = target_data(name)
    arch_args = {"batch_norm": False} if name == "leaky" else None
    start = time.perf_counter()
    trained = train_model(data, work / f"{name}.pt", "smallcnn", TrainConfig(epochs=20, seed=0), record="all",
                          arch_args=arch_args, show_progress=False)
    mf = trained.model_file
    out: dict = {"target": name, "n_train": len(data.y_train), "test_accuracy": mf.metrics["test_accuracy"],
                 "train_seconds": time.perf_counter() - start, "cells": {}}
    ctx = AttackContext(mf, data, 0, 16, cache, [], 400)
    for setting in settings:
        for fs in forget_sets(setting, data, sets, first_seed):
            for method in methods:
                # retrain: exact unlearning with a seed (777, for its initial weights and batch
                # order) that neither the target (0) nor the audit's retrained models (1_000_003 +) use.
                opts = AuditOptions(model=mf.path, forget=[fs.spec], method=method, show_progress=False,
                                    attacks=["inversion"] if fs.classes else ["mia"], mia_attacks=[], formats=[],
                                    seed=777 if method == "retrain" else 0)
                t0 = time.perf_counter()
                doc = audit_target(ctx, opts, fs, []).document
                cell = out["cells"].setdefault(f"{setting}|{method}", [])
                cell.append({"spec": fs.spec, "verdict": doc["verdict"], "p": doc["p_value"],
                             "power_p": doc["power_p_value"], "residual": doc["residual_leakage"],
                             "forget_accuracy": (doc["accuracy"].get("unlearned") or {}).get("forget"),
                             "retrained_forget_accuracy": (doc["accuracy"].get("reference") or {}).get("forget"),
                             "seconds": time.perf_counter() - t0, "error": doc["error"]})
            partial.write_text(json.dumps(out, indent=1))
        print(f"{name} {setting}: " + ", ".join(
            f"{m} {_shares(out['cells'][f'{setting}|{m}'])}" for m in methods), flush=True)
    return out


def _shares(cell: list[dict]) -> str:
    n = len(cell)
    counts = {v: sum(1 for c in cell if c["verdict"] == v) for v in ("pass", "fail", "inconclusive", "error")}
    return "/".join(f"{counts[v] / n:.0%}" for v in ("pass", "fail", "inconclusive")) + (
        f" ({counts['error']} errors)" if counts["error"] else "")


def table(results: list[dict], methods: list[str], settings: list[str]) -> str:
    lines = []
    for res in results:
        lines.append(f"\n### Target `{res['target']}` ({res['n_train']} training digits, test accuracy "
                     f"{res['test_accuracy']:.1%})\n")
        lines.append("| setting | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        for setting in settings:
            cells = []
            for m in methods:
                cell = res["cells"].get(f"{setting}|{m}", [])
                cells.append(f"{_shares(cell)} (n={len(cell)})" if cell else "-")
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return ("Share of verdicts pass / fail / inconclusive per forget setting (rows) and method (columns); "
            "alpha = 0.05, 16 reference models, 3 retrained models.\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=["default", "leaky", "both"], default="both")
    ap.add_argument("--sets", type=int, default=50, help="random forget sets per random setting")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--settings", default=";".join(SETTINGS))
    ap.add_argument("--out-name", default="detection")
    ap.add_argument("--first-seed", type=int, default=1000, help="seed of the first random forget set (then +1 each)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    methods = args.methods.split(",")
    settings = args.settings.split(";")
    names = ["default", "leaky"] if args.target == "both" else [args.target]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            partial = RESULTS / f"{args.out_name}-{name}.partial.json"
            results.append(run_target(name, args.sets, methods, settings, Path(tmp) / "cache", Path(tmp), partial,
                                      args.first_seed))
            partial.unlink()
    md = table(results, methods, settings)
    print(md)
    write_tables(args.out_name, md, {"results": results, "methods": methods, "settings": settings, "sets": args.sets})


if __name__ == "__main__":
    main()
