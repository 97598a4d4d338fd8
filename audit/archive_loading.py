"""TorchScript (``torch.jit.save``) and torch.export (``.pt2``) archives, loaded as modules.

Both carry a graph rather than a Python class, so they load without the user's code, and
without a full unpickle: a TorchScript archive through ``torch.jit.load``, an exported
program with every pickled Python object refused. Neither says what data it takes; the
caller supplies the input shape and classes (``--data``).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from audit.errors import InputError
from audit.file_safety import one_line
from audit.scripted import ScriptedNet


class ForwardOnly(nn.Module):
    """A module that only runs forward (an exported program): ``train()``/``eval()`` change
    nothing inside it, since ``torch.export`` captured it in eval mode."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> "ForwardOnly":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load_torchscript(path: Path) -> ScriptedNet:
    """A TorchScript archive as a :class:`ScriptedNet`, in eval mode."""
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; accepting it is still the point
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a damaged archive
        raise InputError(f"{path} looks like TorchScript but does not load: {exc}") from None
    return ScriptedNet(net).eval()


def load_exported(path: Path) -> ForwardOnly:
    """Load a .pt2 archive without unpickling: ``torch.export.load`` unpickles constants and
    may fall back to a full ``torch.load``; here tensors load with ``weights_only=True`` and
    any pickled Python object is refused."""
    from unittest import mock

    original_load = torch.load

    def tensors_only(*args, **kwargs):
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("the archive holds pickled Python objects, which this toolkit never loads")

    try:
        with warnings.catch_warnings(), mock.patch.object(torch, "load", tensors_only), \
                mock.patch.object(pickle, "loads", refuse), mock.patch.object(torch._C, "_pickle_load_obj", refuse):
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
        return ForwardOnly(program.module())
    except Exception as exc:  # noqa: BLE001 - a damaged archive or one that needs pickled objects
        raise InputError(f"{path} looks like a torch.export archive (.pt2) but does not load safely "
                         f"({one_line(exc, 140)}); export it again with torch.export.save") from None
