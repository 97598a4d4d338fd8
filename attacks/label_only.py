"""Label-only membership inference through IBM ART's ``LabelOnlyDecisionBoundary``
(Choquette-Choo et al. 2021, "boundary distance").

An attacker who sees only predicted labels measures how far each example is from the
decision boundary with HopSkipJump; training examples tend to lie farther from it.
The score is that L2 distance (0 for misclassified examples, as in ART).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attacks.checks import as_labels, check_classes, check_images
from attacks.shadow import art_classifier

# Used only to read ART's output back as a distance: ART reports sigmoid(distance - tau).
_TAU = 1.0


def label_only_scores(
    target_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    *,
    num_classes: int | None = None,
    max_iter: int = 10,
    max_eval: int = 1000,
    init_eval: int = 100,
    init_size: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """Per-example scores (N,): distance to the decision boundary, higher = member.

    HopSkipJump costs ~``max_iter * max_eval`` queries per example: score a subset of
    a few hundred examples on CPU. ``seed`` fixes numpy's global RNG, but ART 1.20's
    HopSkipJump draws its starting images from an unseeded ``RandomState``, so scores
    vary a little from run to run.
    """
    from art.attacks.inference.membership_inference import LabelOnlyDecisionBoundary

    y = as_labels(y)
    check_images(x, y)
    k = check_classes(y, num_classes)
    estimator = art_classifier(target_model, tuple(x.shape[1:]), k)
    attack = LabelOnlyDecisionBoundary(estimator, distance_threshold_tau=_TAU)
    # ART's HopSkipJump mixes float64 into float32 arrays under numpy 2; give it float32.
    x_np = x.detach().cpu().numpy().astype(np.float32)
    state, was_training = np.random.get_state(), target_model.training
    np.random.seed(seed)
    target_model.eval()
    try:
        p = attack.infer(
            x_np, y.numpy(), probabilities=True, max_iter=max_iter, max_eval=max_eval,
            init_eval=init_eval, init_size=init_size, verbose=False,
        )
    finally:
        np.random.set_state(state)
        target_model.train(was_training)
    p1 = np.clip(np.asarray(p, dtype=np.float64)[:, 1], 1e-300, 1.0)
    p0 = np.clip(1.0 - p1, 1e-300, 1.0)
    # Undo ART's sigmoid(distance - tau) to get the distance back (ranks are unchanged).
    return np.maximum(np.log(p1) - np.log(p0) + _TAU, 0.0)
