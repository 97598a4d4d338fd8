"""A user's own network and training loop, as they would write them without this toolkit.

The audit imports these by name (``--arch mynet:make_net --train mynet:fit --code-path
examples/own_model``, or ``audit.evaluate(model_factory=make_net, train_fn=fit)``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DigitNet(nn.Module):
    """A small CNN for 8x8 grey digits; takes images in [0, 1]."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.head = nn.Linear(2 * width * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def make_net(width: int = 16) -> nn.Module:
    return DigitNet(width)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int, epochs: int | None = None) -> nn.Module:
    """The user's recipe: SGD with momentum, a step schedule, gradient clipping, 15 epochs."""
    epochs = 15 if epochs is None else epochs
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        schedule.step()
    return model.eval()
