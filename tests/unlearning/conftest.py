"""One digits model with an amnesiac update log, trained once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from audit.data import Dataset, load_dataset
from audit.modelfile import ModelFile
from audit.training import train_model
from unlearning import TrainConfig

# Fewer epochs than the default recipe (20): enough for ~99% test accuracy on digits.
EPOCHS = 8


@dataclass
class TrainedDigits:
    data: Dataset
    path: Path
    model_file: ModelFile


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory: pytest.TempPathFactory, digits: Dataset) -> TrainedDigits:
    """smallcnn on digits whose log records every batch that held a 3 (float32)."""
    path = tmp_path_factory.mktemp("unlearning") / "m.pt"
    res = train_model(digits, path, "smallcnn", TrainConfig(epochs=EPOCHS, seed=0), record="class=3",
                      show_progress=False)
    return TrainedDigits(digits, path, res.model_file)
