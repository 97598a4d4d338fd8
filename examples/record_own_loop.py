"""Record an amnesiac update log from your own training loop, then forget some examples.

A plain torch model and loop on scikit-learn's digits: Adam, a StepLR schedule and gradient
clipping, with the recorder attached to the optimizer. Run: ``python examples/record_own_loop.py``
"""

import tempfile

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from unlearning import DatasetWithIds, TrainConfig, UpdateRecorder, accuracy, amnesiac_unlearn

torch.manual_seed(0)
digits = load_digits()
x, y = torch.tensor(digits.data, dtype=torch.float32) / 16, torch.tensor(digits.target)
forget_ids = torch.nonzero(y == 3).flatten()  # the examples a deletion request will name: every 3
retain = ~torch.isin(torch.arange(len(y)), forget_ids)
loader = DataLoader(DatasetWithIds(TensorDataset(x, y)), batch_size=64, shuffle=True)  # yields (ids, x, y)
model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))

with tempfile.TemporaryDirectory() as tmp:
    recorder = UpdateRecorder(model, f"{tmp}/run.updates", record_ids=forget_ids, record="class=3")
    optimizer = recorder.attach(torch.optim.Adam(model.parameters(), lr=3e-3))  # the same, real optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    for epoch in range(10):
        model.train()
        for ids, xb, yb in loader:
            recorder.batch(ids, epoch=epoch)  # the one added line: which examples this step learns from
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
        scheduler.step()
    summary = recorder.close()  # keep summary["log_sha256"] with the model: it vouches for the log

    # Nearly every batch of 64 held a 3, so removal undoes most steps. BatchNorm is re-measured on
    # retained examples, then a repair of at most one epoch runs while the retain accuracy is more
    # than a point below the original's.
    result = amnesiac_unlearn(model, f"{tmp}/run.updates", forget_ids, log_sha256=summary["log_sha256"],
                              repair=TrainConfig(epochs=1, batch_size=8, lr=2e-3), x_train=x, y_train=y)
    model.eval()
    repair = result.details["repair"]
    print(f"removed {result.details['batches_removed']} of {summary['total_steps']} steps, then "
          f"{repair['epochs_run']:g} repair epochs ({repair['stopped']})")
    for name, ids in (("forget", forget_ids), ("retain", retain)):
        print(f"{name} accuracy: before {accuracy(model, x[ids], y[ids]):.1%}, "
              f"after {accuracy(result.model, x[ids], y[ids]):.1%}")
