"""The reference pool's logits on every pool example, cached beside the pool's models (and
the audited original's, which every request of the same model reads: :func:`model_logits_cached`).

A request's audit reads every reference model's output on its forget set and held-out
examples. Computing them costs one forward pass of every model over the whole pool
(Fashion-MNIST: 16 models x 70,000 images, minutes on two cores), more than the request's
own test; so they are computed once per pool and kept in the cache as a safetensors file
named by the pool's cache key and the digests of its models.

A cache is a folder anyone with write access can change. Each file carries the SHA-256 of
its tensor, and before use a random sample of its rows (drawn afresh each time, not
from the audit's seed) is recomputed from the models themselves and must agree: edited
logits would have to be edited nowhere a fresh draw looks. A file that fails is recomputed
and rewritten, with a warning that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from attacks import model_logits
from attacks.reference import ReferenceModels, temporary_name

#: Rows of a cached file recomputed per model before it is trusted.
SPOT_CHECK_ROWS = 256
FORMAT = "amnesia-audit/pool-logits/1"


def _path(cache_dir: Path, cache_key: str, reference: ReferenceModels | Models, n: int) -> Path:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "key": cache_key, "models": list(reference.digests),
                                   "examples": int(n)}).encode())
    return cache_dir / "pool-logits" / f"{h.hexdigest()}.safetensors"


def logits_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _compute(reference: ReferenceModels | Models, x: torch.Tensor) -> torch.Tensor:
    # The models compute in float32: keeping that is exact, and half the bytes of float64.
    return torch.stack([model_logits(m, x) for m in reference.models]).to(torch.float32)


def _load(path: Path, reference: ReferenceModels | Models, x: torch.Tensor) -> tuple[torch.Tensor | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get("sha256")
        logits = load_file(str(path))["logits"]
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or unreadable
        return None, f"it is not a readable safetensors file ({type(exc).__name__})"
    if logits.dtype != torch.float32 or logits.ndim != 3 or tuple(logits.shape[:2]) != (reference.num_models, len(x)):
        return None, "its shape does not fit the pool"
    if not stored or logits_digest(logits) != stored:
        return None, "its logits do not match the digest stored with them"
    if not bool(torch.isfinite(logits).all()):
        return None, "it holds non-finite logits"
    rows = torch.as_tensor(sorted(secrets.SystemRandom().sample(range(len(x)), min(SPOT_CHECK_ROWS, len(x)))))
    for m, model in enumerate(reference.models):
        fresh = model_logits(model, x[rows]).to(torch.float32)
        if not torch.allclose(fresh, logits[m, rows], rtol=1e-4, atol=1e-4):  # batch sizes differ: not bit-equal
            return None, f"its logits of model {m} differ from the model's own output"
    return logits, None


@dataclass(frozen=True)
class Models:
    """Models named by their state_dict digests (what :func:`pool_logits` reads of a pool)."""

    models: list
    digests: list[str]

    @property
    def num_models(self) -> int:
        return len(self.models)


def model_logits_cached(model: torch.nn.Module, digest: str, x: torch.Tensor, cache_dir: str | os.PathLike | None,
                        cache_key: str) -> torch.Tensor:
    """(N, C) float32 logits of one model (the audit's original) on the whole pool ``x``, cached and
    spot-checked like the pool's: every later request of the same model reads them instead of a
    forward pass over the pool."""
    return pool_logits(Models([model], [digest]), x, cache_dir, cache_key)[0].to(torch.float32)


def pool_logits(reference: ReferenceModels | Models, x: torch.Tensor, cache_dir: str | os.PathLike | None,
                cache_key: str) -> torch.Tensor:
    """(M, N, C) float32 logits of every reference model on ``x`` (the whole pool), cached when ``cache_dir`` is set."""
    if cache_dir is None:
        return _compute(reference, x)
    path = _path(Path(cache_dir), cache_key, reference, len(x))
    logits, problem = _load(path, reference, x)
    if logits is not None:
        return logits.double()
    if problem:
        warnings.warn(f"pool-logits cache entry {path} is unusable: {problem}; recomputing it", stacklevel=2)
    logits = _compute(reference, x)
    tmp = temporary_name(path)  # named before it exists: an interrupt at any point leaves no .tmp
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"logits": logits.contiguous()}, tmp, metadata={"sha256": logits_digest(logits), "cache_key": cache_key})
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache costs time next run, not this audit
        warnings.warn(f"could not keep the pool's logits in {path.parent}: {exc.strerror or exc}", stacklevel=2)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return logits.double()
