"""Costs at real network size, measured on this CPU and extrapolated where stated.

    python benchmarks/scale.py                 # the full run (a few minutes on 2 busy cores)
    python benchmarks/scale.py --quick         # fewer steps and epochs (the smoke test)
    python benchmarks/scale.py --quick --out-dir /tmp/x --out-name scale-smoke
    python benchmarks/scale.py --resnet-run    # measured: ResNet-18 on 50,000 CIFAR-shape images, packed
                                               # against unpacked recording (benchmarks/scale_run.py)

Measured (one torch thread, generated data, nothing downloaded):

* ResNet-18 at CIFAR shape (3x32x32; 10 and 100 classes), built by
  ``audit.models.build_model`` and trained by ``unlearning.fit`` (Adam, batch 64, the
  Amnesiac paper's setup): time per training step, with and without an
  ``unlearning.UpdateRecorder``; bytes of one recorded update (float32, float16) read
  from the written step file; time to read, verify (SHA-256) and subtract one recorded
  step (``UpdateLog.read_step`` plus the float64 sum ``amnesiac_unlearn`` forms), and
  ``amnesiac_unlearn`` end to end.
* 8 reference models (smallcnn on the embedded digits, the audit's default recipe)
  one after another, then the same 8 as Ray tasks on 2 worker processes (a bare
  ``@ray.remote`` function, then the audit's ``RayExecutor``), then sequentially again,
  in one run; every Ray-trained model must have the sequential one's weights.

Computed from those (labelled so in the tables): retraining vs amnesiac removal for
10 epochs of CIFAR-10 at batch 64 (7,820 steps) with 1%, 10% and 100% of the ids
recordable, and the update log's size; the wall time of a 64-reference audit. The one
assumption, a GPU's time per CIFAR-10 ResNet-18 epoch, is a flag and is labelled.
Graves et al. (AAAI 2021) are the anchor: about 42 GB for 950 stored ResNet-18 batches.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path.insert(0, str(_ROOT))  # this checkout's packages before an installed copy


import _common  # noqa: E402  (benchmarks/_common.py, next to this script)

from attacks.reference import reference_inclusion, state_digest  # noqa: E402
from audit.data import load_dataset  # noqa: E402
from audit.models import build_model  # noqa: E402
from unlearning import TrainConfig, UpdateLog, UpdateRecorder, amnesiac_unlearn, fit  # noqa: E402
from unlearning.amnesiac import default_repair  # noqa: E402
from unlearning.training import steps_per_epoch  # noqa: E402
from unlearning.training import make_optimizer  # noqa: E402

# CIFAR-10 as the paper trains it: 50,000 images, batch 64, 10 epochs, Adam lr 1e-3.
CIFAR_TRAIN = 50_000
BATCH = 64
EPOCHS = 10
RECIPE = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=1e-3)
PAPER_LOG_BYTES, PAPER_LOG_BATCHES = 42e9, 950  # Graves et al. 2021: ~42 GB for 950 batches
RECORDABLE = (0.01, 0.10, 1.00)
REQUESTS = (("1 sample", 1), ("1% of the data", CIFAR_TRAIN // 100), ("10% of the data", CIFAR_TRAIN // 10))
# Assumption, not a measurement: one CIFAR-10 epoch of a ResNet-18 on one modern GPU takes
# on the order of 10-20 s. Myrtle.ai, "How to Train Your ResNet" (2018), starts from the
# DAWNBench single-V100 record of 341 s for a whole ResNet-18-class CIFAR-10 training of a
# few tens of epochs. The toolkit's resnet18 keeps torchvision's ImageNet stem (7x7 conv,
# stride 2, max-pool): fewer FLOPs at 32x32 than the CIFAR variant (the run counts both).
GPU_EPOCH_SECONDS, GPU_EPOCH_RANGE = 15.0, (10.0, 20.0)
AUDIT_REFERENCE_MODELS, GPU_COUNTS = 64, (1, 8, 64)


# ---------------------------------------------------------------- ResNet-18 measurements

def _timed_fit(model: torch.nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, batch: int,
               skip: int) -> list[float]:
    """Seconds of each ``unlearning.fit`` step after the first ``skip`` (warm-up), one epoch over x."""
    stamps = [time.perf_counter()]
    fit(model, x, y, TrainConfig(epochs=1, batch_size=batch, lr=RECIPE.lr, seed=0), optimizer=optimizer,
        on_step=lambda *_: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])][skip:]


def _evict(path: Path) -> None:
    """Ask the kernel to drop a (synced, clean) file from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_and_subtract(log: UpdateLog, model: torch.nn.Module, cold: bool) -> list[float]:
    """Seconds per recorded step to read it, check its SHA-256 and add it to the float64 sum."""
    params = dict(model.named_parameters())
    total = {f"p/{k}": torch.zeros(p.shape, dtype=torch.float64) for k, p in params.items()}
    total.update({f"b/{k}": torch.zeros(b.shape, dtype=torch.float64)
                  for k, b in model.named_buffers() if b.is_floating_point()})
    out = []
    for entry in log.entries:
        if cold:
            _evict(log.path / entry.file)
        start = time.perf_counter()
        step = log.read_step(entry)
        step.pop("ids")
        for key, delta in step.items():
            total[key] += delta.to(torch.float64)
        out.append(time.perf_counter() - start)
    return out


def measure_resnet(num_classes: int, warmup: int, steps: int, repair_steps: int, seed: int, workdir: Path) -> dict:
    """Step times, update bytes and removal times of one ResNet-18 at CIFAR shape."""
    model = build_model("resnet18", 3, num_classes, [0.5] * 3, [0.5] * 3, seed=seed)  # Normalize(0.5, 0.5) as the paper
    gen = torch.Generator().manual_seed(seed)
    n = (warmup + steps) * BATCH
    x = torch.rand(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    optimizer = make_optimizer(model, RECIPE)
    res: dict = {"num_classes": num_classes,
                 "parameters": sum(p.numel() for p in model.parameters()),
                 "float_buffer_values": sum(b.numel() for b in model.buffers() if b.is_floating_point())}
    res["train_step_s"] = _timed_fit(model, optimizer, x, y, BATCH, warmup)
    repair = default_repair(RECIPE)
    nr = (warmup + repair_steps) * repair.batch_size
    res["repair_batch_size"] = repair.batch_size
    res["repair_step_s"] = _timed_fit(model, optimizer, x[:nr], y[:nr], repair.batch_size, warmup)

    for dtype in (torch.float32, torch.float16):
        name = str(dtype).removeprefix("torch.")
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        recorder = UpdateRecorder(model, workdir / f"c{num_classes}-{name}.updates", dtype=dtype,
                                  all_ids=torch.arange(n))
        rec_opt = recorder.wrap(optimizer)
        step_s = _timed_fit(model, rec_opt, x, y, BATCH, warmup)
        summary = recorder.close()
        start = time.perf_counter()
        log = UpdateLog.open_trusted(recorder.writer.path, summary["log_sha256"], lazy_steps=True)
        open_s = time.perf_counter() - start
        sizes = [(log.path / e.file).stat().st_size for e in log.entries]
        warm = _read_and_subtract(log, model, cold=False)
        cold = _read_and_subtract(log, model, cold=True)
        one = [amnesiac_unlearn(model, log.path, torch.tensor(e.ids), log_sha256=summary["log_sha256"])
               for e in log.entries[-2:]]
        every = amnesiac_unlearn(model, log.path, torch.arange(n), log_sha256=summary["log_sha256"])
        assert every.details["batches_removed"] == len(log.entries)
        assert all(r.details["batches_removed"] == 1 for r in one)
        drift = max(float((every.model.state_dict()[k].double() - v.double()).abs().max())
                    for k, v in before.items() if v.is_floating_point())
        res[name] = {
            "recorded_step_s": step_s,
            "update_bytes": statistics.median(sizes),
            "log_open_s": open_s, "log_entries": len(log.entries),
            "read_verify_subtract_s": warm, "read_verify_subtract_cold_s": cold,
            "amnesiac_one_step_s": min(r.seconds for r in one),
            "amnesiac_all_steps_s": every.seconds,
            "max_weight_error_after_removing_all": drift,
        }
        del log, every, one
    return res


def forward_flops(num_classes: int) -> dict:
    """Forward FLOPs per 32x32 image (torch's FlopCounterMode) of the toolkit's resnet18, and of
    the CIFAR variant most GPU timings quote (3x3 stride-1 stem, no max-pool) for comparison."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    def count(model: nn.Module) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, 3, 32, 32))
        return int(counter.get_total_flops())

    model = build_model("resnet18", 3, num_classes, [0.5] * 3, [0.5] * 3, seed=0)
    toolkit = count(model)
    model.net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.net.maxpool = nn.Identity()
    return {"toolkit_resnet18": toolkit, "cifar_stem_resnet18": count(model)}


def measure_journal(epochs: int, workdir: Path) -> dict:
    """What a removal pays per entry of the log, whatever the model: opening and checking the
    journal and scanning it for the forget ids. Measured at CIFAR-10's batch count with a
    tiny model (its step files are a few hundred bytes), removing one sample (one step per epoch)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.rand(CIFAR_TRAIN, 4), torch.randint(0, 2, (CIFAR_TRAIN,))
    recorder = UpdateRecorder(model, workdir / "journal.updates", all_ids=torch.arange(CIFAR_TRAIN))
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=RECIPE.lr)
    fit(model, x, y, config, optimizer=recorder.wrap(make_optimizer(model, config)))
    summary = recorder.close()
    start = time.perf_counter()
    UpdateLog.open_trusted(recorder.writer.path, summary["log_sha256"], lazy_steps=True)
    open_s = time.perf_counter() - start
    one = amnesiac_unlearn(model, recorder.writer.path, torch.tensor([0]), log_sha256=summary["log_sha256"])
    return {"entries": summary["recorded"], "open_s": open_s, "one_sample_removal_s": one.seconds,
            "batches_removed": one.details["batches_removed"]}


# ------------------------------------------------------------ CIFAR-10 extrapolation

def batches_holding(n: int, marked: int, batch: int, epochs: int) -> float:
    """Expected number of batches that hold any of ``marked`` ids when each epoch draws a random
    permutation of ``n`` ids in batches of ``batch`` (the last one smaller): exact, hypergeometric."""
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    per_epoch = 0.0
    for b in sizes:
        none = 1.0
        for i in range(b):
            none *= (n - marked - i) / (n - i)
        per_epoch += 1.0 - none
    return epochs * per_epoch


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def extrapolate(r: dict, journal: dict, gpu_epoch_s: float) -> dict:
    """Retrain vs amnesiac removal for CIFAR-10, 10 epochs at batch 64, from the measured figures."""
    total_steps = EPOCHS * steps_per_epoch(CIFAR_TRAIN, BATCH)
    step = _med(r["train_step_s"])
    logs, rows = [], []
    for p in RECORDABLE:
        recordable = round(p * CIFAR_TRAIN)
        recorded = batches_holding(CIFAR_TRAIN, recordable, BATCH, EPOCHS)
        logs.append({"recordable_fraction": p, "recorded_batches": recorded, "recorded_fraction": recorded / total_steps,
                     "approx_fraction": 1 - (1 - p) ** BATCH,
                     "log_bytes_float32": recorded * r["float32"]["update_bytes"],
                     "log_bytes_float16": recorded * r["float16"]["update_bytes"],
                     "recording_overhead_s": recorded * max(0.0, _med(r["float32"]["recorded_step_s"]) - step)})
        for label, size in REQUESTS:
            if size > recordable:
                continue  # a request outside the recordable ids is refused by amnesiac (relabel instead)
            removed = batches_holding(CIFAR_TRAIN, size, BATCH, EPOCHS)
            retained = CIFAR_TRAIN - size
            retrain = EPOCHS * steps_per_epoch(retained, BATCH) * step
            repair = default_repair(RECIPE)
            repair_s = repair.epochs * steps_per_epoch(retained, repair.batch_size) * _med(r["repair_step_s"])
            row = {"recordable_fraction": p, "request": label, "request_ids": size,
                   "removed_batches": removed, "removed_fraction": removed / total_steps, "retrain_s": retrain,
                   "repair_s": repair_s}
            for dt in ("float32", "float16"):
                f = r[dt]
                per_step = _med(f["read_verify_subtract_s"])
                # End to end for one removed step, then the marginal cost of each further one,
                # plus a journal of `recorded` entries at the cost per entry measured with a tiny model.
                removal = (f["amnesiac_one_step_s"] + (removed - 1) * per_step
                           + recorded * journal["one_sample_removal_s"] / journal["entries"])
                row[f"removal_s_{dt}"] = removal
                row[f"ratio_{dt}"] = retrain / removal
            row["ratio_with_repair"] = retrain / (row["removal_s_float32"] + repair_s)
            # If training ran on a GPU at the assumed epoch time but removal stayed as measured here.
            row["ratio_gpu_assumed"] = EPOCHS * gpu_epoch_s * (retained / CIFAR_TRAIN) / row["removal_s_float32"]
            rows.append(row)
    return {"total_steps": total_steps, "train_step_s": step, "logs": logs, "rows": rows}


# ------------------------------------------------------------------ reference models

def train_reference_state(x: torch.Tensor, y: torch.Tensor, ids, seed: int, epochs: int,
                          mean: list[float], std: list[float]) -> dict[str, torch.Tensor]:
    """One reference model, smallcnn with the audit's recipe, on ``x[ids]``; its state_dict.

    Runs here or in a Ray worker; the worker imports the toolkit as this process does.
    """
    import torch as _torch

    if str(_ROOT) not in sys.path:
        sys.path.insert(0, str(_ROOT))
    from audit.models import build_model as _build
    from unlearning import TrainConfig as _Config, fit as _fit

    _torch.set_num_threads(1)
    idx = _torch.as_tensor(ids, dtype=_torch.long)
    model = _build("smallcnn", x.shape[1], int(y.max()) + 1, mean, std, seed=seed)
    _fit(model, x[idx], y[idx], _Config(epochs=epochs, seed=seed))
    return model.state_dict()


class _ReferenceTrainer:
    """``train_reference(ids, seed) -> nn.Module`` for :func:`attacks.train_reference_models` (picklable)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, epochs: int, mean: list[float], std: list[float]):
        self.x, self.y, self.epochs, self.mean, self.std = x, y, epochs, mean, std

    def __call__(self, ids, seed: int) -> torch.nn.Module:
        model = build_model("smallcnn", self.x.shape[1], int(self.y.max()) + 1, self.mean, self.std)
        model.load_state_dict(train_reference_state(self.x, self.y, ids, seed, self.epochs, self.mean, self.std))
        return model


def _ray_rounds(run, reference: list[str]) -> dict:
    """Two rounds of ``run() -> state digests``: the first starts the worker processes, the second finds them
    running. The weights must match the sequential models'."""
    rounds, same = [], True
    for _ in range(2):
        start = time.perf_counter()
        digests = run()
        rounds.append(time.perf_counter() - start)
        same = same and digests == reference
    return {"tasks_s": rounds[0], "warm_tasks_s": rounds[1], "identical_weights": same}


def measure_references(num_models: int, epochs: int, seed: int, use_ray: bool) -> dict:
    """Reference models one after another here, then as Ray tasks: a bare ``@ray.remote`` function
    returning state_dicts, and the audit's own ``RayExecutor`` (``--executor ray``)."""
    data = load_dataset("digits")
    x, y = torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])  # the audit's pool
    mean, std = data.channel_stats()
    fraction = len(data.y_train) / len(y)
    mask = reference_inclusion(len(y), num_models, seed, fraction)
    tasks = [(mask[m].nonzero()[0], seed + m) for m in range(num_models)]
    out: dict = {"models": num_models, "epochs": epochs, "pool": len(y), "train_ids_per_model": int(mask[0].sum())}
    def sequential() -> tuple[list[str], float]:
        start = time.perf_counter()
        digests = [state_digest(train_reference_state(x, y, ids, s, epochs, mean, std)) for ids, s in tasks]
        return digests, time.perf_counter() - start

    seq, out["sequential_s"] = sequential()
    if not use_ray:
        out["ray"] = out["audit_executor"] = {"skipped": "--no-ray was given"}
        return out
    try:
        import ray
    except ImportError as exc:
        out["ray"] = out["audit_executor"] = {"skipped": f"Ray is not importable here ({exc}); install the extra "
                                                     "amnesia-audit[ray] (pip install 'ray>=2.9')"}
        return out
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=128 * 1024**2)
    init_s = time.perf_counter() - start
    try:
        remote = ray.remote(num_cpus=1)(train_reference_state)

        def direct() -> list[str]:
            xr, yr = ray.put(x), ray.put(y)
            return [state_digest(sd) for sd in ray.get([remote.remote(xr, yr, ids, s, epochs, mean, std)
                                                         for ids, s in tasks])]

        out["ray"] = {"version": ray.__version__, "workers": int(ray.cluster_resources().get("CPU", 0)),
                      "init_s": init_s, **_ray_rounds(direct, seq)}
    finally:
        ray.shutdown()

    try:  # the audit's executor: the same models through attacks.train_reference_models(map_tasks=...)
        from attacks.reference import train_reference_models
        from audit.executor import RayExecutor

        executor = RayExecutor(cpus_per_model=1, show_progress=False)
        start = time.perf_counter()
        executor.start()
        init_s = time.perf_counter() - start
        trainer = _ReferenceTrainer(x, y, epochs, mean, std)

        def audit_path() -> list[str]:
            refs = train_reference_models(trainer, len(y), num_models=num_models, seed=seed, fraction=fraction,
                                          map_tasks=lambda fn, ts: executor.map(fn, ts, "reference models"))
            return [state_digest(m.state_dict()) for m in refs.models]

        try:
            out["audit_executor"] = {"init_s": init_s, **_ray_rounds(audit_path, seq)}
        finally:
            executor.close()
    except Exception as exc:  # noqa: BLE001 - an older checkout without the executor, or a Ray failure
        out["audit_executor"] = {"skipped": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    # The other jobs' load drifts: time the sequential run again after Ray's and compare with the mean.
    _, out["sequential_after_s"] = sequential()
    base = (out["sequential_s"] + out["sequential_after_s"]) / 2
    for r in (out["ray"], out["audit_executor"]):
        if "skipped" not in r:
            r.update(speedup_tasks=base / r["tasks_s"], speedup_warm=base / r["warm_tasks_s"],
                     speedup_with_init=base / (r["init_s"] + r["tasks_s"]))
    return out


def project_audit(per_model_cpu_s: float, gpu_epoch_s: float) -> list[dict]:
    """Wall time of a 64-reference audit with ideal scaling (each model alone on its worker)."""
    rows = []
    for n in GPU_COUNTS:
        waves = math.ceil(AUDIT_REFERENCE_MODELS / n)
        rows.append({"workers": n, "waves": waves, "cpu_cores_s": waves * per_model_cpu_s,
                     "gpus_s": waves * EPOCHS * gpu_epoch_s,
                     "gpus_s_range": [waves * EPOCHS * g for g in GPU_EPOCH_RANGE]})
    return rows


# ---------------------------------------------------------------------------- tables

def _mb(b: float) -> str:
    return f"{b / 1e6:,.2f} MB"


def _gb(b: float) -> str:
    return f"{b / 1e9:,.1f} GB"


def _s(s: float) -> str:
    if s >= 3600:
        return f"{s:,.0f} s ({s / 3600:.1f} h)"
    if s >= 120:
        return f"{s:,.0f} s ({s / 60:.1f} min)"
    return f"{s:.3g} s"


def _spread(xs: list[float]) -> str:
    return f"{_med(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def render(p: dict) -> str:
    s = p["settings"]
    lines = [
        f"Settings: {s['timed_steps']} timed steps after {s['warmup']} warm-up (batch-{s['repair_batch']} repair steps: "
        f"{s['repair_steps']}), torch threads 1, seed {s['seed']}; load average at start/end "
        f"{s['load_start']:.1f}/{s['load_end']:.1f} on {s['cpus']} CPUs (other jobs share them: times are noisy, "
        "so each is a median with its range). MB = 10^6 bytes, GB = 10^9 bytes.", "",
        "## ResNet-18 at CIFAR shape (measured)", "",
        "Generated data (uniform images 3x32x32, random labels); `build_model(\"resnet18\", 3, C, ...)` "
        "(torchvision's ResNet-18 with its ImageNet stem, as in the paper) trained by `unlearning.fit`, Adam lr 1e-3. "
        "A recorded step adds the `UpdateRecorder`'s delta and its step file; read+verify+subtract is "
        "`UpdateLog.read_step` (read, SHA-256 check, parse) plus adding the step to the float64 sum, per step; "
        "cold asks the kernel to drop each file from the page cache first (the VM's host may still cache it).", "",
        "| classes | parameters | train step, batch 64 (s) | recorded step fp32 (s) | recorded step fp16 (s) | "
        "update fp32 | update fp16 | read+verify+subtract fp32 (s) | same, fp16 (s) | same, fp32 cold (s) | "
        "`amnesiac_unlearn` of 1 step, fp32 (s) | repair step, batch 8 (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p["resnet18"]:
        f32, f16 = r["float32"], r["float16"]
        lines.append(f"| {r['num_classes']} | {r['parameters']:,} | {_spread(r['train_step_s'])} | "
                     f"{_spread(f32['recorded_step_s'])} | {_spread(f16['recorded_step_s'])} | "
                     f"{_mb(f32['update_bytes'])} | {_mb(f16['update_bytes'])} | {_spread(f32['read_verify_subtract_s'])} | "
                     f"{_spread(f16['read_verify_subtract_s'])} | {_spread(f32['read_verify_subtract_cold_s'])} | "
                     f"{f32['amnesiac_one_step_s']:.3f} | {_spread(r['repair_step_s'])} |")
    lines.append("")
    for r in p["resnet18"]:
        for dt in ("float32", "float16"):
            f = r[dt]
            pred = f["amnesiac_one_step_s"] + (f["log_entries"] - 1) * _med(f["read_verify_subtract_s"])
            lines.append(f"- {r['num_classes']} classes, {dt}: `amnesiac_unlearn` removing all {f['log_entries']} "
                         f"recorded steps took {f['amnesiac_all_steps_s']:.2f} s (the linear model used below predicts "
                         f"{pred:.2f} s); the weights came back to those before the recorded steps within "
                         f"{f['max_weight_error_after_removing_all']:.1e}.")
    a = p["anchor"]
    lines += [
        "", "## Update log size against the paper's anchor", "",
        f"Graves et al. (2021): about 42 GB for 950 stored ResNet-18 batches, {_mb(a['paper_bytes_per_batch'])} per "
        f"batch. Measured here (10 classes): {_mb(a['measured_float32'])} per float32 update "
        f"({a['raw_values']:,} stored values x 4 bytes = {_mb(4 * a['raw_values'])}, plus the file's header and the "
        f"batch's ids), {a['measured_float32'] / a['paper_bytes_per_batch']:.3f}x the paper's per-batch figure; 950 "
        f"such updates = {_gb(950 * a['measured_float32'])} (float16: {_gb(950 * a['measured_float16'])}). The "
        "paper's notebooks store weights and biases only; the recorder also stores BatchNorm buffer deltas "
        f"({a['buffer_values']:,} values).",
    ]
    e, j = p["cifar10"], p["journal"]
    lines += [
        "", f"## Amnesiac removal vs retraining: CIFAR-10, {EPOCHS} epochs at batch {BATCH} (computed)", "",
        f"Computed from the measured 10-class figures above, not measured at this size: {CIFAR_TRAIN:,} images, "
        f"{steps_per_epoch(CIFAR_TRAIN, BATCH)} steps per epoch, {e['total_steps']:,} steps; a batch is recorded when "
        "it holds any recordable id, and removed when it holds any id to forget (exact expectation for random "
        "batches; 1-(1-p)^64 shown for comparison). Retrain = steps on the retained data x the measured step time "
        f"({e['train_step_s']:.3f} s).", "",
        "| ids recordable | batches recorded (expected) | fraction of batches | 1-(1-p)^64 | log fp32 | log fp16 | "
        "recording's extra training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in e["logs"]:
        lines.append(f"| {g['recordable_fraction']:.0%} | {g['recorded_batches']:,.0f} of {e['total_steps']:,} | "
                     f"{g['recorded_fraction']:.1%} | {g['approx_fraction']:.1%} | {_gb(g['log_bytes_float32'])} | "
                     f"{_gb(g['log_bytes_float16'])} | {_s(g['recording_overhead_s'])} |")
    lines += [
        "", "Removal = `amnesiac_unlearn` of one step (measured) + each further removed batch at the measured "
        "read+verify+subtract time (page cache warm) + the journal's cost per entry, measured with a tiny model: "
        f"`amnesiac_unlearn` of one sample from a log of {j['entries']:,} entries took {j['one_sample_removal_s']:.2f} s, "
        f"{1e6 * j['one_sample_removal_s'] / j['entries']:.0f} us per entry. "
        "Repair = the default one epoch at batch 8 on the retained data at the measured batch-8 step time. The last "
        f"column assumes training at {p['assumptions']['gpu_epoch_s']:g} s per epoch on a GPU (an assumption) while "
        "removal stays as measured here: reading and hashing the log does not get faster with a GPU.", "",
        "| ids recordable | forget request | batches removed | removal fp32 | removal fp16 | retrain | "
        "retrain / removal (fp32) | retrain / removal (fp16) | + repair | retrain / (removal + repair) | "
        "retrain / removal, GPU training (assumed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in e["rows"]:
        lines.append(f"| {r['recordable_fraction']:.0%} | {r['request']} | {r['removed_batches']:,.0f} "
                     f"({r['removed_fraction']:.1%}) | {_s(r['removal_s_float32'])} | {_s(r['removal_s_float16'])} | "
                     f"{_s(r['retrain_s'])} | {r['ratio_float32']:,.1f}x | {r['ratio_float16']:,.1f}x | "
                     f"{_s(r['repair_s'])} | {r['ratio_with_repair']:,.2f}x | {r['ratio_gpu_assumed']:,.2f}x |")
    ref = p["reference_models"]
    lines += [
        "", "## Reference models: sequential against Ray (measured)", "",
        f"{ref['models']} smallcnn reference models on the digits pool ({ref['pool']} images, "
        f"{ref['train_ids_per_model']} per model, `reference_inclusion` as the audit draws them), {ref['epochs']} epochs "
        "each (Adam, batch 64), one torch thread per model, in one run. Two workers can run at most twice as fast "
        "as one process, and only on two idle cores: the load average above says how many other jobs shared them.", "",
        "| run | wall time (s) | sequential (mean of before and after) / this |", "|---|---|---|",
        f"| sequential, this process{', before the Ray runs' if 'sequential_after_s' in ref else ''} | "
        f"{ref['sequential_s']:.2f} | |",
    ]
    for key, label in (("ray", "Ray, 2 workers, a bare `@ray.remote` task"),
                       ("audit_executor", "Ray, 2 workers, the audit's `RayExecutor` (`--executor ray`)")):
        r = ref[key]
        if "skipped" in r:
            lines.append(f"| {label} | skipped: {r['skipped']} | |")
            continue
        lines += [f"| {label}: first round, from submitting to the last result (worker processes start) | "
                  f"{r['tasks_s']:.2f} | {r['speedup_tasks']:.2f} |",
                  f"| {label}: the same {ref['models']} again on the running workers | "
                  f"{r['warm_tasks_s']:.2f} | {r['speedup_warm']:.2f} |"]
    if "sequential_after_s" in ref:
        lines.append(f"| sequential, this process, after the Ray runs | {ref['sequential_after_s']:.2f} | |")
    lines.append("")
    for key, name in (("ray", "bare Ray tasks"), ("audit_executor", "the audit's executor")):
        r = ref[key]
        if "skipped" not in r:
            lines.append(f"- {name}: starting Ray took {r['init_s']:.1f} s (not in the rows above); every model has "
                         f"the sequential one's weights (state digests equal): {'yes' if r['identical_weights'] else 'NO'}.")
    pr, fl = p["projection"], p["flops_per_image"]
    lo, hi = GPU_EPOCH_RANGE
    lines += [
        "", f"## A {AUDIT_REFERENCE_MODELS}-reference audit of a CIFAR-10 ResNet-18 (projected)", "",
        f"Each reference model: {EPOCHS} epochs of CIFAR-10 at batch {BATCH} ({e['total_steps']:,} steps). CPU column: "
        f"computed from the measured step time, {_s(pr['per_model_cpu_s'])} per model on one core. GPU column: "
        f"**assumed** {p['assumptions']['gpu_epoch_s']:g} s per epoch (range {lo:g}-{hi:g} s; "
        f"{p['assumptions']['gpu_epoch_source']}), i.e. {EPOCHS * p['assumptions']['gpu_epoch_s']:g} s per model, "
        f"{pr['implied_gpu_speedup']:.0f}x the measured CPU core. That small factor says the assumption fits this "
        "model loosely: GPU timings are quoted for the CIFAR variant of ResNet-18 (3x3 stride-1 stem, no max-pool), "
        f"{fl['cifar_stem_resnet18'] / 1e9:.2f} GFLOPs per image forward, while the toolkit's resnet18 keeps "
        f"torchvision's ImageNet stem, {fl['toolkit_resnet18'] / 1e9:.3f} GFLOPs per image "
        f"({fl['cifar_stem_resnet18'] / fl['toolkit_resnet18']:.0f}x less; both counted by torch's FlopCounterMode), "
        "so the GPU column is more likely an upper bound than a lower one. Ideal scaling: models in waves of N, no scheduling, "
        "data-shipping or straggler time (the measured 2-worker Ray run above shows what a small cluster loses); "
        "scoring the models (one forward pass each over the pool) is not counted.", "",
        "| N workers | waves | N CPU cores (computed) | N GPUs (assumed epoch time) |", "|---|---|---|---|",
    ]
    for r in pr["rows"]:
        a_, b_ = r["gpus_s_range"]
        lines.append(f"| {r['workers']} | {r['waves']} | {_s(r['cpu_cores_s'])} | {_s(r['gpus_s'])} "
                     f"({_s(a_)} to {_s(b_)}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--resnet-run" in argv:  # the measured CIFAR-shape run lives in its own module
        import scale_run

        return scale_run.main([a for a in argv if a != "--resnet-run"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 timed step, 2 reference epochs: a smoke run")
    ap.add_argument("--steps", type=int, default=None, help="timed ResNet steps per measurement (default 12; quick 1)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default 2; quick 1)")
    ap.add_argument("--repair-steps", type=int, default=None, help="timed batch-8 steps (default 10; quick 2)")
    ap.add_argument("--ref-models", type=int, default=8)
    ap.add_argument("--ref-epochs", type=int, default=None, help="reference-model epochs (default 20, the audit's "
                    "default recipe; quick 2)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    ap.add_argument("--gpu-epoch-seconds", type=float, default=GPU_EPOCH_SECONDS,
                    help="ASSUMED seconds per CIFAR-10 ResNet-18 epoch on one GPU (default 15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None, help="folder for the tables (default benchmarks/results)")
    ap.add_argument("--out-name", default="scale", help="file name of the tables, without suffix")
    args = ap.parse_args(argv)
    steps = args.steps or (1 if args.quick else 12)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repair_steps = args.repair_steps or (2 if args.quick else 10)
    ref_epochs = args.ref_epochs or (2 if args.quick else TrainConfig().epochs)
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]

    resnets = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        for c in (10, 100):
            print(f"ResNet-18, {c} classes ...", flush=True)
            resnets.append(measure_resnet(c, warmup, steps, repair_steps, args.seed, Path(tmp)))
        print("update-log journal ...", flush=True)
        journal = measure_journal(1 if args.quick else EPOCHS, Path(tmp))
    print("reference models ...", flush=True)
    refs = measure_references(args.ref_models, ref_epochs, args.seed, not args.no_ray)
    if "skipped" in refs["ray"]:
        print(f"Ray row skipped: {refs['ray']['skipped']}", flush=True)

    r10 = resnets[0]
    cifar = extrapolate(r10, journal, args.gpu_epoch_seconds)
    per_model_cpu = cifar["total_steps"] * cifar["train_step_s"]
    cpu_epoch = steps_per_epoch(CIFAR_TRAIN, BATCH) * cifar["train_step_s"]
    payload = {
        "settings": {"timed_steps": steps, "warmup": warmup, "repair_steps": repair_steps,
                     "repair_batch": r10["repair_batch_size"], "seed": args.seed, "quick": args.quick,
                     "cpus": os.cpu_count(), "load_start": load_start, "load_end": os.getloadavg()[0]},
        "resnet18": resnets,
        "anchor": {"paper_bytes": PAPER_LOG_BYTES, "paper_batches": PAPER_LOG_BATCHES,
                   "paper_bytes_per_batch": PAPER_LOG_BYTES / PAPER_LOG_BATCHES,
                   "measured_float32": r10["float32"]["update_bytes"], "measured_float16": r10["float16"]["update_bytes"],
                   "raw_values": r10["parameters"] + r10["float_buffer_values"],
                   "buffer_values": r10["float_buffer_values"]},
        "flops_per_image": forward_flops(10),
        "journal": journal,
        "cifar10": cifar,
        "reference_models": refs,
        "assumptions": {"gpu_epoch_s": args.gpu_epoch_seconds, "gpu_epoch_range_s": list(GPU_EPOCH_RANGE),
                        "gpu_epoch_source": "an assumption, not measured: Myrtle.ai, \"How to Train Your ResNet\" "
                                            "(2018), single-V100 DAWNBench baseline of 341 s for a ResNet-18-class "
                                            "CIFAR-10 run of a few tens of epochs"},
        "projection": {"per_model_cpu_s": per_model_cpu, "cpu_epoch_s": cpu_epoch,
                       "implied_gpu_speedup": cpu_epoch / args.gpu_epoch_seconds,
                       "rows": project_audit(per_model_cpu, args.gpu_epoch_seconds)},
    }
    markdown = render(payload)
    print(markdown)
    if args.out_dir:
        _common.RESULTS = Path(args.out_dir)
    md_path, json_path = _common.write_tables(args.out_name, markdown, payload)
    print(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
