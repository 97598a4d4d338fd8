"""Choose amnesiac's default repair on tuning seeds that the main benchmark never uses.

For each candidate (batch-size divisor, learning-rate factor) of the one repair epoch,
train digits models on the tuning seeds with the class's batches recorded, remove them,
repair, and compare test accuracy on the kept classes with a model retrained without
the class. ``benchmarks/bench_unlearning.py`` then judges the chosen default on seeds 0-2.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import torch

# This checkout's packages before an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import write_tables  # noqa: E402

from audit.data import load_dataset  # noqa: E402
from audit.forget import parse_forget  # noqa: E402
from audit.training import train_model  # noqa: E402
from unlearning import TrainConfig, accuracy, amnesiac_unlearn, retrain_unlearn  # noqa: E402

CANDIDATES = [(4, 1.0), (4, 2.0), (8, 1.0), (8, 2.0), (16, 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    ap.add_argument("--spec", default="class=3")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits")
    forget = parse_forget(args.spec, data.y_train, data.num_classes)
    kept = ~torch.isin(data.y_test, torch.tensor(forget.classes or []))
    gaps: dict[tuple, list[float]] = {c: [] for c in CANDIDATES}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            recipe = TrainConfig(epochs=20, seed=seed)
            mf = train_model(data, Path(tmp) / f"m{seed}.pt", "smallcnn", recipe, record=args.spec,
                             show_progress=False).model_file
            ref = retrain_unlearn(lambda: mf.fresh_model(seed=seed), data.x_train, data.y_train, forget.ids, recipe)
            ref_acc = accuracy(ref.model, data.x_test[kept], data.y_test[kept])
            for divisor, lr_factor in CANDIDATES:
                repair = dataclasses.replace(recipe, epochs=1, batch_size=recipe.batch_size // divisor,
                                             lr=recipe.lr * lr_factor)
                res = amnesiac_unlearn(mf.model, mf.log_dir, forget.ids, log_sha256=mf.update_log["log_sha256"],
                                       repair=repair, x_train=data.x_train, y_train=data.y_train)
                acc = accuracy(res.model, data.x_test[kept], data.y_test[kept])
                gaps[(divisor, lr_factor)].append(100 * (ref_acc - acc))
                print(f"seed {seed} batch/{divisor} lr x{lr_factor}: test gap {gaps[(divisor, lr_factor)][-1]:.2f}")
    rows = [{"batch_divisor": d, "lr_factor": f, "test_gap_mean": statistics.fmean(g), "test_gap_max": max(g)}
            for (d, f), g in gaps.items()]
    best = min(rows, key=lambda r: (r["test_gap_mean"], r["test_gap_max"]))
    md = (f"Forget {args.spec} on digits (smallcnn, 20-epoch Adam recipe); tuning seeds {args.seeds}; "
          "test gap = retrain's minus amnesiac's test accuracy on kept classes, in points.\n\n"
          "| repair batch | lr factor | mean test gap | worst test gap |\n| --- | --- | --- | --- |\n")
    md += "".join(f"| 64/{r['batch_divisor']} | {r['lr_factor']} | {r['test_gap_mean']:.2f} | {r['test_gap_max']:.2f} |\n"
                  for r in rows)
    md += f"\nChosen: batch 64/{best['batch_divisor']}, lr x{best['lr_factor']}.\n"
    write_tables("amnesiac_repair", md, {"seeds": args.seeds, "spec": args.spec, "rows": rows, "chosen": best})
    print(md)


if __name__ == "__main__":
    main()
