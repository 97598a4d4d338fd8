"""Measured, not computed: ResNet-18 on 50,000 CIFAR-shape images, packed against unpacked.

    python benchmarks/scale.py --resnet-run             # the full run (about an hour on 2 busy cores)
    python benchmarks/scale_run.py --quick --out-dir /tmp/x   # 1,280 images: a smoke run

One run, one torch thread, nothing downloaded. Data: 50,000 training and 10,000 test
images 3x32x32 generated from a seed (each class a smooth colour pattern, plus a
distractor pattern from a pool shared by all classes, a random shift and Gaussian noise),
so the model learns something in one epoch. Model: the toolkit's ``resnet18``
(torchvision's ResNet-18, ImageNet stem, as in the Amnesiac paper), Adam lr 1e-3,
batch 64, ``--epochs`` epochs (default 1, 782 steps), the same initial weights and
seed everywhere.

Runs, in this order (each saved as soon as it is done, so a run cut short keeps what it
measured): for 1% and 10% of the ids recordable (a seeded random draw, the 1% inside the
10%), training with an ``UpdateRecorder`` packed (``PackedBatchSampler``) and unpacked
(random batches); then retraining from scratch without the forget set (1 example, the 1%,
the 10%). For each recorded run: log size on disk, time per step (recorded against
unrecorded steps of the same run), test accuracy, and ``amnesiac_unlearn`` of 1 example,
1% and (at 10% recordable) 10% of the data, each timed end to end with the forget,
retain and test accuracy of the result. Packed logs are also rewritten in float16 by the
same ``UpdateLogWriter`` (so their removal time in float16 is measured) and a few step
files are compressed with zlib to see whether compression would pay.

Unpacked at 10% recordable records nearly every step (about 35 GB in float32 for one
epoch): that run records float16 to fit the disk shared with other jobs, and says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch
from torch.nn import functional as F

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path.insert(0, str(_ROOT))  # this checkout's packages before an installed copy

import _common  # noqa: E402

from audit.models import build_model  # noqa: E402
from unlearning import PackedBatchSampler, TrainConfig, UpdateLog, UpdateRecorder, amnesiac_unlearn, fit  # noqa: E402
from unlearning.training import accuracy, make_optimizer, steps_per_epoch  # noqa: E402
from unlearning.update_log import UpdateLogWriter  # noqa: E402

BATCH, LR, CLASSES = 64, 1e-3, 10


def cifar_shape(n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded CIFAR-shape images in [0, 1]: class pattern + shared distractor + shift + noise."""
    gen = torch.Generator().manual_seed(seed)

    def smooth(k: int) -> torch.Tensor:
        low = torch.randn(k, 3, 4, 4, generator=gen)
        return F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)

    classes, distractors = smooth(CLASSES), smooth(20)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=gen)
        d = torch.randint(0, len(distractors), (n,), generator=gen)
        shift = torch.randint(0, 49, (n,), generator=gen)  # a shift of -3..3 pixels each way
        out = 0.5 + 0.06 * classes[y] + 0.10 * distractors[d]
        for k in range(49):
            m = shift == k
            out[m] = torch.roll(out[m], shifts=(k // 7 - 3, k % 7 - 3), dims=(2, 3))
        out += 0.25 * torch.randn(out.shape, generator=gen)
        return out.clamp_(0, 1), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return x_train, y_train, x_test, y_test


def _new_model(seed: int) -> torch.nn.Module:
    return build_model("resnet18", 3, CLASSES, [0.5] * 3, [0.5] * 3, seed=seed)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.work = workdir
        n_train, n_test = (1280, 640) if args.quick else (50_000, 10_000)
        self.x, self.y, self.xt, self.yt = cifar_shape(n_train, n_test, args.seed)
        self.n = n_train
        self.config = TrainConfig(epochs=args.epochs, batch_size=BATCH, lr=LR, seed=args.seed)
        perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(args.seed + 7))
        self.recordable = {"1%": perm[: n_train // 100].sort().values, "10%": perm[: n_train // 10].sort().values}
        self.forget = {"1 example": self.recordable["1%"][:1], "1%": self.recordable["1%"],
                       "10%": self.recordable["10%"]}
        outside = perm[n_train // 10:]
        self.retain_probe = outside[: min(len(outside), args.probe)]
        self.test_probe = torch.arange(min(len(self.yt), args.test_probe))
        self.payload: dict = {"settings": {"n_train": n_train, "n_test_probe": len(self.test_probe),
                                           "retain_probe": len(self.retain_probe), "epochs": args.epochs,
                                           "batch": BATCH, "lr": LR, "seed": args.seed, "quick": args.quick,
                                           "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                                           "load_start": os.getloadavg()[0]},
                              "recorded": [], "retrain": []}

    def quality(self, model: torch.nn.Module, forget: torch.Tensor | None) -> dict:
        out = {"test": accuracy(model, self.xt[self.test_probe], self.yt[self.test_probe]),
               "retain": accuracy(model, self.x[self.retain_probe], self.y[self.retain_probe])}
        if forget is not None:
            f = forget[: self.args.probe]
            out["forget"] = accuracy(model, self.x[f], self.y[f])
        return out

    def train(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, optimizer_of=None,
              sampler: PackedBatchSampler | None = None) -> tuple[torch.nn.Module, list[float], float]:
        model = _new_model(self.args.seed)
        optimizer = make_optimizer(model, self.config)
        if optimizer_of is not None:
            optimizer = optimizer_of(model, optimizer)
        stamps = [time.perf_counter()]
        fit(model, x, y, self.config, ids=ids, optimizer=optimizer, batch_sampler=sampler,
            on_step=lambda *_: stamps.append(time.perf_counter()))
        steps = [b - a for a, b in zip(stamps, stamps[1:])]
        return model, steps, stamps[-1] - stamps[0]

    def save(self) -> None:
        self.payload["settings"]["load_now"] = os.getloadavg()[0]
        markdown = render(self.payload)
        if self.args.out_dir:
            _common.RESULTS = Path(self.args.out_dir)
        _common.write_tables(self.args.out_name, markdown, self.payload)

    def recorded_run(self, share: str, packed: bool, dtype: torch.dtype) -> None:
        label = f"{share} recordable, {'packed' if packed else 'unpacked'}"
        print(f"training: {label} ({dtype}) ...", flush=True)
        recordable = self.recordable[share]
        log_dir = self.work / f"{share.rstrip('%')}-{'packed' if packed else 'unpacked'}.updates"
        holder: dict = {}

        def attach(model, optimizer):
            holder["recorder"] = UpdateRecorder(model, log_dir, record_ids=recordable, dtype=dtype,
                                                record=f"random {share}")
            return holder["recorder"].attach(optimizer)

        sampler = PackedBatchSampler(self.n, recordable, BATCH, seed=self.args.seed) if packed else None
        model, steps, seconds = self.train(self.x, self.y, torch.arange(self.n), attach, sampler)
        summary = holder["recorder"].close()
        log = UpdateLog.open_trusted(log_dir, summary["log_sha256"], lazy_steps=True)
        recorded_steps = {e.step for e in log.entries}
        rec_s = [s for i, s in enumerate(steps) if i in recorded_steps]
        plain_s = [s for i, s in enumerate(steps) if i not in recorded_steps]
        row = {"share": share, "packed": packed, "dtype": str(dtype).removeprefix("torch."),
               "train_s": seconds, "steps": len(steps), "recorded": summary["recorded"],
               "log_bytes": summary["bytes"], "log_bytes_on_disk": _du(log_dir),
               "recorded_step_median_s": statistics.median(rec_s) if rec_s else None,
               "plain_step_median_s": statistics.median(plain_s) if plain_s else None,
               "quality": self.quality(model, recordable), "removals": []}
        self.payload["recorded"].append(row)
        self.save()
        for request, forget in self.forget.items():
            if not torch.isin(forget, recordable).all():
                continue
            print(f"  amnesiac_unlearn {request} ...", flush=True)
            res = amnesiac_unlearn(model, log_dir, forget, log_sha256=summary["log_sha256"])
            row["removals"].append({"request": request, "ids": len(forget), "seconds": res.seconds,
                                    "batches_removed": res.details["batches_removed"],
                                    "retained_in_removed": res.details["retained_examples_in_removed_batches"],
                                    "quality": self.quality(res.model, forget)})
            del res
            self.save()
        if packed and dtype == torch.float32:
            row["float16"] = self.float16_copy(log, model)
            self.save()
        row["zlib"] = zlib_probe(log)
        self.save()
        del log, model
        shutil.rmtree(log_dir, ignore_errors=True)

    def float16_copy(self, log: UpdateLog, model: torch.nn.Module) -> dict:
        """The same steps written as a float16 log by ``UpdateLogWriter``; its size and removal times."""
        path = self.work / "f16.updates"
        header = log.header
        writer = UpdateLogWriter(path, header["param_names"], header["buffer_names"], log.covered_ids,
                                 torch.float16, header.get("record", "all"))
        for e in log.entries:
            params, buffers, ids = log.read(e)
            writer.append(e.step, e.epoch, ids, params, buffers)
        summary = writer.close(log.total_steps or 0)
        out = {"log_bytes": summary["bytes"], "removals": []}
        for request, forget in self.forget.items():
            if torch.isin(forget, log.covered_ids).all():
                res = amnesiac_unlearn(model, path, forget, log_sha256=summary["log_sha256"])
                out["removals"].append({"request": request, "seconds": res.seconds,
                                        "batches_removed": res.details["batches_removed"]})
        shutil.rmtree(path, ignore_errors=True)
        return out

    def retrain(self, request: str) -> None:
        print(f"retraining without {request} ...", flush=True)
        forget = self.forget[request]
        keep = ~torch.isin(torch.arange(self.n), forget)
        model, steps, seconds = self.train(self.x[keep], self.y[keep], torch.nonzero(keep).flatten())
        self.payload["retrain"].append({"request": request, "ids": len(forget), "seconds": seconds,
                                        "steps": len(steps), "step_median_s": statistics.median(steps),
                                        "quality": self.quality(model, forget)})
        self.save()


def zlib_probe(log: UpdateLog, files: int = 4) -> dict:
    """zlib level 1 on a few step files: bytes saved and seconds to compress and to decompress."""
    ratios, comp_s, decomp_s, read_s = [], [], [], []
    # Spread through the log: Adam's first steps are near +-lr everywhere and compress far better than later ones.
    picks = sorted({(k * (len(log.entries) - 1)) // max(1, files - 1) for k in range(files)}) if log.entries else []
    for e in (log.entries[i] for i in picks):
        start = time.perf_counter()
        blob = (log.path / e.file).read_bytes()
        read_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        packed = zlib.compress(blob, 1)
        comp_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        zlib.decompress(packed)
        decomp_s.append(time.perf_counter() - start)
        ratios.append(len(packed) / len(blob))
    if not ratios:
        return {}
    return {"files": len(ratios), "compressed_over_raw": statistics.median(ratios),
            "compress_s": statistics.median(comp_s), "decompress_s": statistics.median(decomp_s),
            "read_s": statistics.median(read_s), "file_bytes": log.entries[0].bytes}


# ------------------------------------------------------------------------------ tables

def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB"


def _s(s: float) -> str:
    return f"{s:,.0f} s" if s >= 100 else f"{s:.3g} s"


def _opt(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _ratio(retrain: dict | None, removal: dict | None) -> str:
    if retrain is None or removal is None:
        return "-"
    return f"{retrain['seconds'] / removal['seconds']:,.0f}x"


def _own(p: dict, row: dict, removal: dict) -> str:
    """The row's own training time, scaled to the retained examples' steps, over the removal time."""
    st = p["settings"]
    steps = steps_per_epoch(st["n_train"] - removal["ids"], st["batch"]) * st["epochs"]
    return f"{row['train_s'] * steps / row['steps'] / removal['seconds']:,.0f}x"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render(p: dict) -> str:
    s = p["settings"]
    notes: set[str] = set()

    def retrain_for(row: dict, request: str) -> tuple[dict | None, str]:
        """The retrain to compare with: the same process's, else the other process's (marked)."""
        same = [r for r in p["retrain"] if r["request"] == request and r.get("part") == row.get("part")]
        other = [r for r in p["retrain"] if r["request"] == request]
        if same or other:
            mark = "" if same else " (b)"
            notes.update({mark} - {""})
            return (same or other)[0], mark
        base = [r for r in p["retrain"] if r["request"] == "1%"]
        if request == "1 example" and base:  # 49,999 examples: at least the 1% retrain's (49,500) steps
            notes.add(" (a)")
            return base[0], " (a)"
        if request == "10%" and base:  # scaled from the 1% retrain by its step count: computed, not measured
            n = p["settings"]["n_train"]
            steps = steps_per_epoch(n - n // 10, p["settings"]["batch"]) * p["settings"]["epochs"]
            notes.add(" (c)")
            return {**base[0], "seconds": base[0]["seconds"] * steps / base[0]["steps"], "steps": steps}, " (c)"
        return None, ""
    lines = [
        f"Settings: {s['n_train']:,} generated training images 3x32x32, 10 classes; toolkit `resnet18`; Adam lr "
        f"{s['lr']:g}, batch {s['batch']}, {s['epochs']} epoch(s), seed {s['seed']}; torch threads "
        f"{s['torch_threads']}; load average {s['load_start']:.1f} at start, {s.get('load_now', 0):.1f} at the last save "
        f"on {s['cpus']} CPUs (shared with other jobs: times are noisy). Accuracy: test on {s['n_test_probe']:,} "
        f"generated test images, retain on {s['retain_probe']:,} training images outside every forget set, forget on "
        "the forget set (first 2,000 ids at most). Every figure below was measured in this one run"
        + (f" ({p['parts']})" if p.get("parts") else "") + ".", "",
        "## Recording: packed against unpacked", "",
        "| ids recordable | batches | log dtype | steps recorded | log on disk | epoch wall time | "
        "step, recorded (median) | step, not recorded (median) | test acc. | zlib size / raw |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p["recorded"]:
        z = r.get("zlib") or {}
        lines.append(
            f"| {r['share']} | {'packed' if r['packed'] else 'unpacked'} | {r['dtype']} | {r['recorded']:,} of "
            f"{r['steps']:,} ({r['recorded'] / r['steps']:.1%}) | {_gb(r['log_bytes_on_disk'])} | {_s(r['train_s'])} | "
            f"{_opt(r['recorded_step_median_s'], '{:.3f} s')} | {_opt(r['plain_step_median_s'], '{:.3f} s')} | "
            f"{_pct(r['quality']['test'])} | {_opt(z.get('compressed_over_raw'), '{:.3f}')} |")
    if p.get("note"):
        lines += ["", f"Note: {p['note']}"]
    lines += ["", "## Removal against retraining (measured)", "",
              "Removal: `amnesiac_unlearn` end to end (open and verify the log, scan the journal, read, check and "
              "subtract the removed steps, from the trained model); no repair. Retrain: the same recipe from the same "
              "initial weights on the retained examples, the same number of epochs.", "",
              "Same-process column: this process's own training from scratch (the row's training run, minutes "
              "before the removal, under the same load), scaled to the retained examples' step count; it is the "
              "comparison least disturbed by the load of other jobs changing over the run.", "",
              "| ids recordable | batches | forget | steps removed | retained examples in them | removal | retrain | "
              "retrain / removal | same-process training / removal | removal fp16 | retrain / removal fp16 |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in p["recorded"]:
        f16 = {x["request"]: x for x in (r.get("float16") or {}).get("removals", [])}
        for m in r["removals"]:
            rt, mark = retrain_for(r, m["request"])
            h = f16.get(m["request"])
            if r["dtype"] == "float16":  # the log itself is float16
                h, m_fp32 = m, None
            else:
                m_fp32 = m
            lines.append(
                f"| {r['share']} | {'packed' if r['packed'] else 'unpacked'} | {m['request']} | "
                f"{m['batches_removed']:,} | {m['retained_in_removed']:,} | "
                f"{'-' if m_fp32 is None else _s(m_fp32['seconds'])} | "
                f"{'-' if rt is None else _s(rt['seconds']) + mark} | "
                f"{_ratio(rt, m_fp32)} | {_own(p, r, m)} | {'-' if h is None else _s(h['seconds'])} | {_ratio(rt, h)} |")
    if " (a)" in notes:
        lines.append("\n(a) Retraining without one example (49,999 images, 782 steps) was not measured; the "
                     "measured retrain without the 1% (49,500 images, 774 steps) stands in for it, which understates "
                     "the retrain time and so the ratio.")
    if " (c)" in notes:
        lines.append("\n(c) Retraining without the 10% was not measured (time ran out); its time here is the measured "
                     "retrain without the 1% scaled by the step count (704 / 774 steps per epoch): computed, not "
                     "measured.")
    if " (b)" in notes:
        lines.append("\n(b) This retrain was measured by another process of the run (see Settings), at another "
                     "moment: the load of other jobs may have differed (see the note).")
    lines += ["", "## Quality after removal (no repair)", "",
              "| ids recordable | batches | forget | forget acc. | retain acc. | test acc. |", "|---|---|---|---|---|---|"]
    for r in p["recorded"]:
        q = r["quality"]
        lines.append(f"| {r['share']} | {'packed' if r['packed'] else 'unpacked'} | (trained, nothing removed) | "
                     f"{_pct(q.get('forget'))} | {_pct(q['retain'])} | {_pct(q['test'])} |")
        for m in r["removals"]:
            q = m["quality"]
            lines.append(f"| {r['share']} | {'packed' if r['packed'] else 'unpacked'} | {m['request']} | "
                         f"{_pct(q.get('forget'))} | {_pct(q['retain'])} | {_pct(q['test'])} |")
    for r in p["retrain"]:
        q = r["quality"]
        lines.append(f"| - | retrained from scratch | {r['request']} | {_pct(q.get('forget'))} | {_pct(q['retain'])} | "
                     f"{_pct(q['test'])} |")
    zs = [r["zlib"] for r in p["recorded"] if r.get("zlib")]
    if zs:
        z = zs[0]
        lines += ["", f"zlib (level 1) on {z['files']} step files of {_gb(z['file_bytes'])}: compressed size "
                  f"{z['compressed_over_raw']:.3f} of the raw file, {z['compress_s']:.2f} s to compress and "
                  f"{z['decompress_s']:.2f} s to decompress one file, against {z['read_s']:.3f} s to read it."]
    return "\n".join(lines) + "\n"


def merge(args: argparse.Namespace) -> int:
    import json

    docs = [json.loads(Path(f).read_text()) for f in args.merge]
    payload = {"settings": docs[0]["settings"], "recorded": [], "retrain": [], "sources": []}
    for part, doc in zip("ABCDEFGH", docs):
        for key in ("recorded", "retrain"):
            payload[key] += [{**row, "part": part} for row in doc[key]]
        payload["sources"].append({"part": part, "command": doc["command"], "settings": doc["settings"]})
    payload["settings"]["load_now"] = max(d["settings"].get("load_now", 0) for d in docs)
    if args.note:
        payload["note"] = args.note
    payload["parts"] = "; ".join(f"process {s['part']}: `{s['command']}`" for s in payload["sources"]) + \
        ", started within minutes of each other"
    markdown = render(payload)
    print(markdown)
    if args.out_dir:
        _common.RESULTS = Path(args.out_dir)
    _common.write_tables(args.out_name, markdown, payload)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,280 images: a smoke run")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", type=int, default=2000, help="retain and forget examples whose accuracy is measured")
    ap.add_argument("--test-probe", type=int, default=5000, help="test images whose accuracy is measured")
    ap.add_argument("--only", default="", help="comma-separated stages to run (p1,u1,p10,u10,r1,r1pct,r10); default all")
    ap.add_argument("--workdir", default=None, help="folder for the update logs (default: a temporary folder)")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--out-name", default="scale-resnet-run")
    ap.add_argument("--note", default=None, help="with --merge: a sentence printed under the settings")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine the JSON of processes that ran stages side by side (--only) into one table")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="scale-run-", dir=args.workdir) as tmp:
        bench = Bench(args, Path(tmp))
        stages = {
            "p1": lambda: bench.recorded_run("1%", True, torch.float32),
            "u1": lambda: bench.recorded_run("1%", False, torch.float32),
            "r1pct": lambda: bench.retrain("1%"),
            "r1": lambda: bench.retrain("1 example"),
            "p10": lambda: bench.recorded_run("10%", True, torch.float32),
            "u10": lambda: bench.recorded_run("10%", False, torch.float16),
            "r10": lambda: bench.retrain("10%"),
        }
        wanted = [s for s in args.only.split(",") if s] or list(stages)
        for name in wanted:
            stages[name]()
    print(render(bench.payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
