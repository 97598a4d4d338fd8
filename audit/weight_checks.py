"""Whether a state_dict fits the network it is meant for, checked before anything is built.

Names and shapes are compared against the architecture built on the meta device (no
memory), so that a small file claiming 30 million classes is refused before a 7 GB layer
is allocated; integer or complex tensors where the network holds floating-point weights
are refused rather than cast silently; NaN or infinite weights are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audit.errors import InputError
from audit.file_safety import one_line
from audit.models import build_network

# Weights the toolkit trains and attacks: float8, complex and quantised tensors have no arithmetic on the CPU.
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def check_supported_dtypes(sd: dict, path: Path) -> None:
    """Refuse a tensor of a type the toolkit cannot train or attack (float8, quantised)."""
    # Complex tensors are left to check_dtypes, which says what the model's weights are instead.
    odd = next(((k, v.dtype) for k, v in sd.items() if v.dtype not in WEIGHT_DTYPES and not v.dtype.is_complex), None)
    if odd is not None:
        name = str(odd[1]).removeprefix("torch.")
        raise InputError(f"{path}: tensor {odd[0]} is {name}, which this toolkit cannot train or attack; "
                         "convert the weights to float32 (or float16/bfloat16) and save them again")


def check_dtypes(sd: dict, want: dict, path: Path) -> list[str]:
    """Refuse integer, boolean or complex tensors where the model holds floating-point weights
    (``load_state_dict`` would cast them without a word); return one line per other cast."""
    casts: dict[tuple, list[str]] = {}
    for key, tensor in sd.items():
        need = want.get(key)
        if need is None or not need.is_floating_point or tensor.dtype == need:
            continue
        if not tensor.is_floating_point():
            raise InputError(f"{path}: {key} is stored as {_dtype_name(tensor.dtype)}, but the model's weights are "
                             f"{_dtype_name(need)}: weights must be floating-point numbers; save the "
                             "trained model's state_dict as it is, without converting it")
        casts.setdefault((tensor.dtype, need), []).append(key)
    return [f"{path.name} stores {len(keys)} weight tensor(s) as {_dtype_name(have)} (e.g. {keys[0]}); "
            f"they are cast to {_dtype_name(need)}, the model's type"
            for (have, need), keys in casts.items()]


def first_nonfinite(sd: dict) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None."""
    return next((k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def check_weights_fit(sd: dict, arch: str, in_channels: int, num_classes: int, arch_args: dict | None,
                      path: Path, what: str) -> list[str]:
    """Compare the file's tensors with the shapes the claimed architecture needs, on the meta
    device. ``what`` names the claim in the error. Returns the casts that loading will do
    (one line each)."""
    check_supported_dtypes(sd, path)
    try:
        with torch.device("meta"):
            skeleton = build_network(arch, in_channels, num_classes, arch_args)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a builder refusing its arguments
        raise InputError(f"{path}: architecture {arch!r} cannot be built with {in_channels} channels and "
                         f"{num_classes} classes ({one_line(exc, 120)})") from None
    need = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = sorted(need.keys() - have.keys())
    extra = sorted(have.keys() - need.keys())
    wrong = [k for k in need if k in have and need[k] != have[k]]
    if missing or extra or wrong:
        if wrong:
            detail = f"{wrong[0]} has shape {list(have[wrong[0]])} but needs {list(need[wrong[0]])}"
        elif missing:
            detail = f"{len(missing)} tensors are missing, e.g. {missing[0]}"
        else:
            detail = f"{len(extra)} tensors are unexpected, e.g. {extra[0]}"
        raise InputError(f"{path}: the state_dict does not fit {what} ({detail})")
    casts = check_dtypes(sd, {k: v.dtype for k, v in skeleton.state_dict().items()}, path)
    nonfinite = first_nonfinite(sd)
    if nonfinite is not None:
        raise InputError(f"{path}: the weights hold NaN or infinite values (in {nonfinite}); the model diverged "
                         "when it was trained, so train it again with a lower learning rate")
    return casts
