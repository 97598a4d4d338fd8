"""Time ``audit demo`` (the main job on the embedded digits) end to end, as ``make demo`` runs it.

Target (issue 5): within 2 minutes on a 2-core CPU. Runs it twice: a cold run with an
empty reference-model cache, then a warm one that reuses the cached reference models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The packages first: this folder holds scripts named like them (unlearning.py, attacks.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import write_tables  # noqa: E402

TARGET_SECONDS = 120.0


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AUDIT_NO_PROGRESS": "1", "AMNESIA_AUDIT_CACHE": str(Path(tmp) / "cache")}
        for label in ("cold cache", "warm cache"):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "audit.cli", "demo", "--out", str(Path(tmp) / "demo")],
                                  env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            print(proc.stdout, proc.stderr, sep="\n")
            rows.append({"run": label, "seconds": round(seconds, 1), "exit_code": proc.returncode,
                         "met_target": seconds <= TARGET_SECONDS and proc.returncode == 0})
    md = "| run | wall time (s) | exit code | within 2 min |\n| --- | --- | --- | --- |\n"
    md += "".join(f"| {r['run']} | {r['seconds']} | {r['exit_code']} | {'yes' if r['met_target'] else 'NO'} |\n" for r in rows)
    write_tables("demo", md, {"target_seconds": TARGET_SECONDS, "rows": rows})
    print(md)


if __name__ == "__main__":
    main()
