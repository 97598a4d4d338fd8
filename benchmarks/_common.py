"""Shared by the benchmark scripts: machine description and writing the result tables."""

from __future__ import annotations

import json
import math
import os
import statistics
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def write_tables(name: str, markdown: str, payload: dict) -> tuple[Path, Path]:
    """Write results/<name>.md and results/<name>.json with the command line and the machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine()}
    header = (f"Command: `{meta['command']}`  \nMachine: {meta['machine']['cpu']} ({meta['machine']['cpus']} CPUs), "
              f"{meta['machine']['platform']}, Python {meta['machine']['python']}, torch {meta['machine']['torch']}\n\n")
    md_path, json_path = RESULTS / f"{name}.md", RESULTS / f"{name}.json"
    md_path.write_text(header + markdown)
    json_path.write_text(json.dumps({**meta, **payload}, indent=1))
    return md_path, json_path


#: Two-sided 95% Student t quantiles by degrees of freedom (1.96 beyond the table).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(xs: list[float]) -> str:
    """Fractions as "mean ± 95% t-interval" in %, NaN and None left out; "-" for none."""
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return "-"
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f"{100 * m:.1f}"
    half = T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{100 * m:.1f} ± {100 * half:.1f}"


def rate_ci(k: int, n: int, counts: bool = False) -> str:
    """A rate k/n with its exact (Clopper-Pearson) 95% interval in %, "-" for none; with the counts if asked."""
    if n == 0:
        return "-"
    import numpy as np

    from attacks.metrics import clopper_pearson

    lo, hi = clopper_pearson(np.array([k]), n)
    return f"{f'{k}/{n} = ' if counts else ''}{k / n:.0%} [{lo[0]:.0%}, {hi[0]:.0%}]"
