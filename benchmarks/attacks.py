"""Benchmark the attacks package against IBM ART on scikit-learn's digits.

Run:  .venv/bin/python benchmarks/attacks.py [--seed 0] [--reference-models 8]

1. A target CNN trained on a random half of the auditor's data; every membership
   attack (ours and ART's black-box shadow attack) on the same target in the same run.
2. A deliberately overfit target (small training set, no BatchNorm, no regularisation).
3. Batched MI-Face against ART's MIFace at equal iterations: images/second and attack
   accuracy by an independent evaluation classifier (an MLP trained on held-out data).
4. The reference-model cache: the same reference models trained cold, then loaded.

Writes benchmarks/results/attacks.md and attacks.json with the command line and machine.
Self-contained: the model and training recipe live here, not in ``audit``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attacks  # noqa: E402
from attacks import membership_metrics, model_inversion, run_membership_attacks, train_reference_models  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# ---- the recipe: a small CNN, Adam lr 1e-3, batch 64 (the paper's optimiser settings) ----
class SmallCNN(nn.Module):
    """conv-BN-ReLU x2, max-pool, linear; input (N, 1, 8, 8) in [0, 1], normalised inside."""

    def __init__(self, num_classes: int = 10, width: int = 16, batchnorm: bool = True):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), norm(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), norm(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5).flatten(1))


class MLP(nn.Module):
    """The evaluation classifier for inversion: another architecture entirely."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.5)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            b = order[i : i + 64]
            if len(b) < 2:
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def machine() -> dict:
    import os

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "art": __import__("art").__version__}
