"""Relabel unlearning: wrong labels only, drawn once from a seed, and a class forgotten."""

from __future__ import annotations

import torch

from unlearning import TrainConfig, accuracy, random_wrong_labels, relabel_unlearn
from unlearning.relabel import relabelled_training_set


def test_wrong_labels_are_never_the_true_label_and_cover_every_other_class():
    for num_classes in (2, 3, 10, 100):
        y = torch.arange(num_classes).repeat(200)
        for seed in range(5):
            wrong = random_wrong_labels(y, num_classes, seed)
            assert not (wrong == y).any()
            assert int(wrong.min()) >= 0 and int(wrong.max()) < num_classes
        if num_classes == 10:
            # Uniform over the nine other classes: each gets ~200 * 10 / 9 of the 2000.
            counts = torch.bincount(wrong[y == 0], minlength=10)
            assert counts[0] == 0 and int(counts[1:].min()) > 5


def test_wrong_labels_are_drawn_once_from_the_seed():
    y = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(random_wrong_labels(y, 10, 3), random_wrong_labels(y, 10, 3))
    assert not torch.equal(random_wrong_labels(y, 10, 3), random_wrong_labels(y, 10, 4))


def test_relabelled_training_set_holds_no_forget_example_with_its_true_label(digits):
    forget = torch.tensor([0, 5, 17, 300])
    for copies in (1, 3):
        x, y = relabelled_training_set(digits.x_train, digits.y_train, forget, 10, seed=0, copies=copies)
        assert len(y) == len(digits.y_train) - len(forget) + copies * len(forget)
        for i in forget.tolist():
            same_image = (x == digits.x_train[i]).flatten(1).all(1)
            assert int(same_image.sum()) >= copies
            assert not (y[same_image] == digits.y_train[i]).any()


def test_relabel_forgets_class_3(trained_digits):
    data, mf = trained_digits.data, trained_digits.model_file
    threes = torch.nonzero(data.y_train == 3).flatten()
    kept = data.y_test != 3
    before = [p.detach().clone() for p in mf.model.parameters()]
    result = relabel_unlearn(mf.model, data.x_train, data.y_train, threes, TrainConfig(epochs=1, seed=0),
                             num_classes=10, seed=0)
    assert accuracy(result.model, data.x_train[threes], data.y_train[threes]) <= 0.05
    assert accuracy(result.model, data.x_test[kept], data.y_test[kept]) >= 0.9
    assert result.details["relabelled_examples"] == len(threes)
    assert all(torch.equal(a, b) for a, b in zip(before, mf.model.parameters()))
