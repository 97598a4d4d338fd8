"""Training a TorchScript model the toolkit did not build.

An auditor who receives only a scripted archive (``torch.jit.script(model).save(...)``)
and the data has no factory to build fresh models from. Scripted modules are trainable,
so a fresh model is a copy of the archive's module with every parameter re-initialised
per layer type, as torch's own layers initialise themselves (``reset_parameters``:
Kaiming-uniform weights with ``a = sqrt(5)`` and a uniform bias of bound
``1/sqrt(fan_in)`` for linear and convolution layers; ones and zeros, and fresh running
statistics, for normalisation layers). A layer of another type that holds parameters
cannot be re-initialised faithfully: :func:`unknown_layers` names it, and the run asks
for the user's factory instead. A ``.pt2`` graph runs forward only and is never trained.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings

import torch
from torch import nn

from audit.interruptible import call_interruptibly

_KAIMING = {"Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"}
_NORM = {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
         "InstanceNorm2d", "InstanceNorm3d"}
_OWN_TENSORS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _reload(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """An independent copy through bytes (``copy.deepcopy`` of a loaded ScriptModule gives
    parameters that are not leaves, which no optimizer accepts)."""
    return _load(_save(module))


def _save(module: torch.jit.ScriptModule) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch deprecates TorchScript; accepting it is still the point
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(module, buffer)
    return buffer.getvalue()


def _load(data: bytes) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


def _from_bytes(data: bytes) -> "ScriptedNet":
    return ScriptedNet(_load(data))


class ScriptedNet(nn.Module):
    """A TorchScript module as a trainable network: deep copies and pickles (Ray) go through bytes."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A forward that never ends must not outlast a SIGTERM (audit.interruptible).
        return call_interruptibly(self.module, x)

    def __deepcopy__(self, memo: dict) -> "ScriptedNet":
        copy = ScriptedNet(_reload(self.module))
        copy.train(self.training)
        return copy

    def __reduce__(self):
        return _from_bytes, (_save(self.module),)

    def layer_types(self) -> dict[str, str]:
        """Submodule name -> its class name, for the submodules that hold tensors of their own."""
        out = {}
        for name, sub in self.module.named_modules():
            own = [n for n, _ in sub.named_parameters(recurse=False)] + [n for n, _ in sub.named_buffers(recurse=False)]
            if own:
                out[name or "(top level)"] = getattr(sub, "original_name", type(sub).__name__)
        return out

    def unknown_layers(self) -> list[str]:
        """``name (Type)`` of each layer whose initialisation is not known here."""
        bad = []
        for name, sub in self.module.named_modules():
            kind = getattr(sub, "original_name", type(sub).__name__)
            own = {n for n, _ in sub.named_parameters(recurse=False)} | {n for n, _ in sub.named_buffers(recurse=False)}
            if own and (kind not in _KAIMING | _NORM or not own <= _OWN_TENSORS):
                bad.append(f"{name or '(top level)'} ({kind})")
        return bad

    def identity(self) -> str:
        """A digest of the graph's code and the tensors' shapes: which network this is, for cache keys."""
        h = hashlib.sha256()
        for name, sub in self.module.named_modules():
            h.update(name.encode())
            try:
                h.update(sub.code.encode())
            except (AttributeError, RuntimeError):
                pass
        for key, value in self.module.state_dict().items():
            h.update(f"{key}:{tuple(value.shape)}:{value.dtype}".encode())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def reinitialised(self, seed: int | None = None) -> "ScriptedNet":
        """A copy with every parameter drawn afresh (from ``seed``), as torch's layers initialise."""
        if self.unknown_layers():
            raise ValueError(f"cannot re-initialise {', '.join(self.unknown_layers())}")
        if seed is not None:
            torch.manual_seed(seed)
        fresh = ScriptedNet(_reload(self.module))
        for _, sub in fresh.module.named_modules():
            kind = getattr(sub, "original_name", type(sub).__name__)
            params = dict(sub.named_parameters(recurse=False))
            buffers = dict(sub.named_buffers(recurse=False))
            if kind in _KAIMING and "weight" in params:
                weight = params["weight"]
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                if "bias" in params:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(params["bias"], -bound, bound)
            elif kind in _NORM:
                if "weight" in params:
                    nn.init.ones_(params["weight"])
                if "bias" in params:
                    nn.init.zeros_(params["bias"])
                if "running_mean" in buffers:
                    buffers["running_mean"].zero_()
                if "running_var" in buffers:
                    buffers["running_var"].fill_(1.0)
                if "num_batches_tracked" in buffers:
                    buffers["num_batches_tracked"].zero_()
        fresh.train()
        return fresh
