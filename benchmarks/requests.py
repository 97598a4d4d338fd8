"""Deciding individual deletion requests at real size: Fashion-MNIST (Debian's 60,000 images).

What it measures, on the default 28x28 model and recipe (``audit.models.DEFAULT_RECIPES``):

- **Cost.** Building the shared reference pool once (16 models, each a full training on a
  part-left-out cut of train+test), and auditing one request with the pool cached (its
  logits cached too), against one retrain of the target without the request, measured in
  the same run. Amortised: the pool's cost over 10, 100 and 1,000 requests.
- **The verdict's outcomes** for random requests of ``--sizes`` ids (60 = 0.1%, 600 = 1%,
  3000 = 5%) and class targets, rows:

  - ``none``: the unchanged target (the no-op control): must never pass; fails where the
    original memorised the request detectably, else "not memorised" with its bound;
  - ``retrain``: exact unlearning, a model retrained from scratch without the request
    (``--method retrain``, a seed drawn per request) and audited by ``audit.harness.audit_target``
    like ``audit run``: the exact control, a few per size (each costs a retrain);
  - ``pool-out``: the cheap control, many per size. Pool model ``k`` never trained on the
    examples of its left-out part, so a request drawn from that part (and from the training
    split, so the target did train on it) with held-out examples drawn from the test split's
    part it also left out is audited with model ``k`` as the "unlearned" model against the
    other 15 pool models, through the same test and decision (``audit.evidence.membership_test``,
    ``audit.scoring.decide``). Model ``k`` is a model of the target's recipe and size that
    never saw the request; it is not a retrain of the target's exact data minus the request.
    The sets of one model share its held-out examples (a cluster: the tables add a bootstrap
    over control models); ``--held-out left-out`` draws each request and its held-out
    examples afresh from all that model ``k`` left out (row ``pool-out, random held-out``).

Every rate has its 95% Clopper-Pearson interval. The population attacks' diagnostics
(which do not enter the verdict) run only in the timed request.

    python benchmarks/requests.py --sets 100 --retrain-sets 8 --out-name requests-fashion
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # this checkout's packages before an installed copy

import _common  # noqa: E402

from attacks.reference import ReferenceModels  # noqa: E402
from attacks.signals import model_logits  # noqa: E402
from audit.attacking import AttackContext, MembershipSet  # noqa: E402
from audit.data import load_dataset  # noqa: E402
from audit.evidence import membership_test  # noqa: E402
from audit.forget import parse_forget  # noqa: E402
from audit.harness import audit_target  # noqa: E402
from audit.modelfile import load_model  # noqa: E402
from audit.models import default_recipe  # noqa: E402
from audit.options import AuditOptions  # noqa: E402
from audit.scoring import decide, membership_evidence, memorisation  # noqa: E402
from audit.training import train_model  # noqa: E402
from unlearning import TrainConfig, retrain_unlearn  # noqa: E402

WORDS = ("pass", "not_memorised", "fail", "inconclusive")
METHOD_ROWS = ("amnesiac", "relabel", "finetune")
POOL_OUT_RANDOM = "pool-out, random held-out"  # the control with --held-out left-out  # the toolkit's approximate methods, at their defaults
ALPHAS = (0.05, 0.01)


def target_model(data, work: Path, seed: int, epochs: int | None = None):
    """The user's model: the data set's default architecture and recipe (``epochs`` may change its length),
    trained once and kept in ``work``."""
    arch, recipe = default_recipe(data.spec)
    recipe = {**recipe, **({"epochs": epochs} if epochs else {})}
    path = work / f"target-{data.spec}-s{seed}-e{recipe['epochs']}.pt"
    if not path.exists():
        train_model(data, path, arch, TrainConfig(**recipe, seed=seed), record="none", show_progress=False)
    return load_model(path)


def verdicts(tests, alpha_list=ALPHAS) -> dict[str, str]:
    return {f"{a:g}": decide(copy.deepcopy(tests), a).verdict for a in alpha_list}


def row_from_target(kind: str, size: str, target, seconds: float) -> dict:
    return {"row": kind, "size": size, "verdicts": verdicts(target.tests) if not target.error else {"0.05": "error"},
            "power_p": target.power_p_value, "p": target.p_value, "residual_upper": target.residual_leakage_upper,
            "memorised_auc": target.memorised_auc, "memorised_auc_upper": target.memorised_auc_upper,
            "unlearned_auc_upper": unlearned_auc_upper(target.tests), "error": target.error, "seconds": seconds}


def unlearned_auc_upper(tests) -> float | None:
    """The unlearned model's membership AUC bound (a weak original's request passes on it)."""
    return memorisation(list(tests), "unlearned")[2] if tests else None


def leave_one_out(ctx: AttackContext, k: int) -> AttackContext:
    """``ctx`` with pool model ``k`` taken out of the pool (its logits too)."""
    ref = ctx.reference_models()
    keep = [m for m in range(ref.num_models) if m != k]
    out = copy.copy(ctx)
    out.__dict__.pop("reference_logits", None)
    out.__dict__.pop("reference_confidence", None)
    out._reference = ReferenceModels([ref.models[m] for m in keep], ref.in_mask[keep], [ref.seeds[m] for m in keep],
                                     [ref.from_cache[m] for m in keep], ref.seconds,
                                     [ref.digests[m] for m in keep])
    out.__dict__["reference_logits"] = ctx.reference_logits[keep]
    out.__dict__["reference_confidence"] = ctx.reference_confidence[keep]
    return out


def pool_out_row(ctx: AttackContext, k: int, n: int, rng: np.random.Generator, seed: int,
                 held_out: str = "test") -> list[dict]:
    """One request drawn from pool model ``k``'s left-out part: the pool-out control row and, with
    ``held_out="test"``, the no-op row on the same examples.

    ``held_out``: ``"test"``, the audit's own design: the request from the training split, the
    held-out examples the test split's part that ``k`` left out (the same for every set of model
    ``k``, so its sets share them); ``"left-out"``: the request drawn from everything ``k`` left out
    (both splits) and the rest of it held out, a fresh random partition per set, so that sets of one
    model share no fixed held-out draw (no no-op row: the target trained on part of it)."""
    data, ref = ctx.data, ctx.reference_models()
    n_train = len(data.y_train)
    out_k = ~ref.in_mask[k]
    if held_out == "left-out":
        pool_ids = np.flatnonzero(out_k)
        forget_ids = rng.choice(pool_ids, size=n, replace=False)
        held_ids = np.setdiff1d(pool_ids, forget_ids)
    else:
        forget_ids = rng.choice(np.flatnonzero(out_k[:n_train]), size=n, replace=False)
        held_ids = np.flatnonzero(out_k[n_train:]) + n_train
    ids = np.r_[np.sort(forget_ids), held_ids]
    x_pool, y_pool = ctx.pool
    ms = MembershipSet(x_pool[ids], y_pool[ids], ids, np.r_[np.ones(n, bool), np.zeros(len(held_ids), bool)])
    sub = leave_one_out(ctx, k)
    original = model_logits(ctx.model_file.model, ms.x)
    rows = []
    kinds = [("pool-out" if held_out == "test" else POOL_OUT_RANDOM, ctx.reference_logits[k][torch.as_tensor(ids)])]
    if held_out == "test":
        kinds.append(("none", original))
    for kind, unlearned in kinds:
        test, label, _, _ = membership_test(sub, {"original": original, "unlearned": unlearned}, ms, seed, "pool")
        tests = [membership_evidence(test, label, test.null_roles)]
        v = decide(copy.deepcopy(tests))
        rows.append({"row": kind, "size": str(n), "control_model": k, "verdicts": verdicts(tests),
                     "power_p": v.power_p_value, "p": v.p_value, "residual_upper": v.residual_leakage_upper,
                     "memorised_auc": v.memorised_auc, "memorised_auc_upper": v.memorised_auc_upper,
                     "unlearned_auc_upper": unlearned_auc_upper(tests), "n_held_out": int(len(held_ids)),
                     "held_out": held_out})
    return rows


def fmt_rate(k: int, n: int) -> str:
    return _common.rate_ci(k, n, counts=True)


def count(rows: list[dict], words: tuple[str, ...], alpha: str = "0.05") -> tuple[int, int]:
    return sum(1 for r in rows if r["verdicts"].get(alpha) in words), len(rows)


def cluster_interval(cell: list[dict], words: tuple[str, ...], draws: int = 4000) -> str:
    """A pool-out rate's 95% interval with its sets resampled by control model (a cluster bootstrap):
    the sets of one control model share its held-out examples, so they are not independent draws and
    the Clopper-Pearson interval, which assumes they are, is too narrow."""
    groups = {}
    for r in cell:
        groups.setdefault(r["control_model"], []).append(r["verdicts"].get("0.05") in words)
    per = [np.array(v, dtype=float) for v in groups.values()]
    if len(per) < 2:
        return "-"
    rng = np.random.default_rng(0)
    boots = [np.concatenate([per[i] for i in rng.integers(0, len(per), len(per))]).mean() for _ in range(draws)]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return f"[{lo:.0%}, {hi:.0%}]"


def table(rows: list[dict], sizes: list[str]) -> str:
    lines = ["| request | row | n | pass | not memorised | fail | inconclusive | decided | fail at alpha 0.01 | "
             "original detected | fail / decided, by control model |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sizes:
        for kind in ("none", "retrain", "pool-out", POOL_OUT_RANDOM, *METHOD_ROWS):
            cell = [r for r in rows if r["size"] == size and r["row"] == kind]
            if not cell:
                continue
            shares = [fmt_rate(*count(cell, (w,))) for w in WORDS]
            detected = sum(1 for r in cell if r["power_p"] is not None and r["power_p"] <= 0.05)
            lines.append(f"| {size} | {kind} | {len(cell)} | " + " | ".join(shares) + " | "
                         f"{fmt_rate(*count(cell, ('pass', 'not_memorised')))} | "
                         f"{fmt_rate(*count(cell, ('fail',), '0.01'))} | {fmt_rate(detected, len(cell))} | "
                         + (f"{cluster_interval(cell, ('fail',))} / {cluster_interval(cell, ('pass', 'not_memorised'))}"
                            if kind.startswith("pool-out") else "-") + " |")
    notes = ("The last column (pool-out rows): the fail and decided rates' 95% intervals from a bootstrap that "
             "resamples the control models (clusters of sets that share a model and its held-out examples); the "
             "Clopper-Pearson intervals beside them treat every set as independent and are too narrow.")
    return "\n".join(lines) + "\n\n" + notes + "\n"


def run_recipe(args, data, epochs: int | None, partial: Path) -> tuple[dict, list[dict], dict]:
    """One target and its pool (one training length): the cost figures and every row."""
    mf = target_model(data, args.work, args.target_seed, epochs)
    ctx = AttackContext(mf, data, 0, args.reference_models, args.work / "cache", ["loss", "lira_online", "rmia"], 400)
    t0 = time.perf_counter()
    pool = ctx.reference_models()
    pool_seconds = time.perf_counter() - t0
    trained_here = sum(1 for hit in pool.from_cache if not hit)
    t0 = time.perf_counter()
    ctx.reference_logits  # noqa: B018 - the pool's logits, computed (and cached) once
    logits_seconds = time.perf_counter() - t0
    sizes = [s for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    label = f"{mf.recipe.get('epochs')} epochs"
    rows: list[dict] = []
    cost: dict = {"recipe": label, "target_train_seconds": (mf.metrics or {}).get("train_seconds"),
                  "target_test_accuracy": mf.metrics["test_accuracy"],
                  "target_train_accuracy": mf.metrics["train_accuracy"], "pool_models": pool.num_models,
                  "pool_models_trained_here": trained_here, "pool_seconds": pool_seconds,
                  "pool_logits_seconds": logits_seconds,
                  "pool_train_seconds_per_model": pool_seconds / trained_here if trained_here else None}

    def audit(spec: str, method: str, seed: int, attacks_on: bool) -> tuple:
        fs = parse_forget(spec, data.y_train, data.num_classes)
        opts = AuditOptions.from_flat(mf.path, [fs.spec], method=method, show_progress=False, formats=[],
                                      attacks=["mia"], mia_attacks=list(ctx.mia_attacks) if attacks_on else [],
                                      seed=seed, reference_models=args.reference_models)
        run_ctx = copy.copy(ctx)  # shares the pool and its cached logits
        run_ctx.mia_attacks = list(ctx.mia_attacks) if attacks_on else []
        t = time.perf_counter()
        target = audit_target(run_ctx, opts, fs, []).target
        return target, time.perf_counter() - t

    if args.retrain_sets:
        # Cost: one request's audit as a warm `audit run` does it (the pool and its logits loaded from the cache
        # and checked, population attacks on), against one retrain of the target, in one run.
        spec = f"random={sizes[0]}@777" if sizes else "random=600@777"
        fs = parse_forget(spec, data.y_train, data.num_classes)
        opts = AuditOptions.from_flat(mf.path, [fs.spec], method="none", show_progress=False, formats=[],
                                      attacks=["mia"], seed=0, reference_models=args.reference_models)
        # The retrain first (the exact deletion, timed), then the audit of that model as `audit run r.pt
        # --original m.pt` does it: nothing of this request is cached, the retrained model's own inference
        # over the pool (its accuracies) is part of the audit.
        retrain = retrain_unlearn(lambda: mf.fresh_model(seed=424_242), data.x_train, data.y_train, fs.ids,
                                  TrainConfig.from_dict({**mf.recipe, "seed": 424_242}), train_fn=mf.train_fn)
        t = time.perf_counter()
        fresh = AttackContext(mf, data, 0, args.reference_models, args.work / "cache", list(ctx.mia_attacks), 400)
        fresh.reference_models()
        fresh.reference_logits  # noqa: B018 - from the cache, spot-checked
        fresh.original_pool_logits  # noqa: B018 - likewise
        loaded = time.perf_counter() - t
        given = SimpleNamespace(model=retrain.model, path=None, lineage=None)  # what --original hands the audit
        timed = audit_target(fresh, opts, fs, [], unlearned_given=given).target
        audit_seconds = time.perf_counter() - t
        cost["request_pool_load_seconds"] = loaded
        cost.update(request_audit_seconds=audit_seconds, request_audit_timings=timed.timings,
                    request_verdict=timed.verdict, retrain_seconds=retrain.seconds)
    print(json.dumps(cost, indent=1), flush=True)
    rng = np.random.default_rng(12_345)
    for size in sizes:
        n = int(size)
        for j in range(args.sets):
            rows += [{**row, "recipe": label}
                     for row in pool_out_row(ctx, j % pool.num_models, n, rng, seed=j, held_out=args.held_out)]
        for j in range(args.retrain_sets):
            target, seconds = audit(f"random={n}@{5000 + j}", "retrain", 60_000 + j, False)
            rows.append({**row_from_target("retrain", size, target, seconds), "recipe": label})
            partial.write_text(json.dumps({"cost": cost, "rows": rows}, indent=1))
        for j in range(args.method_sets):
            for method in methods:
                target, seconds = audit(f"random={n}@{5000 + j}", method, 60_000 + j, False)
                rows.append({**row_from_target(method, size, target, seconds), "recipe": label})
                partial.write_text(json.dumps({"cost": cost, "rows": rows}, indent=1))
        print(table(rows, [size]), flush=True)
    for cls in [c for c in args.classes.split(",") if c]:
        for method in ("none", "retrain", *methods):
            target, seconds = audit(f"class={cls}", method, 70_000, False)
            rows.append({**row_from_target(method, f"class={cls}", target, seconds), "recipe": label})
        partial.write_text(json.dumps({"cost": cost, "rows": rows}, indent=1))
    return cost, rows, {"arch": mf.arch, "test": mf.metrics["test_accuracy"], "train": mf.metrics["train_accuracy"]}


def cost_lines(cost: dict) -> list[str]:
    lines = [f"- Pool of {cost['pool_models']} reference models: {cost['pool_seconds']:.0f} s here "
             f"({cost['pool_models_trained_here']} trained in this run, the rest from the cache); its logits over the "
             f"pool: {cost['pool_logits_seconds']:.0f} s; the target's own training: "
             f"{cost['target_train_seconds'] or float('nan'):.0f} s."]
    if cost.get("retrain_seconds"):
        a, r = cost["request_audit_seconds"], cost["retrain_seconds"]
        lines.append(f"- One request's audit of a model retrained without it, as a warm `audit run r.pt --original "
                     f"m.pt` does it (the pool, its logits and the original's loaded from the cache and checked: "
                     f"{cost.get('request_pool_load_seconds', float('nan')):.1f} s; the retrained model's inference "
                     f"and the population attacks included; verdict {cost.get('request_verdict', '?')}): {a:.1f} s; "
                     f"that retrain: {r:.1f} s; **ratio {a / r:.2f}** (measured in one run).")
        per_model = cost.get("pool_train_seconds_per_model")
        if per_model:
            build = per_model * cost["pool_models"]
            lines.append(f"- Building the pool: {build / r:.1f} retrains; amortised over 10 / 100 / 1,000 requests: "
                         + " / ".join(f"{build / k / r:.2f}" for k in (10, 100, 1000)) + " retrains a request.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--sizes", default="60,600,3000", help="random request sizes (ids)")
    ap.add_argument("--classes", default="3", help="class targets, comma-separated ('' for none)")
    ap.add_argument("--sets", type=int, default=100, help="pool-out control and no-op requests per size")
    ap.add_argument("--retrain-sets", type=int, default=8, help="exact retrain requests per size (a retrain each)")
    ap.add_argument("--methods", default="", help=f"approximate methods to audit too, comma-separated, of "
                    f"{','.join(METHOD_ROWS)} (amnesiac needs a target trained with its updates recorded): "
                    "on the class targets and on --method-sets random sets per size")
    ap.add_argument("--method-sets", type=int, default=0, help="random requests per size audited for each method")
    ap.add_argument("--held-out", choices=["test", "left-out"], default="test",
                    help="the pool-out control's held-out examples: the test split's part its model left out "
                    "(shared by that model's sets; with the no-op row), or the rest of all it left out, "
                    "partitioned afresh per set (see pool_out_row)")
    ap.add_argument("--target-seed", type=int, default=0)
    ap.add_argument("--epochs", default="", help="training lengths to compare, e.g. 2,4,8 (default: the recipe's); "
                    "each trains its own target and pool")
    ap.add_argument("--reference-models", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "amnesia-audit" / "bench-requests")
    ap.add_argument("--out-name", default="requests-fashion")
    ap.add_argument("--retable", type=Path, metavar="JSON",
                    help="write the tables of a finished run again from its results JSON (this version's columns)")
    ap.add_argument("--from-partial", type=Path, metavar="JSON",
                    help="write the tables of a run that was stopped early, from its .partial.json")
    args = ap.parse_args()
    unknown = sorted(set(m for m in args.methods.split(",") if m) - set(METHOD_ROWS))
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHOD_ROWS)}")
    if args.retable:
        run = json.loads(args.retable.read_text())
        md = [f"The tables of a finished run, written again from its results ({args.retable.name}; its command "
              f"line: `{run.get('command', '?')}`).\n"]
        for recipe in run["recipes"]:
            md += [f"## {recipe['cost']['recipe']}: target {recipe['target']['arch']}, test accuracy "
                   f"{recipe['target']['test']:.1%}\n", *cost_lines(recipe["cost"]), "",
                   table(recipe["rows"], run["sizes"] + sorted({r["size"] for r in recipe["rows"]
                                                                if r["size"].startswith("class")}))]
        text = "\n".join(md)
        print(text)
        _common.write_tables(args.out_name, text, {**run, "retabled_from": run.get("command")})
        return
    if args.from_partial:
        run = json.loads(args.from_partial.read_text())
        sizes = sorted({r["size"] for r in run["rows"]}, key=lambda s: (s.startswith("class"), s.zfill(8)))
        text = "\n".join([f"A run stopped early ({args.from_partial.name}): the rows it finished.\n",
                          *cost_lines(run["cost"]), "", table(run["rows"], sizes)])
        print(text)
        _common.write_tables(args.out_name, text, {"cost": run["cost"], "rows": run["rows"], "stopped_early": True})
        return
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data)
    start = time.perf_counter()
    partial = _common.RESULTS / f"{args.out_name}.partial.json"
    sizes = [s for s in args.sizes.split(",") if s]
    labels = sizes + [f"class={c}" for c in args.classes.split(",") if c]
    md = [f"Data: {data.spec} ({len(data.y_train):,} train / {len(data.y_test):,} test).\n"]
    payload: dict = {"recipes": [], "sizes": sizes}
    for epochs in [int(e) for e in args.epochs.split(",") if e] or [None]:
        cost, rows, target = run_recipe(args, data, epochs, partial)
        payload["recipes"].append({"cost": cost, "rows": rows, "target": target})
        md += [f"## {cost['recipe']}: target {target['arch']}, test accuracy {target['test']:.1%}, train accuracy "
               f"{target['train']:.1%}\n", "Cost (one run, this machine; other jobs may have shared its cores):\n",
               *cost_lines(cost), "",
               "Outcomes (alpha 0.05, --max-residual 0.5, --max-memorised-auc 0.6; 95% intervals):\n",
               table(rows, labels)]
        _common.write_tables(args.out_name, "\n".join(md), payload)  # after each recipe: a cut-off run keeps figures
    md.append(f"\nWall time {time.perf_counter() - start:.0f} s.\n")
    text = "\n".join(md)
    print(text)
    _common.write_tables(args.out_name, text, payload)
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
