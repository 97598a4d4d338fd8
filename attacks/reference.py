"""Reference ("shadow") models on random subsets of the auditor's data, cached on disk.

LiRA and RMIA compare the target model with models trained the same way on data that
does or does not contain each example. The auditor supplies the recipe as a callable
``train_reference(ids, seed) -> nn.Module`` (ids index the auditor's training data), so
the reference models match the target's architecture and training exactly.

Training them is the expensive part of an audit, so each model's weights are cached as
a safetensors file keyed by a hash of the caller's ``cache_key`` (architecture, recipe,
data digest), the exact ids and the seed. Loading never unpickles anything: the weights
go into a fresh module from ``model_factory()``.

A cache is a folder anyone with write access can change, and a poisoned entry (weights of
zeros, say) would make every membership attack look like chance. So each entry carries
the SHA-256 of its own tensors (:func:`state_digest`, in the safetensors metadata), and
before use an entry must match it, hold only finite weights and pass the caller's
``check(model, ids)`` (the audit checks accuracy on the model's own training half). A bad
entry is retrained and overwritten with a warning that names its file. The digests of
the models an audit used are in :meth:`ReferenceModels.to_dict`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from attacks.signals import model_logits

TrainReference = Callable[[np.ndarray, int], nn.Module]
MapTasks = Callable[[Callable, list], list]
ModelFactory = Callable[[], nn.Module]
#: ``check(model, ids) -> None`` when a cached reference model looks right, else the reason
#: it does not (e.g. its accuracy on ``ids``, its own training data, is far below the target's).
ReferenceCheck = Callable[[nn.Module, np.ndarray], "str | None"]

# 2: every entry stores the SHA-256 of its tensors. Entries of format 1 are not read.
CACHE_FORMAT = 2
STATE_DIGEST_FORMAT = "amnesia-audit/state-digest/1"


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict: each entry's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(STATE_DIGEST_FORMAT.encode() + b"\n")
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name} {str(t.dtype).removeprefix('torch.')} {list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_digest(model: nn.Module) -> str:
    """:func:`state_digest` of a model's ``state_dict()``."""
    return state_digest(model.state_dict())


#: Training ids a cached model is checked on, at most (a fresh random sample of them).
CHECK_EXAMPLES = 512


def accuracy_check(x: torch.Tensor, y: torch.Tensor, min_accuracy: float) -> ReferenceCheck:
    """A ``check`` for :func:`load_or_train`: a cached model must reach ``min_accuracy`` on its own training ids.

    ``x``, ``y``: the data ``train_reference`` indexes (N, C, H, W) and (N,). A model
    trained on ``ids`` with the target's recipe fits them about as well as the target fits
    its own training data, so ``min_accuracy`` is that accuracy less a margin (the audit
    uses 0.25); zeroed or random weights score near chance and fail. At most
    :data:`CHECK_EXAMPLES` of the ids are checked, drawn afresh each time.
    """

    def check(model: nn.Module, ids: np.ndarray) -> str | None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > CHECK_EXAMPLES:
            # A sample drawn afresh each time (not from the audit's seed): zeroed or random weights score near
            # chance on any sample, and checking 60,000 ids per cached model cost more than a request's audit.
            ids = np.random.default_rng().choice(ids, CHECK_EXAMPLES, replace=False)
        idx = torch.as_tensor(ids)
        with torch.no_grad():
            acc = float((model_logits(model, x[idx]).argmax(1) == y[idx]).double().mean()) if len(idx) else 1.0
        if acc >= min_accuracy:
            return None
        return f"its accuracy on its own training data is {acc:.1%}, below the {min_accuracy:.1%} expected"

    return check


def _non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The first floating-point entry holding NaN or infinity, if any."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def default_cache_dir() -> Path:
    """``$AMNESIA_AUDIT_CACHE`` or ``$XDG_CACHE_HOME/amnesia-audit/reference-models``."""
    if os.environ.get("AMNESIA_AUDIT_CACHE"):
        return Path(os.environ["AMNESIA_AUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "amnesia-audit" / "reference-models"


class ReferenceCache:
    """Weights of trained reference models on disk, one safetensors file per model."""

    def __init__(self, directory: str | os.PathLike, model_factory: ModelFactory, cache_key: str):
        if model_factory is None:
            raise ValueError("model_factory is required to load cached reference models; pass a () -> nn.Module")
        if not cache_key:
            raise ValueError(
                "cache_key is required when caching reference models; pass a string naming the "
                "architecture, training recipe and data digest"
            )
        self.directory = Path(directory)
        self.model_factory = model_factory
        self.cache_key = cache_key

    def path(self, ids: np.ndarray, seed: int) -> Path:
        h = hashlib.sha256()
        h.update(json.dumps({"format": CACHE_FORMAT, "key": self.cache_key, "seed": int(seed)}).encode())
        h.update(np.sort(np.asarray(ids, dtype=np.int64)).tobytes())
        return self.directory / f"{h.hexdigest()}.safetensors"

    def load(self, ids: np.ndarray, seed: int) -> nn.Module | None:
        """The cached model, or None when there is none or it is unusable (see :meth:`load_checked`)."""
        return self.load_checked(ids, seed)[0]

    def load_checked(self, ids: np.ndarray, seed: int) -> tuple[nn.Module | None, str | None]:
        """(model, None) for a usable entry; (None, None) when there is none; (None, why) when it is bad.

        Usable: it reads as safetensors, its tensors hash to the digest stored with them,
        every weight is finite and it fits ``model_factory()``.
        """
        p = self.path(ids, seed)
        if not p.is_file():
            return None, None
        try:
            with safe_open(str(p), framework="pt") as f:
                stored = (f.metadata() or {}).get("sha256")
            state = load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - truncated, foreign or unreadable
            return None, f"it is not a readable safetensors file ({type(exc).__name__})"
        if not stored:
            return None, "it carries no digest of its weights"
        if state_digest(state) != stored:
            return None, "its weights do not match the digest stored with them"
        bad = _non_finite(state)
        if bad is not None:
            return None, f"its weights are not finite (NaN or infinity in {bad!r})"
        try:
            model = self.model_factory()
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - a stale architecture
            return None, f"its weights do not fit the model ({type(exc).__name__})"
        return model.eval(), None

    def save(self, ids: np.ndarray, seed: int, model: nn.Module) -> str:
        """Write the entry atomically; returns the digest stored with it."""
        p = self.path(ids, seed)
        p.parent.mkdir(parents=True, exist_ok=True)
        # safetensors refuses tensors that share storage; clone each entry.
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        digest = state_digest(state)
        # Named before it exists: an interrupt (the CLI raises on SIGTERM) at any point leaves no .tmp.
        tmp = temporary_name(p)
        try:
            save_file(state, tmp, metadata={"cache_key": self.cache_key, "seed": str(int(seed)), "sha256": digest})
            os.replace(tmp, p)  # atomic: a concurrent reader sees the old file or the new one
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return digest


def temporary_name(path: Path) -> str:
    """A temporary name beside ``path``, unique to this process and call (``.<name>.<pid>.<random>.tmp``)."""
    return str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def load_or_train(
    train_reference: TrainReference,
    ids: np.ndarray,
    seed: int,
    cache: ReferenceCache | None,
    check: ReferenceCheck | None = None,
) -> tuple[nn.Module, bool]:
    """One reference model on ``ids``; returns (model in eval mode, whether the cache had it).

    A cached entry is used only when :meth:`ReferenceCache.load_checked` accepts it and
    ``check(model, ids)`` (if given) returns None; a bad entry is retrained and
    overwritten, with a :class:`UserWarning` naming its file and why. A trained model
    with non-finite weights raises ValueError (naming the cache entry, if any) rather
    than reach an attack.
    """
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if cache is not None:
        model, problem = cache.load_checked(ids, seed)
        if model is not None and check is not None:
            problem = check(model, ids)
            if problem:
                model = None
        if model is not None:
            return model, True
        if problem:
            warnings.warn(f"reference-model cache entry {cache.path(ids, seed)} is unusable: {problem}; "
                          "retraining it", stacklevel=2)
    model = train_reference(ids, int(seed))
    if not isinstance(model, nn.Module):
        raise ValueError(f"train_reference must return an nn.Module, got {type(model).__name__}")
    model.eval()
    bad = _non_finite(model.state_dict())
    if bad is not None:
        where = f" for the cache entry {cache.path(ids, seed)}" if cache is not None else ""
        raise ValueError(f"the reference model with seed {seed} trained{where} has non-finite weights "
                         f"(NaN or infinity in {bad!r}); its training diverged: lower the recipe's learning rate")
    if cache is not None:
        try:
            cache.save(ids, seed, model)
        except OSError as exc:  # read-only or full: the next run retrains it; this one has its model
            if cache.directory not in _UNWRITABLE:
                _UNWRITABLE.add(cache.directory)
                warnings.warn(f"could not keep reference models in the cache {cache.directory} "
                              f"({exc.strerror or exc}); this audit goes on, a later one trains them again",
                              stacklevel=2)
    return model, False


#: Cache folders already said to be unwritable (one warning each, not one per model).
_UNWRITABLE: set[Path] = set()


def reference_inclusion(num_examples: int, num_models: int, seed: int, fraction: float = 0.5) -> np.ndarray:
    """Which example each reference model trains on: a (num_models, num_examples) bool mask.

    Each example is put in ``fraction`` of the models (Carlini et al. 2022, sec. VI-A,
    with fraction 1/2: rank a uniform matrix per example), so every example has IN and
    OUT models and each model trains on about ``fraction`` of the data. An audit passes
    the target's training-set size over the pool size, so that reference models see as
    many examples as the target did. Where ``num_models * fraction`` is not whole an
    example goes in the floor or the ceiling with matching odds.
    """
    if not isinstance(num_models, (int, np.integer)) or num_models < 1:
        raise ValueError(f"num_reference_models must be a positive integer, got {num_models!r}")
    if num_examples < 2:
        raise ValueError(f"reference models need at least 2 examples of auditor data, got {num_examples}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the fraction of the data each reference model trains on must lie in (0, 1), got {fraction}")
    size = min(max(int(round(num_examples * fraction)), 1), num_examples - 1)
    distinct = math.comb(num_examples, size)
    if num_models > distinct:
        raise ValueError(
            f"num_reference_models={num_models} is more than the data allows: {num_examples} examples "
            f"have only {distinct} distinct subsets of {size}; ask for at most {distinct} or pass more data"
        )
    rng = np.random.default_rng(seed)
    rank = rng.random((num_models, num_examples)).argsort(axis=0).argsort(axis=0)
    whole = math.floor(num_models * fraction)
    count = whole + (rng.random(num_examples) < num_models * fraction - whole)
    mask = rank < count[None, :]
    empty = ~mask.any(axis=1) | mask.all(axis=1)
    if empty.any():
        raise ValueError(
            f"num_reference_models={num_models} is more than the data allows: with {num_examples} "
            "examples some reference model would train on no data or on all of it; "
            "ask for fewer reference models or pass more data"
        )
    return mask


#: The most parts a pool is cut into: with a small held-out split, models train on 7/8 of the pool.
MAX_PARTS = 8


def pool_parts(pool_size: int, train_size: int) -> int:
    """How many parts :func:`leave_part_out_inclusion` cuts a pool into so that each model
    trains on about as many examples as the target: ``pool / (pool - train)``, rounded, in
    [2, :data:`MAX_PARTS`] (digits: 1797 / 449 = 4, models of 1348 like the target;
    Fashion-MNIST: 70000 / 10000 = 7, models of 60000)."""
    if pool_size < 2 or not 0 < train_size < pool_size:
        raise ValueError(f"a pool of {pool_size} examples cannot hold a training set of {train_size} and more")
    return int(min(max(round(pool_size / (pool_size - train_size)), 2), MAX_PARTS))


def leave_part_out_inclusion(num_examples: int, num_models: int, seed: int, parts: int) -> np.ndarray:
    """Which example each pool model trains on, (num_models, num_examples) bool, nested in ``num_models``.

    Models come in blocks of ``parts``: block ``b`` cuts the examples into ``parts`` random
    parts of equal size (drawn from ``(seed, b)`` alone), and its model ``p`` trains on every
    part but ``p``. So within a whole block every example is left out of exactly one model,
    each model sees ``1 - 1/parts`` of the data, and asking for more models *adds* blocks
    without changing the earlier models (their ids, and so their cache entries, stay the
    same): more models narrow the evidence instead of redrawing it. A partial last block
    leaves some examples out of one model more than others, independently of any forget set.
    In the spirit of LiRA's shared shadow pool (Carlini et al. 2022, sec. VI-A), where every
    example is OUT of a known subset of the models and the pool serves any query.
    """
    if not isinstance(num_models, (int, np.integer)) or num_models < 1:
        raise ValueError(f"num_reference_models must be a positive integer, got {num_models!r}")
    if not isinstance(parts, (int, np.integer)) or not 2 <= parts <= num_examples:
        raise ValueError(f"the pool needs 2 to {num_examples} parts, got {parts!r}")
    mask = np.ones((num_models, num_examples), dtype=bool)
    for block in range(math.ceil(num_models / parts)):
        part = np.random.default_rng([int(seed), block]).permutation(num_examples) % parts
        for p in range(parts):
            m = block * parts + p
            if m < num_models:
                mask[m, part == p] = False
    return mask


@dataclass
class ReferenceModels:
    """Trained reference models and what each saw.

    ``in_mask[m, i]`` is True when model ``m`` trained on example ``i`` of the auditor's
    data; ``from_cache[m]`` says whether it was loaded rather than trained;
    ``digests[m]`` is :func:`model_digest` of model ``m`` as used (computed when not given),
    the digest its cache entry stores.
    """

    models: list[nn.Module]
    in_mask: np.ndarray
    seeds: list[int]
    from_cache: list[bool] = field(default_factory=list)
    seconds: float = 0.0
    digests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.digests:
            self.digests = [model_digest(m) for m in self.models]

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def num_examples(self) -> int:
        return int(self.in_mask.shape[1])

    def to_dict(self) -> dict:
        return {
            "num_models": self.num_models,
            "seeds": [int(s) for s in self.seeds],
            "from_cache": [bool(c) for c in self.from_cache],
            "digests": list(self.digests),
            "train_fraction_mean": float(self.in_mask.mean()),
            "seconds": float(self.seconds),
        }


def train_reference_models(
    train_reference: TrainReference,
    num_examples: int,
    *,
    num_models: int,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    model_factory: ModelFactory | None = None,
    cache_key: str | None = None,
    fraction: float = 0.5,
    check: ReferenceCheck | None = None,
    map_tasks: MapTasks | None = None,
    avoid_seeds: tuple[int, ...] = (),
    parts: int | None = None,
) -> ReferenceModels:
    """Train (or load) ``num_models`` reference models on random subsets of the data
    (:data:`attacks.registry.DEFAULT_REFERENCE_MODELS` is the audit's count).

    Each model trains on about ``fraction`` of the ``num_examples`` (1/2 by default); with
    ``parts``, on all but one part of a random cut instead (:func:`leave_part_out_inclusion`,
    the audit's pool: nested, every example left out of a known subset of the models).

    ``num_examples`` is the size of the auditor's data that ``train_reference`` indexes.
    ``cache_dir=None`` disables caching; otherwise ``model_factory`` and ``cache_key``
    are required (see :class:`ReferenceCache`). Model ``m`` uses the ``m``-th seed from
    ``seed`` up that is not in ``avoid_seeds`` (the audited model's own seed: a reference
    model trained with it is a near-copy of the target, not an independent draw).
    ``check(model, ids)``: vets each cached model before use (see :func:`load_or_train`).
    ``map_tasks(fn, tasks)``: runs ``fn(task)`` for every task and returns the results in
    order; the default runs them here, one after another; an executor may run them on a
    cluster (each task is ``(ids, seed)``, independent of the others).
    """
    if parts is not None:
        mask = leave_part_out_inclusion(num_examples, num_models, seed, parts)
    else:
        mask = reference_inclusion(num_examples, num_models, seed, fraction)
    cache = ReferenceCache(cache_dir, model_factory, cache_key) if cache_dir is not None else None  # type: ignore[arg-type]
    start = time.perf_counter()
    avoid = set(avoid_seeds)
    seeds = [s for s in range(seed, seed + num_models + len(avoid)) if s not in avoid][:num_models]
    tasks = [(np.flatnonzero(mask[m]), seeds[m]) for m in range(num_models)]
    run_one = functools.partial(train_one, train_reference, cache, check)
    results = map_tasks(run_one, tasks) if map_tasks is not None else [run_one(task) for task in tasks]
    models = [model for model, _ in results]
    hits = [hit for _, hit in results]
    return ReferenceModels(models, mask, [s for _, s in tasks], hits, time.perf_counter() - start)


def train_one(train_reference: TrainReference, cache: "ReferenceCache | None", check: "ReferenceCheck | None",
              task: tuple[np.ndarray, int]) -> tuple[nn.Module, bool]:
    """One reference model for ``task = (ids, seed)``: :func:`load_or_train`, as a picklable task."""
    ids, seed = task
    return load_or_train(train_reference, ids, seed, cache, check)


def reference_signals(
    reference: ReferenceModels, x: torch.Tensor, y: torch.Tensor, signal: Callable[[torch.Tensor, torch.Tensor], np.ndarray]
) -> np.ndarray:
    """``signal(logits, y)`` of every reference model on every example: (M, N) float64."""
    return np.stack([signal(model_logits(model, x), y) for model in reference.models])


def inclusion_for(reference: ReferenceModels, ids: np.ndarray | None, n: int) -> np.ndarray:
    """IN mask (M, n) for ``n`` scored examples given their ids in the auditor's data.

    ``ids=None`` means the scored examples are the auditor's data itself, in order. An id
    of -1 marks an example outside that data (e.g. a held-out test image): every
    reference model is OUT for it.
    """
    if ids is None:
        if n != reference.num_examples:
            raise ValueError(
                f"scoring {n} examples but the reference models were trained on subsets of "
                f"{reference.num_examples}; pass ids (their indices in the auditor's data, -1 if outside it)"
            )
        return reference.in_mask
    a = np.asarray(ids)
    if a.ndim != 1 or a.shape[0] != n or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must be {n} integer example ids (one per scored example), got shape {a.shape}")
    if a.size and (a.min() < -1 or a.max() >= reference.num_examples):
        raise ValueError(f"ids must lie in 0..{reference.num_examples - 1}, or be -1 for examples outside the data")
    mask = reference.in_mask[:, np.clip(a, 0, None)].copy()
    mask[:, a < 0] = False
    return mask
