"""Real examples of a forgotten class beside its MI-Face reconstructions (issue 25, item 2): chosen from
the held-out test split (never the training examples the request asked to forget), recorded in
results.json with their indexes, saved as PNGs beside it."""

from __future__ import annotations

import numpy as np

from reports.document import Inversion


def test_run_inversion_records_real_test_examples_of_each_forgotten_class(trained_digits, tmp_path):
    from audit.attacking import SHOWN_PER_CLASS, AttackContext, run_inversion, save_png

    data = trained_digits.data
    model = trained_digits.model_file.model
    # The model judges its own reconstructions: the evaluator (trained on the test split, seconds) is not
    # what this test is about, and make test has no time to spare.
    ctx = AttackContext(trained_digits.model_file, data, 0, 0, tmp_path, [], inversion_iterations=3,
                        use_reference=False, _evaluator=model)
    found, images = run_inversion(ctx, {"original": model, "unlearned": model}, [3, 7], "class=3,7")
    inversion = Inversion.model_validate(found)  # the typed document part the harness records
    labels = data.y_test.numpy()
    first = {c: np.flatnonzero(labels == c)[:SHOWN_PER_CLASS].tolist() for c in (3, 7)}
    assert [(e.label, e.index) for e in inversion.real_examples] == \
        [(c, i) for c in (3, 7) for i in first[c]]
    for example in inversion.real_examples:
        assert example.split == "test" and example.image.startswith("inversion/class_3_7/real-class")
        assert np.array_equal(images[example.image], data.x_test[example.index].numpy())
    # Pixels of the test split, and of no training example (the data a class request asks to forget).
    train = data.x_train.flatten(1).numpy()
    shown = np.stack([images[e.image].reshape(-1) for e in inversion.real_examples])
    assert not (np.abs(train[:, None, :] - shown[None]).max(axis=2) == 0).any()
    # The reconstructions are still there, and every recorded path is an image the run writes.
    assert len(inversion.original.images) == 2 * SHOWN_PER_CLASS
    recorded = {e.image for e in inversion.real_examples} | set(inversion.original.images) | \
        set(inversion.unlearned.images)
    assert recorded == set(images)
    save_png(images[inversion.real_examples[0].image], tmp_path / "real.png")
    assert (tmp_path / "real.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
