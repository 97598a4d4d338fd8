"""Shared by the benchmark scripts: machine description and writing the result tables."""

from __future__ import annotations

import json
import os
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
