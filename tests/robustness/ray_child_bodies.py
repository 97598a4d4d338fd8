"""What runs in the Python API's Ray child (audit.supervise.audit_in_child) in its tests, in place of
audit.harness.audit_checked. A module of its own, without torch, so that the child starts in a second."""

from __future__ import annotations

import os
from types import SimpleNamespace

from audit.errors import InputError


def body(mode: str, results: str):
    if mode == "native-exit":  # what Ray's C++ core does to the process driving it when its raylet dies
        os.write(2, b"[2026-12-07 16:35:29,190 E 732 732] core_worker_process.cc:247: Failed to register worker\n")
        os._exit(1)
    if mode == "bad-input":
        raise InputError("--ray-address 'x' is not HOST:PORT or auto")
    if mode == "raises":
        raise RuntimeError("a bug\nover two lines")
    from reports import load_results

    print("(raylet) Task failed. There are 1 retries remaining, so the task will be retried.")  # as Ray prints it
    return SimpleNamespace(document=load_results(results), files=[results])
