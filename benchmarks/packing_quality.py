"""Packed against unpacked recording on digits: cost, removal speed and quality, side by side.

    python benchmarks/packing_quality.py                     # seeds 0-4, verdicts on seeds 0-2
    python benchmarks/packing_quality.py --seeds 3 --verdict-seeds 0 --out-name packing-quality-quick
    python benchmarks/packing_quality.py --first-seed 2 --seeds 3 --verdict-seeds 0 --out-name pq-2-4
    python benchmarks/packing_quality.py --merge results/pq-0-1.json results/pq-2-4.json   # one table

For each forget setting (class 3; a random 1%, 5% and 10% of the training ids, drawn
anew for each seed) and seed, ``audit train`` is run twice with ``--record`` set to the
forget set: ``--packing on`` (the recordable examples in batches of their own,
``unlearning.PackedBatchSampler``) and ``--packing off`` (random batches). Each model is
then unlearned with ``amnesiac_unlearn`` (which re-measures BatchNorm on 256 retained
examples), right after removal and after the adaptive repair (at most one epoch of the
default repair recipe, in quarter epochs, only while the retain accuracy is more than a
point below the original's), and compared with retraining from
scratch on the retained examples (the same recipe and seed). Columns: test accuracy of
the trained model; forget, retain and test accuracy after unlearning (SalUn's FA, RA,
TA); removal time and retrain / removal; and, on the first ``--verdict-seeds`` seeds, the
audit's verdict on the repaired model (``audit.harness.audit_target``, as
``benchmarks/detection.py`` runs it: 16 reference models, 3 retrained models). Means
come with 95% t-intervals over the seeds.
"""

from __future__ import annotations

import argparse
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

from audit.attacking import AttackContext  # noqa: E402
from audit.data import load_dataset  # noqa: E402
from audit.forget import parse_forget  # noqa: E402
from audit.forget_accuracy import forget_metrics  # noqa: E402
from audit.harness import audit_target  # noqa: E402
from audit.options import AuditOptions  # noqa: E402
from audit.training import train_model  # noqa: E402
from unlearning import TrainConfig, amnesiac_unlearn, retrain_unlearn  # noqa: E402
from unlearning.amnesiac import default_repair  # noqa: E402

SETTINGS = ("class=3", "random 1%", "random 5%", "random 10%")
PACKINGS = ("on", "off")


def spec_for(setting: str, seed: int) -> str:
    if setting.startswith("class="):
        return setting
    return f"random={float(setting.split()[1].rstrip('%')) / 100:g}@{1000 + seed}"


def _metrics(model, data, forget) -> dict:
    m = forget_metrics(model, data, forget)
    return {"forget": m["forget_accuracy"], "retain": m["retain_accuracy"], "test": m["test_accuracy_kept_classes"]}


def run_cell(data, setting: str, seed: int, packing: str, work: Path, cache: Path, verdict: bool) -> dict:
    spec = spec_for(setting, seed)
    forget = parse_forget(spec, data.y_train, data.num_classes)
    recipe = TrainConfig(epochs=20, seed=seed)
    trained = train_model(data, work / f"{seed}-{packing}.pt", "smallcnn", recipe, record=spec, packing=packing,
                          show_progress=False)
    mf = trained.model_file
    log = mf.update_log
    cell = {"setting": setting, "spec": spec, "seed": seed, "packing": packing, "n_forget": len(forget.ids),
            "train_seconds": trained.seconds, "test_accuracy": mf.metrics["test_accuracy"],
            "recorded": log["recorded"], "total_steps": log["total_steps"], "log_bytes": log["bytes"]}
    for repair in (0, 1):
        res = amnesiac_unlearn(mf.model, mf.log_dir, forget.ids, log_sha256=log["log_sha256"],
                               repair=default_repair(recipe, repair) if repair else None,
                               x_train=data.x_train, y_train=data.y_train)
        cell[f"repair{repair}"] = {**_metrics(res.model, data, forget), "seconds": res.seconds,
                                   "removal_seconds": res.details["removal_seconds"],
                                   "batches_removed": res.details["batches_removed"],
                                   "retained_in_removed": res.details["retained_examples_in_removed_batches"],
                                   "repair": res.details.get("repair")}
    if verdict:
        ctx = AttackContext(mf, data, 0, 16, cache, [], 400)
        opts = AuditOptions.from_flat(mf.path, [spec], method="amnesiac", show_progress=False,
                                      attacks=["inversion"] if forget.classes else ["mia"], mia_attacks=[], formats=[])
        target = audit_target(ctx, opts, forget, []).target
        cell["verdict"] = target.verdict if not target.error else "error"
        cell["p_value"] = target.p_value
    return cell


def run_retrain(data, setting: str, seed: int, make_model) -> dict:
    spec = spec_for(setting, seed)
    forget = parse_forget(spec, data.y_train, data.num_classes)
    res = retrain_unlearn(make_model, data.x_train, data.y_train, forget.ids, TrainConfig(epochs=20, seed=seed))
    return {"setting": setting, "spec": spec, "seed": seed, **_metrics(res.model, data, forget), "seconds": res.seconds}


# ------------------------------------------------------------------------------ tables


def render(p: dict) -> str:
    cells, retrains = p["cells"], p["retrain"]
    lines = [
        f"Digits (`smallcnn`, the `audit train` recipe: 20 epochs, Adam lr 1e-3, batch 64), seeds "
        f"{', '.join(map(str, p['seeds']))}; accuracies in % as mean ± 95% t-interval over the seeds; "
        f"times from this run ({p['load_start']:.1f} load average at start on {p['cpus']} shared CPUs). "
        "Removal = `amnesiac_unlearn` with no repair, end to end (BatchNorm re-measured on 256 retained examples); "
        "repair = the adaptive repair (at most one epoch at batch 8, while the retain accuracy is more than a point "
        "below the original's)."
        + ("" if not p.get("commands") else " Merged from the runs `" + "`, `".join(p["commands"]) + "`."), "",
        "## Cost of recording and removal speed", "",
        "| setting | batches | steps recorded | log | test acc. (trained) | removal (median) | retrain (median) | "
        "retrain / removal (median, min) | retrain / (removal + repair) (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in p["settings"]:
        rt = {r["seed"]: r for r in retrains if r["setting"] == setting}
        for packing in PACKINGS:
            cs = [c for c in cells if c["setting"] == setting and c["packing"] == packing]
            if not cs:
                continue
            ratios = [rt[c["seed"]]["seconds"] / c["repair0"]["seconds"] for c in cs if c["seed"] in rt]
            ratios_rep = [rt[c["seed"]]["seconds"] / c["repair1"]["seconds"] for c in cs if c["seed"] in rt]
            rec = statistics.fmean(c["recorded"] / c["total_steps"] for c in cs)
            lines.append(
                f"| {setting} | {'packed' if packing == 'on' else 'unpacked'} | {rec:.1%} | "
                f"{statistics.fmean(c['log_bytes'] for c in cs) / 1e6:.1f} MB | "
                f"{mean_ci([c['test_accuracy'] for c in cs])} | "
                f"{statistics.median(c['repair0']['seconds'] for c in cs):.3f} s | "
                f"{statistics.median(r['seconds'] for r in rt.values()) if rt else float('nan'):.1f} s | "
                + (f"{statistics.median(ratios):,.0f}x, {min(ratios):,.0f}x | {statistics.median(ratios_rep):.1f}x |"
                   if ratios else "- | - |"))
    lines += ["", "## Quality after unlearning", "",
              "FA, RA, TA: forget, retain and test accuracy (test: the classes not forgotten). Verdict: the audit's "
              "on the adaptive repair, pass / fail / inconclusive counts.", "",
              "| setting | method | FA | RA | TA | retained examples in removed batches | verdict (pass/fail/inc.) |",
              "|---|---|---|---|---|---|---|"]
    for setting in p["settings"]:
        for packing in PACKINGS:
            cs = [c for c in cells if c["setting"] == setting and c["packing"] == packing]
            if not cs:
                continue
            name = "packed" if packing == "on" else "unpacked"
            vs = [c["verdict"] for c in cs if "verdict" in c]
            counts = "/".join(str(sum(v == k for v in vs)) for k in ("pass", "fail", "inconclusive"))
            for repair in (0, 1):
                rows = [c[f"repair{repair}"] for c in cs]
                lines.append(
                    f"| {setting} | amnesiac {name}, {'no repair' if repair == 0 else 'adaptive repair'} | "
                    f"{mean_ci([r['forget'] for r in rows])} | {mean_ci([r['retain'] for r in rows])} | "
                    f"{mean_ci([r['test'] for r in rows])} | "
                    f"{statistics.fmean(r['retained_in_removed'] for r in rows):,.0f} | "
                    f"{(counts + f' (n={len(vs)})') if repair == 1 and vs else '-'} |")
        rt = [r for r in retrains if r["setting"] == setting]
        if rt:
            lines.append(f"| {setting} | retrain | {mean_ci([r['forget'] for r in rt])} | "
                         f"{mean_ci([r['retain'] for r in rt])} | {mean_ci([r['test'] for r in rt])} | - | - |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="N seeds from --first-seed (model seed; random forget "
                    "sets 1000+seed)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--verdict-seeds", type=int, default=3, help="run the audit's verdict on the first N seeds")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine the JSON of earlier runs (other seeds) into one table, running nothing")
    ap.add_argument("--settings", default=";".join(SETTINGS))
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--out-name", default="packing-quality")
    args = ap.parse_args(argv)
    if args.out_dir:
        _common.RESULTS = Path(args.out_dir)
    if args.merge:
        import json

        docs = [json.loads(Path(f).read_text()) for f in args.merge]
        merged = {**docs[0], "seeds": sorted({s for d in docs for s in d["seeds"]}),
                  "cells": [c for d in docs for c in d["cells"]], "retrain": [r for d in docs for r in d["retrain"]],
                  "commands": [d["command"] for d in docs]}
        for key in ("command", "machine"):
            merged.pop(key, None)
        _common.write_tables(args.out_name, render(merged), merged)
        print(render(merged))
        return 0
    torch.set_num_threads(1)
    data = load_dataset("digits")
    payload = {"seeds": list(range(args.first_seed, args.first_seed + args.seeds)), "settings": args.settings.split(";"), "cells": [], "retrain": [],
               "verdict_seeds": args.verdict_seeds, "cpus": os.cpu_count(), "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="packing-quality-") as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        for seed in payload["seeds"]:
            for setting in payload["settings"]:
                start = time.perf_counter()
                for packing in PACKINGS:
                    payload["cells"].append(run_cell(data, setting, seed, packing, work, cache,
                                                     seed < args.first_seed + args.verdict_seeds))
                from audit.modelfile import load_model

                mf = load_model(work / f"{seed}-on.pt")
                payload["retrain"].append(run_retrain(data, setting, seed, lambda: mf.fresh_model(seed=seed)))
                print(f"seed {seed} {setting}: {time.perf_counter() - start:.0f} s", flush=True)
                payload["load_end"] = os.getloadavg()[0]
                _common.write_tables(args.out_name, render(payload), payload)
    print(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
