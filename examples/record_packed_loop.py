"""Record a packed amnesiac update log from your own training loop, then forget the recordable examples.

The ids a deletion may later name are known before training (here a random 5% of
scikit-learn's digits), so a ``PackedBatchSampler`` trains them in batches of their own:
only those batches are recorded and removed, instead of every batch that happened to hold
one of them. Run: ``python examples/record_packed_loop.py``
"""

import tempfile

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from unlearning import DatasetWithIds, PackedBatchSampler, UpdateRecorder, accuracy, amnesiac_unlearn

torch.manual_seed(0)
digits = load_digits()
x, y = torch.tensor(digits.data, dtype=torch.float32) / 16, torch.tensor(digits.target)
recordable = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[: len(y) // 20]
retain = ~torch.isin(torch.arange(len(y)), recordable)
sampler = PackedBatchSampler(len(y), recordable, batch_size=64, seed=0)  # each epoch a seeded permutation
loader = DataLoader(DatasetWithIds(TensorDataset(x, y)), batch_sampler=sampler)  # yields (ids, x, y)
model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))

with tempfile.TemporaryDirectory() as tmp:
    recorder = UpdateRecorder(model, f"{tmp}/run.updates", record_ids=recordable, record="random 5%")
    optimizer = recorder.attach(torch.optim.Adam(model.parameters(), lr=3e-3))
    for epoch in range(10):
        sampler.set_epoch(epoch)  # optional: each pass over the loader is otherwise the next epoch
        model.train()
        for ids, xb, yb in loader:
            recorder.batch(ids, epoch=epoch)
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    summary = recorder.close()

    # x_train/y_train: BatchNorm's running statistics are re-measured on retained examples after the subtraction.
    result = amnesiac_unlearn(model, f"{tmp}/run.updates", recordable, log_sha256=summary["log_sha256"],
                              x_train=x, y_train=y)
    model.eval()
    print(f"recorded {summary['recorded']} of {summary['total_steps']} steps "
          f"({summary['bytes'] / 1e6:.2f} MB); removed {result.details['batches_removed']}, holding "
          f"{result.details['retained_examples_in_removed_batches']} retained examples, in {result.seconds:.3f} s")
    for name, ids in (("forget", recordable), ("retain", retain)):
        print(f"{name} accuracy: before {accuracy(model, x[ids], y[ids]):.1%}, "
              f"after {accuracy(result.model, x[ids], y[ids]):.1%}")
