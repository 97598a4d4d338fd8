"""Reference models never take the audited model's own seed (a near-copy of the target)."""

from __future__ import annotations

from torch import nn

from attacks.reference import train_reference_models


def test_reference_seeds_skip_the_targets_seed():
    seen = []

    def train(ids, seed):
        seen.append(seed)
        return nn.Linear(2, 2)

    refs = train_reference_models(train, 20, num_models=4, seed=0, avoid_seeds=(0,))
    assert refs.seeds == seen == [1, 2, 3, 4]
    assert train_reference_models(train, 20, num_models=3, seed=5, avoid_seeds=(6,)).seeds == [5, 7, 8]
    assert train_reference_models(train, 20, num_models=2, seed=5).seeds == [5, 6]
