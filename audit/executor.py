"""Where the audit's training runs: here, one model after another (``local``), or as Ray
tasks on a cluster (``ray``): ``--executor local|ray``, ``--ray-address``,
``--cpus-per-model``, ``--gpus-per-model`` (docs/scaling.md).

Reference models and retrained models are independent training runs: each is one task
``fn(task)``. Under Ray every task is retried on failure (Ray's task retries, exceptions
included); after its retries the step fails (exit 3) with the task's error recorded,
never a silent pass. The same seeds give the same models under both executors and on any
machine: every task, local or on Ray, runs on :func:`task_threads` torch threads (float
sums are split by the thread count, so the count changes the last bits of every step and
then the trained weights), and draws every random choice from its seed.

Fault injection, for testing a pipeline (documented with ``AUDIT_FAULT``):
``AUDIT_FAULT=task`` makes every training task fail; ``AUDIT_FAULT=task-once`` makes each
task fail on its first attempt only (a marker file per task under ``AUDIT_FAULT_DIR``);
``AUDIT_FAULT=ray-exit`` ends the process right after Ray started, with status 1 and no
clean-up, as Ray's native core does when its raylet dies (see :mod:`audit.supervise`);
``AUDIT_FAULT=worker-exit-once`` ends the worker process of each task on its first attempt
(a worker that dies, which Ray retries and reports in ``(raylet)`` lines).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

from audit.errors import InputError, StepError, unknown_choice
from audit.progress import progress_bar

EXECUTORS = ("local", "ray")
#: Ray is an optional extra of the package; the one line when it is asked for and missing.
RAY_MISSING = ("--executor ray needs Ray, which is not installed: install the extra amnesia-audit[ray] "
               "(pip install 'ray>=2.9') or run without --executor ray")
DEFAULT_RETRIES = 2


def task_threads(cpus_per_model: float) -> int:
    """Torch threads of every model the audit trains, under either executor: ``--cpus-per-model``
    rounded down, at least 1. Never the machine's core count, on which the figures would depend."""
    return max(1, int(cpus_per_model))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body on ``threads`` torch threads; the caller's count comes back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fault(task: Any, in_worker: bool = False) -> None:
    mode = os.environ.get("AUDIT_FAULT")
    if mode == "task":
        raise RuntimeError("training task failed (injected by AUDIT_FAULT=task)")
    if mode == "task-once" or (mode == "worker-exit-once" and in_worker):
        folder = Path(os.environ.get("AUDIT_FAULT_DIR") or ".")
        key = hashlib.sha256(repr(task).encode()).hexdigest()[:16]
        marker = folder / f".fault-{key}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("failed once\n")
            if mode == "worker-exit-once":
                os._exit(1)
            raise RuntimeError("training task failed on its first attempt (injected by AUDIT_FAULT=task-once)")


def _run_task(fn: Callable, threads: int, gpus: float, task: Any) -> Any:
    """One task in a worker: a fixed thread count (results do not depend on the machine's cores);
    with a GPU assigned, the toolkit's training loop runs on it (``AUDIT_TRAIN_DEVICE``)."""
    import torch

    torch.set_num_threads(max(1, threads))  # a worker runs one task at a time: nothing to restore
    if gpus and torch.cuda.is_available():
        os.environ["AUDIT_TRAIN_DEVICE"] = "cuda"
    _fault(task, in_worker=True)
    return fn(task)


# The task function of a local worker pool: set before the workers fork, so that nothing
# about it needs pickling (results come back pickled, from our own child processes).
_FORKED_FN: Callable | None = None


class _WorkerStopped(BaseException):
    """SIGTERM in a forked worker while it runs a task: unwinds the task (its ``finally`` blocks
    remove what it was writing, such as a cache entry's temporary file), then the worker exits."""


_IN_TASK = False


def _worker_stop(signum: int, frame: Any) -> None:
    if _IN_TASK:
        raise _WorkerStopped()
    os._exit(128 + signum)  # idle: nothing to clean up, and no traceback from the pool's loop


def _worker_init() -> None:
    """A forked worker leaves interrupts to the process that forked it: it ignores SIGINT (a Ctrl-C
    reaches the whole process group, and the parent stops the pool) and ends quietly on SIGTERM
    (how the pool stops it), unwinding the task it runs so that nothing half-written stays behind,
    instead of running the CLI's handlers it inherited; and it dies with its parent (Linux), so
    that a killed audit leaves no worker training on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _forked_task(task: Any) -> Any:
    global _IN_TASK
    assert _FORKED_FN is not None
    _IN_TASK = True
    try:
        return _FORKED_FN(task)
    except _WorkerStopped:
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_TASK = False


def local_workers(threads: int) -> int:
    """How many models train at once on this machine: its cores over each model's threads (one worker per
    core; a model of more threads trains alone, see :class:`LocalExecutor`)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


@contextlib.contextmanager
def _keep_signal_handlers():
    """Put back this process's SIGINT and SIGTERM handlers after ``ray.init``, which replaces
    them in the driver (a Python handler that exits with status 15, and a native one that
    dumps a stack and aborts): the CLI's handlers remove staged files and exit 130 or 143."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)


class LocalExecutor:
    """Runs the tasks on this machine, each on the threads a Ray task of the same ``cpus_per_model``
    gets: ``workers`` at a time in forked worker processes (default: one per core) when each has
    one thread, or here, in order, with one worker or more threads per model. Each task trains
    alone on its fixed thread count, so the models, and every figure, are the same whatever the
    number of workers or cores."""

    name = "local"

    def __init__(self, show_progress: bool = True, cpus_per_model: float = 1, workers: int | None = None):
        self.show_progress = show_progress
        self.threads = task_threads(cpus_per_model)
        # Forked workers on one thread each only: torch's OpenMP threads of this process do not exist in a forked
        # child, yet its OpenMP runtime thinks they do, and a child that asked for more than one waited on them for
        # ever once this process had used them (--cpus-per-model 2 on a machine of 4 cores or more). With more
        # threads per model, the models train here, one after another, on those threads.
        given = local_workers(self.threads) if workers is None else max(1, int(workers))
        self.workers = given if self.threads == 1 else 1

    def map(self, fn: Callable, tasks: list, label: str = "training") -> list:
        workers = min(self.workers, len(tasks))
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            return self._map_forked(fn, tasks, label, workers)
        out = []
        with progress_bar(label, len(tasks), self.show_progress, each=True) as advance, torch_threads(self.threads):
            for task in tasks:
                _fault(task)
                out.append(fn(task))
                advance(1)
        return out

    def _map_forked(self, fn: Callable, tasks: list, label: str, workers: int) -> list:
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        global _FORKED_FN
        _FORKED_FN = functools.partial(_run_task, fn, self.threads, 0)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
        try:
            # Submitting forks every worker now, before the progress bar starts a thread of its own.
            futures = [pool.submit(_forked_task, task) for task in tasks]
            with progress_bar(label, len(tasks), self.show_progress, each=True) as advance:
                out = []
                for future in futures:
                    out.append(future.result())
                    advance(1)
            return out
        except BrokenProcessPool:
            raise StepError(f"{label}: a training worker process died (killed, or out of memory); rerun, or "
                            "train fewer models at once with a larger --cpus-per-model") from None
        finally:
            # On an error or an interrupt the workers still training are stopped, not waited for.
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            _FORKED_FN = None

    def describe(self) -> dict:
        return {"executor": "local", "threads_per_model": self.threads, "workers": self.workers}

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs tasks on a Ray cluster: a local one started (and stopped) here, or ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_model: float = 1, gpus_per_model: float = 0,
                 retries: int = DEFAULT_RETRIES, show_progress: bool = True, code_paths: list[str] | None = None):
        self.address, self.cpus, self.gpus, self.retries = address, cpus_per_model, gpus_per_model, retries
        self.show_progress = show_progress
        self.threads = task_threads(cpus_per_model)
        self.code_paths = [str(Path(p).resolve()) for p in code_paths or []]
        self._started = False
        self._ray = None
        self.tasks_run = 0

    def start(self) -> None:
        """Join or start the cluster; InputError (exit 2) if it cannot be reached or lacks what is asked."""
        try:
            import ray
        except ImportError:
            raise InputError(RAY_MISSING) from None
        self._ray = ray
        # Workers import the toolkit (and the user's --code-path folders) like this process does.
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join([root, *self.code_paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        runtime_env = {"env_vars": {"PYTHONPATH": path, "AUDIT_FAULT": os.environ.get("AUDIT_FAULT", ""),
                                    "AUDIT_FAULT_DIR": os.environ.get("AUDIT_FAULT_DIR", "")}}
        kwargs: dict = {"runtime_env": runtime_env, "log_to_driver": False, "configure_logging": False}
        import logging

        logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices are not the audit's output
        if self.address:
            self._check_reachable()
        try:
            with _keep_signal_handlers():
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, a timeout, a bad address
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise InputError(f"cannot reach {where} ({' '.join(str(exc).split())[:160]}); start one with "
                             "`ray start --head` and pass --ray-address HOST:PORT (or auto)") from None
        self._started = True
        if os.environ.get("AUDIT_FAULT") == "ray-exit":  # Ray's native core ending the driver, as it does
            os._exit(1)
        resources = ray.cluster_resources()
        if self.gpus and resources.get("GPU", 0) < self.gpus:
            self.close()
            raise InputError(f"--gpus-per-model {self.gpus:g} asks for GPUs, but the Ray cluster has "
                             f"{resources.get('GPU', 0):g}; drop the flag or join a cluster with GPUs")
        if resources.get("CPU", 0) < self.cpus:
            self.close()
            raise InputError(f"--cpus-per-model {self.cpus:g} is more than the Ray cluster's {resources.get('CPU', 0):g} "
                             "CPUs; ask for fewer")

    def _check_reachable(self) -> None:
        """A quick TCP check of HOST:PORT (Ray itself would retry for a minute or more before giving up)."""
        import socket

        if self.address == "auto":
            if not (os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists()):
                raise InputError("--ray-address auto found no running Ray cluster on this machine; start one with "
                                 "`ray start --head` or pass --ray-address HOST:PORT")
            return
        address = self.address.removeprefix("ray://")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--ray-address {self.address!r} is not HOST:PORT or auto")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                pass
        except OSError as exc:
            raise InputError(f"cannot reach the Ray cluster at {self.address} ({exc.strerror or exc}); start it with "
                             "`ray start --head` and pass the address it prints") from None

    def map(self, fn: Callable, tasks: list, label: str = "training") -> list:
        ray = self._ray
        if ray is None:
            self.start()
            ray = self._ray
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries,
                            retry_exceptions=True)(_run_task)
        shared = ray.put(fn)  # the training recipe and the data travel once, not once per task
        refs = [remote.remote(shared, self.threads, self.gpus, task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        with progress_bar(f"{label} on Ray", len(tasks), self.show_progress, each=True) as advance:
            while pending:
                done, pending = _interruptible(ray.wait, pending, num_returns=1)
                for ref in done:
                    try:
                        results[index[ref]] = _interruptible(ray.get, ref)
                    except Exception as exc:  # noqa: BLE001 - the task failed after its retries
                        cause = getattr(exc, "cause", None) or exc
                        raise StepError(f"a Ray training task failed after {self.retries} retries: "
                                        f"{type(cause).__name__}: {' '.join(str(cause).split())[:200]}") from None
                    advance(1)
        self.tasks_run += len(tasks)
        return results

    def describe(self) -> dict:
        return {"executor": "ray", "address": self.address or "local (started by the command)",
                "cpus_per_model": self.cpus, "threads_per_model": self.threads, "gpus_per_model": self.gpus,
                "retries": self.retries, "tasks": self.tasks_run}

    def close(self) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
            self._started = False


def _interruptible(call: Callable, *args: Any, **kwargs: Any) -> Any:
    """``call`` from Ray's native core: a signal handler that raises (SIGTERM, SIGINT: the CLI's
    :class:`audit.errors.Interrupted`) while the call waits comes out as a SystemError ("returned a
    result with an exception set") caused by it; the interrupt itself is raised again, so that it
    is exit 143 or 130 and not a failed step."""
    try:
        return call(*args, **kwargs)
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, BaseException) and not isinstance(cause, Exception):
            raise cause from None
        raise


def make_executor(name: str, address: str | None, cpus_per_model: float, gpus_per_model: float,
                  show_progress: bool, code_paths: list[str] | None = None):
    """The executor ``--executor`` names, checked (InputError for bad values)."""
    if name not in EXECUTORS:
        raise unknown_choice("--executor", name, EXECUTORS, "local")
    if not (cpus_per_model > 0) or gpus_per_model < 0:
        raise InputError("--cpus-per-model must be above 0 and --gpus-per-model 0 or more")
    if name == "local":
        if address:
            raise InputError("--ray-address needs --executor ray")
        if gpus_per_model:
            import torch

            if not torch.cuda.is_available():
                raise InputError(f"--gpus-per-model {gpus_per_model:g} asks for a GPU, but this machine has none "
                                 "torch can use; drop the flag")
        return LocalExecutor(show_progress, cpus_per_model)
    return RayExecutor(address, cpus_per_model, gpus_per_model, show_progress=show_progress, code_paths=code_paths)
