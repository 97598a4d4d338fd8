"""Does the verdict do its job? Rates of pass / fail / inconclusive per method and forget setting.

Targets: the default digits model (smallcnn, 1348 training digits, the `audit train`
recipe) and a leaky one (smallcnn without BatchNorm on 500 training digits, same
recipe), each trained with every batch recorded. Forget settings: class 3, and random
1%, 5%, 10% of the training set. Rows:

- ``none``: the no-op control (weights unchanged): must never pass;
- ``retrain``: exact unlearning, retrained with a seed drawn per forget set (never the
  target's, never the audit's retrained models'): must not *fail* more than alpha of the time,
  and should end *decided* (pass, or not memorised);
- ``amnesiac``, ``relabel``, ``finetune``: the toolkit's methods, at their defaults.

A rate measured on one split and one seed measures that draw's luck, so the digits'
train/test split is redrawn (with the target model, the audit's seed and so its reference
models and retrains) every ``--sets-per-split`` forget sets, and the control's seed is drawn
per forget set. Class 3 is audited once per split, ``--class-splits`` splits. Every rate
comes with its 95% Clopper-Pearson interval.

Each cell runs the same verdict code as ``audit run`` (``audit.harness.audit_target``) with
the default 16 reference models and ``--reference`` (default ``auto``: the shared pool for
random sets, 3 retrained models for class 3; ``retrain`` for the per-request retrains); the population attacks' ROC
diagnostics, which do not enter the verdict, are skipped to save time. The same tests are
decided again at alpha 0.01 and with other ``--max-residual`` margins (the p-values and
intervals do not depend on them), so one run gives every column.

    python benchmarks/detection.py --target default --sets 100 --out-name detection-default
    python benchmarks/detection.py --target leaky --sets 100 --out-name detection-leaky
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # this checkout's packages before an installed copy

import _common  # noqa: E402  (benchmarks/_common.py, next to this script)

RESULTS, write_tables = _common.RESULTS, _common.write_tables

from audit.attacking import AttackContext  # noqa: E402
from audit.data import load_dataset  # noqa: E402
from audit.forget import parse_forget  # noqa: E402
from audit.harness import audit_target
from audit.options import AuditOptions  # noqa: E402
from audit.scoring import Evidence, decide  # noqa: E402
from audit.training import train_model  # noqa: E402
from unlearning import TrainConfig  # noqa: E402

METHODS = ("none", "retrain", "amnesiac", "relabel", "finetune")
CONTROLS = ("none", "retrain")
SETTINGS = ("class=3", "random 1%", "random 5%", "random 10%")
ALPHAS = (0.05, 0.01)
MARGINS = (0.5, 1.0)  # --max-residual values decided from the same evidence; 0.5 is the default


def split_data(name: str, split: int):
    """The digits with their train/test split redrawn from ``split`` (the sizes stay the toolkit's)."""
    data = load_dataset("digits")
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(10_000 + split))
    n_train = len(data.y_train)
    train, test = order[:n_train], order[n_train:]
    if name == "leaky":
        train = train[:500]
    return dataclasses.replace(data, spec=f"digits-split{split}" + ("-first-500" if name == "leaky" else ""),
                               x_train=x[train].clone(), y_train=y[train].clone(), x_test=x[test].clone(),
                               y_test=y[test].clone(), split={"benchmark_split": split})


WORDS = ("pass", "not_memorised", "fail", "inconclusive")


def redecide(tests: list[Evidence], alpha: float, margin: float) -> str:
    return decide(copy.deepcopy(tests), alpha, margin).verdict


def run_split(name: str, split: int, jobs: list[tuple[str, list[str], int]], work: Path, retrains: int = 3,
              reference_models: int = 16, reference: str = "auto") -> list[dict]:
    """Train the split's target and audit each (forget spec, methods, control seed) job on it."""
    data = split_data(name, split)
    here = work / f"{name}-{split}"
    here.mkdir()
    arch_args = {"batch_norm": False} if name == "leaky" else None
    # The target's seed and the audit's seed are drawn with the split.
    trained = train_model(data, here / "model.pt", "smallcnn", TrainConfig(epochs=20, seed=split),
                          record="all", arch_args=arch_args, show_progress=False)
    mf = trained.model_file
    ctx = AttackContext(mf, data, 100 + split, reference_models, work / "cache", [], 400)
    rows = []
    for spec, methods, control_seed in jobs:
        fs = parse_forget(spec, data.y_train, data.num_classes)
        for method in methods:
            opts = AuditOptions.from_flat(mf.path, [fs.spec], method=method, show_progress=False,
                                          attacks=["inversion"] if fs.classes else ["mia"], mia_attacks=[],
                                          formats=[], seed=control_seed if method == "retrain" else 100 + split,
                                          retrains=retrains, reference_models=reference_models,
                                          reference=reference)
            t0 = time.perf_counter()
            target = audit_target(ctx, opts, fs, []).target
            unlearned = target.accuracy.unlearned
            row = {"split": split, "spec": fs.spec, "method": method, "target_test_accuracy": mf.metrics["test_accuracy"],
                   "seed": opts.seed, "p": target.p_value, "power_p": target.power_p_value,
                   "residual": target.residual_leakage, "residual_upper": target.residual_leakage_upper,
                   "memorised_auc": target.memorised_auc, "memorised_auc_upper": target.memorised_auc_upper,
                   "null": next((t.detail.get("null") for t in target.tests if t.name == "membership"), None),
                   "forget_accuracy": unlearned.forget if unlearned else None,
                   "test_accuracy": unlearned.test if unlearned else None,
                   "seconds": time.perf_counter() - t0, "error": target.error, "verdicts": {}}
            for alpha in ALPHAS:
                for margin in MARGINS:
                    key = f"{alpha:g}/{margin:g}"
                    row["verdicts"][key] = "error" if target.error else redecide(target.tests, alpha, margin)
            assert target.error or row["verdicts"][f"{ALPHAS[0]:g}/{MARGINS[0]:g}"] == target.verdict
            rows.append(row)
    shutil.rmtree(here)  # the recorded update log: 40 MB a split
    return rows


def plan(setting: str, sets: int, method_sets: int, per_split: int, class_splits: int,
         first_split: int) -> list[tuple[int, list[tuple[str, list[str], int]]]]:
    """(split, [(forget spec, methods, control seed)]) for one setting."""
    if setting.startswith("class="):
        return [(first_split + s, [(setting, list(METHODS), 50_000 + first_split + s)]) for s in range(class_splits)]
    fraction = float(setting.split()[1].rstrip("%")) / 100
    out = []
    for k in range(0, sets, per_split):
        split = first_split + k // per_split
        jobs = []
        for j in range(k, min(k + per_split, sets)):
            methods = list(METHODS) if (j % per_split) < max(1, method_sets * per_split // sets) else list(CONTROLS)
            jobs.append((f"random={fraction}@{1000 + j}", methods, 50_000 + j))
        out.append((split, jobs))
    return out


def rate(cell: list[dict], word: str, key: str) -> tuple[int, int]:
    return sum(1 for c in cell if c["verdicts"][key] == word), len(cell)


def detected(cell: list[dict], alpha: float = 0.05) -> tuple[int, int]:
    """How many originals the power check detected (the share of requests the original memorised detectably)."""
    return sum(1 for c in cell if c["power_p"] is not None and c["power_p"] <= alpha), len(cell)


def fmt_rate(k: int, n: int) -> str:
    return _common.rate_ci(k, n)


def decided(cell: list[dict], key: str) -> tuple[int, int]:
    return sum(1 for c in cell if c["verdicts"][key] in ("pass", "not_memorised")), len(cell)


def table(results: list[dict], methods: list[str], settings: list[str]) -> str:
    lines = ["Each cell: pass / not memorised / fail / inconclusive, at alpha 0.05 and the default --max-residual "
             "0.5, with n.\n"]
    for res in results:
        lines.append(f"\n### Target `{res['target']}`: verdict shares\n")
        lines.append("| setting | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        for setting in settings:
            cells = []
            for m in methods:
                cell = [r for r in res["rows"] if r["setting"] == setting and r["method"] == m]
                if not cell:
                    cells.append("-")
                    continue
                shares = "/".join(f"{rate(cell, w, '0.05/0.5')[0] / len(cell):.0%}" for w in WORDS)
                errors = sum(1 for c in cell if c["error"])
                cells.append(f"{shares} (n={len(cell)}{f', {errors} errors' if errors else ''})")
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        lines.append(f"\n### Target `{res['target']}`: the controls' error rates, with 95% intervals\n")
        lines.append("| setting | splits | retrain fails, alpha 0.05 | retrain fails, alpha 0.01 | no-op passes "
                     "(0.05) | no-op fails (0.05) | no-op fails (0.01) | no-op not memorised (0.05) | "
                     "retrain decided (0.05, margin 0.5) | retrain passes (0.05, margin 0.5) | "
                     "retrain decided (0.05, margin 1.0) | original detected (retrain rows) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for setting in settings:
            r = [c for c in res["rows"] if c["setting"] == setting and c["method"] == "retrain"]
            z = [c for c in res["rows"] if c["setting"] == setting and c["method"] == "none"]
            if not r and not z:
                continue
            splits = len({c["split"] for c in r + z})
            lines.append(f"| {setting} | {splits} | {fmt_rate(*rate(r, 'fail', '0.05/0.5'))} | "
                         f"{fmt_rate(*rate(r, 'fail', '0.01/0.5'))} | {fmt_rate(*rate(z, 'pass', '0.05/0.5'))} | "
                         f"{fmt_rate(*rate(z, 'fail', '0.05/0.5'))} | {fmt_rate(*rate(z, 'fail', '0.01/0.5'))} | "
                         f"{fmt_rate(*rate(z, 'not_memorised', '0.05/0.5'))} | {fmt_rate(*decided(r, '0.05/0.5'))} | "
                         f"{fmt_rate(*rate(r, 'pass', '0.05/0.5'))} | {fmt_rate(*decided(r, '0.05/1'))} | "
                         f"{fmt_rate(*detected(r))} |")
    return "\n".join(lines) + "\n"


def merge(paths: list[Path], out_name: str) -> None:
    """Pool the rows of several runs (e.g. settings run as separate processes) into one table."""
    by_target: dict[str, dict] = {}
    methods: list[str] = []
    settings: list[str] = []
    commands = []
    for path in paths:
        run = json.loads(path.read_text())
        if "results" not in run:  # a run's partial file ({"target", "rows"}), kept when it was stopped early
            run = {"command": f"{path.name} (a run stopped after {len(run['rows'])} audits)", "methods": list(METHODS),
                   "results": [run]}
        commands.append(run["command"])
        methods += [m for m in run["methods"] if m not in methods]
        for res in run["results"]:
            by_target.setdefault(res["target"], {"target": res["target"], "rows": []})["rows"] += res["rows"]
            settings += [s for s in SETTINGS if any(r["setting"] == s for r in res["rows"]) and s not in settings]
    settings = [s for s in SETTINGS if s in settings]
    md = table(list(by_target.values()), methods, settings)
    md += "\nPooled from the runs of:\n\n" + "".join(f"- `{c}`\n" for c in commands)
    print(md)
    write_tables(out_name, md, {"results": list(by_target.values()), "methods": methods, "settings": settings,
                                "merged_from": [str(p) for p in paths]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=["default", "leaky", "both"], default="both")
    ap.add_argument("--sets", type=int, default=100, help="random forget sets per random setting (retrain and no-op rows)")
    ap.add_argument("--method-sets", type=int, default=30,
                    help="of those, how many also run amnesiac, relabel and finetune")
    ap.add_argument("--sets-per-split", type=int, default=10, help="forget sets audited on one redrawn split")
    ap.add_argument("--class-splits", type=int, default=4, help="splits (and seeds) on which class 3 is audited")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--settings", default=";".join(SETTINGS))
    ap.add_argument("--out-name", default="detection")
    ap.add_argument("--first-split", type=int, default=0, help="number of the first split (then +1 each)")
    ap.add_argument("--share-splits", action="store_true",
                    help="every setting uses the same splits (so their reference pools are trained once)")
    ap.add_argument("--retrains", type=int, default=3, help="retrained models per audit (the audit's --retrains)")
    ap.add_argument("--reference-models", type=int, default=16, help="the audit's --reference-models")
    ap.add_argument("--reference", default="auto", choices=["auto", "retrain"],
                    help="the audit's --reference: auto (the pool for random sets) or retrain (per request)")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="write one table from earlier runs' results files (rows of the same target are pooled)")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out_name)
        return
    torch.set_num_threads(1)
    methods = args.methods.split(",")
    settings = args.settings.split(";")
    names = ["default", "leaky"] if args.target == "both" else [args.target]
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            partial = RESULTS / f"{args.out_name}-{name}.partial.json"
            res: dict = {"target": name, "rows": []}
            split_base = args.first_split
            for setting in settings:
                for split, jobs in plan(setting, args.sets, args.method_sets, args.sets_per_split, args.class_splits,
                                        split_base):
                    jobs = [(spec, [m for m in ms if m in methods], seed) for spec, ms, seed in jobs]
                    for row in run_split(name, split, jobs, Path(tmp), args.retrains, args.reference_models,
                                         args.reference):
                        res["rows"].append({"setting": setting, **row})
                    partial.write_text(json.dumps(res, indent=1))
                if not args.share_splits:
                    split_base += 1000  # every setting gets splits of its own
                print(table([res], methods, [setting]), flush=True)
            results.append(res)
            partial.unlink()
    md = table(results, methods, settings)
    md += f"\nWall time {time.perf_counter() - start:.0f} s.\n"
    print(md)
    write_tables(args.out_name, md, {"results": results, "methods": methods, "settings": settings,
                                     "sets": args.sets, "sets_per_split": args.sets_per_split,
                                     "retrains": args.retrains, "reference_models": args.reference_models,
                                     "reference": args.reference})


if __name__ == "__main__":
    main()
