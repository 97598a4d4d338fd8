"""Input checks shared by the attacks: one clear, actionable ``ValueError`` per problem.

The harness maps ``ValueError`` from this package to its "bad input" exit code, so every
message names the input, says what was wrong and what to do.
"""

from __future__ import annotations

import numpy as np
import torch


def as_labels(y: torch.Tensor | np.ndarray, name: str = "y") -> torch.Tensor:
    """Return ``y`` as a 1-D int64 tensor, or raise if it is not one."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    return t.long()


def check_images(x: torch.Tensor, y: torch.Tensor, x_name: str = "x", y_name: str = "y") -> None:
    """Images must be float (N, C, H, W) and match their labels in length."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{x_name} must be a torch tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{x_name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{x_name} must be float images in [0, 1], got dtype {x.dtype}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} has {x.shape[0]} examples but {y_name} has {y.shape[0]} labels; pass one label per image"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{x_name} is empty; pass at least one example per class")


def check_membership(
    is_member: np.ndarray | torch.Tensor, n: int | None = None, name: str = "is_member"
) -> np.ndarray:
    """A boolean membership vector with both members and non-members present."""
    m = np.asarray(is_member.cpu() if isinstance(is_member, torch.Tensor) else is_member)
    if m.ndim != 1:
        raise ValueError(f"{name} must be a 1-D boolean array, got shape {m.shape}")
    if m.dtype != bool:
        if not np.all(np.isin(m, (0, 1))):
            raise ValueError(f"{name} must be boolean (True = member), got values other than 0/1")
        m = m.astype(bool)
    if n is not None and m.shape[0] != n:
        raise ValueError(f"{name} has {m.shape[0]} entries but there are {n} scores/examples; pass one per example")
    if not m.any():
        raise ValueError(f"{name} holds no members; pass at least one example the target model was trained on")
    if m.all():
        raise ValueError(
            f"{name} holds no non-members; pass examples the target model was not trained on "
            "(e.g. held-out data) so the attack has something to tell apart"
        )
    return m


def check_classes(y: torch.Tensor, num_classes: int | None = None, name: str = "y") -> int:
    """Labels in range; returns the class count.

    Without ``num_classes`` the count is read off ``y``, which then needs at least two
    classes; with it (the model's class count), examples of one class may be scored.
    """
    present = torch.unique(y)
    if present.numel() < 2 and num_classes is None:
        raise ValueError(
            f"{name} holds a single class ({int(present[0]) if present.numel() else 'none'}); "
            "membership and inversion attacks need examples of at least two classes"
        )
    if int(y.min()) < 0:
        raise ValueError(f"{name} holds negative class indices; labels must be 0..num_classes-1")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if int(y.max()) >= k:
        raise ValueError(f"{name} holds class {int(y.max())} but the model has {k} classes")
    return k

