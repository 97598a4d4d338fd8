"""The fields of a toolkit ``model.pt`` document, checked before anything is built from them.

A model file is input like any other: every field the loader reads has its type and range
checked here, so that a damaged or forged file is refused in one line rather than failing
deep inside torch (or allocating what its claims ask for).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from audit.data import MAX_CLASSES
from audit.errors import InputError

# Bounds on what a model file may claim, checked before anything is built from the claims.
MAX_INPUT_VALUES = 1 << 24  # C*H*W of one input image (e.g. 3x2048x2048 fits)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_document(doc: dict, path: Path) -> None:
    """Every field the model.pt loader uses has the type and range it needs, before anything is built."""
    def bad(field: str, want: str) -> InputError:
        return InputError(f"{path}: field {field!r} must be {want}; the file is damaged or was not written by "
                          "audit train, so train or unlearn the model again")

    if not isinstance(doc.get("arch"), str) or not doc["arch"] or len(doc["arch"]) > 100:
        raise bad("arch", "an architecture name such as 'smallcnn'")
    arch_args = doc.get("arch_args")
    if arch_args is not None and not (isinstance(arch_args, dict)
                                      and all(isinstance(k, str) and _is_int(v) and 0 < v <= 1 << 16
                                              for k, v in arch_args.items())):
        raise bad("arch_args", "a table of positive whole numbers such as {'width': 16}")
    shape = doc.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)
            and math.prod(shape) <= MAX_INPUT_VALUES):
        raise bad("input_shape", f"[channels, height, width], positive, at most {MAX_INPUT_VALUES:,} values")
    k = doc.get("num_classes")
    if not (_is_int(k) and 1 <= k <= MAX_CLASSES):
        raise bad("num_classes", f"a whole number from 1 to {MAX_CLASSES:,}")
    norm = doc.get("normalization")
    if not (isinstance(norm, dict) and all(isinstance(norm.get(key), (list, tuple)) and len(norm[key]) == shape[0]
                                           and all(_is_number(v) for v in norm[key]) for key in ("mean", "std"))
            and all(v > 0 for v in norm["std"])):
        raise bad("normalization", f"{{'mean': [...], 'std': [...]}} with {shape[0]} finite numbers each, std above 0")
    sd = doc.get("state_dict")
    if not (isinstance(sd, dict) and sd and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())):
        raise bad("state_dict", "a table of weight tensors")
    for key in ("data", "recipe", "metrics", "update_log", "lineage"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise bad(key, "a table or absent")
    if doc.get("seed") is not None and not _is_int(doc["seed"]):
        raise bad("seed", "a whole number or absent")
    if doc.get("data") is not None and not isinstance(doc["data"].get("spec"), str):
        raise bad("data", "a table whose 'spec' is a data spec such as 'digits'")
    log = doc.get("update_log")
    if log is not None:
        name = log.get("dir")
        # The log lives beside the model file, under a plain folder name.
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise bad("update_log", "a table whose 'dir' names the log folder beside the model file")
    if doc.get("recipe") is not None:
        from unlearning import TrainConfig

        try:
            TrainConfig.from_dict(doc["recipe"]).validate()
        except (TypeError, ValueError):
            raise bad("recipe", "a training recipe (epochs, batch_size, lr, optimizer, seed, ...)") from None
