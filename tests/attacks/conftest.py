"""Tiny real models on real data (scikit-learn's 8x8 digits, values / 16) for the attack tests.

``digits`` here is scikit-learn's (images, labels) as tensors, not the root conftest's
``audit.data`` set: the attacks package knows nothing of ``audit``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from attacks import ReferenceModels, train_reference_models


class TinyMLP(nn.Module):
    def __init__(self, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.5)


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5).flatten(1))


def fit(factory, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, batch: int | None = None) -> nn.Module:
    """Adam lr 1e-3; full batch unless ``batch`` is given; seeded init and order."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = factory()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        b = torch.randperm(len(x), generator=gen)[:batch] if batch else slice(None)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def tiny_mlp_factory():
    """How the overfit fixture's models are built (for loading cached state_dicts)."""
    return lambda: TinyMLP(hidden=128)


@pytest.fixture(scope="session")
def tiny_cnn_factory():
    return TinyCNN


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1), torch.tensor(d.target)


@pytest.fixture(scope="session")
def overfit(digits):
    """A pool of 160 digits, an MLP overfit on a random half (no regularisation), and its recipe."""
    x_all, y_all = digits
    rng = np.random.default_rng(0)
    pool = rng.permutation(len(y_all))[:160]
    x, y = x_all[pool], y_all[pool]
    is_member = np.zeros(len(y), bool)
    is_member[rng.permutation(len(y))[: len(y) // 2]] = True

    def train_reference(ids: np.ndarray, seed: int) -> nn.Module:
        t = torch.as_tensor(ids)
        return fit(lambda: TinyMLP(hidden=128), x[t], y[t], steps=400, seed=seed)

    target = train_reference(np.flatnonzero(is_member), 999)
    return {"x": x, "y": y, "is_member": is_member, "target": target, "train_reference": train_reference}


@pytest.fixture(scope="session")
def overfit_reference(overfit) -> ReferenceModels:
    return train_reference_models(overfit["train_reference"], len(overfit["y"]), num_models=8, seed=0)


@pytest.fixture(scope="session")
def digits_cnn(digits):
    """A CNN trained on 900 digits and an MLP evaluation classifier trained on the rest."""
    x, y = digits
    perm = np.random.default_rng(1).permutation(len(y))
    train_ids, held_ids = torch.as_tensor(perm[:900]), torch.as_tensor(perm[900:])
    target = fit(TinyCNN, x[train_ids], y[train_ids], steps=400, seed=0, batch=64)
    evaluator = fit(TinyMLP, x[held_ids], y[held_ids], steps=400, seed=1)
    return {"target": target, "evaluator": evaluator, "x": x[train_ids], "y": y[train_ids], "x_held": x[held_ids], "y_held": y[held_ids]}
