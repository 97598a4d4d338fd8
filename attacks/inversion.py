"""Model inversion: MI-Face (Fredrikson et al. 2015) as modified by the amnesiac-ML
paper (Graves et al. 2021), batched, plus IBM ART's ``MIFace`` as a parity option.

The paper's version descends the NLL of the target label from a near-black start,
x <- x - lr * grad, for a fixed number of iterations, and every 500 iterations applies
a median filter (size 2), a Gaussian blur (sigma 2) and an unsharp mask
x = blur + 80 * (blur - gaussian(blur, sigma 1)) to keep the image natural.

ART inverts one image per gradient call. Here every (class, restart) pair is one row
of a single batch, so one forward/backward pass serves all of them; eval-mode
BatchNorm keeps rows independent, and the summed NLL gives each row its own gradient.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from attacks.inversion_scores import ModelInversionResult, score_reconstructions

PAPER_SETTINGS = {
    "iterations": 1000,
    "learning_rate": 1.0,
    "filter_every": 500,
    "median_size": 2,
    "blur_sigma": 2.0,
    "sharpen_sigma": 1.0,
    "sharpen_amount": 80.0,
    "init_scale": 0.01,
}


def _reflect_index(n: int, before: int, after: int) -> torch.Tensor:
    """Indices of scipy.ndimage's 'reflect' extension (d c b a | a b c d | d c b a)."""
    j = np.arange(-before, n + after) % (2 * n)
    return torch.as_tensor(np.where(j >= n, 2 * n - 1 - j, j))


def _pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x.index_select(-2, _reflect_index(h, before, after)).index_select(-1, _reflect_index(w, before, after))


def gaussian_filter(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Spatial Gaussian blur of (K, C, H, W), matching scipy.ndimage.gaussian_filter per channel."""
    r = int(truncate * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    xp = _pad(x, r, r)
    xp = nn.functional.conv2d(xp, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return nn.functional.conv2d(xp, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Spatial median of (K, C, H, W), matching scipy.ndimage.median_filter per channel
    (for even sizes scipy's window starts size//2 before the pixel and takes the upper median)."""
    if size <= 1:
        return x
    before, after = size // 2, size - 1 - size // 2
    k, c, h, w = x.shape
    patches = nn.functional.unfold(_pad(x, before, after).reshape(k * c, 1, h + size - 1, w + size - 1), size)
    return patches.sort(dim=1).values[:, (size * size) // 2].reshape(k, c, h, w)


def smooth_and_sharpen(x: torch.Tensor, median_size: int, blur_sigma: float, sharpen_sigma: float, amount: float) -> torch.Tensor:
    """The paper's periodic clean-up: median, blur, then unsharp mask; clipped to [0, 1]."""
    blur = gaussian_filter(median_filter(x, median_size), blur_sigma)
    return (blur + amount * (blur - gaussian_filter(blur, sharpen_sigma))).clamp(0.0, 1.0)


def _targets(num_classes: int, classes: Sequence[int] | None, restarts: int) -> np.ndarray:
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 for model inversion, got {num_classes}")
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    cls = np.arange(num_classes) if classes is None else np.asarray(list(classes), dtype=np.int64)
    if cls.size == 0 or cls.min() < 0 or cls.max() >= num_classes:
        raise ValueError(f"classes must be a non-empty list of class indices in 0..{num_classes - 1}")
    return np.repeat(cls, restarts)


def mi_face_batched(
    model: nn.Module,
    target_classes: np.ndarray,
    input_shape: tuple[int, int, int],
    *,
    iterations: int = PAPER_SETTINGS["iterations"],
    learning_rate: float = PAPER_SETTINGS["learning_rate"],
    filter_every: int = PAPER_SETTINGS["filter_every"],
    median_size: int = PAPER_SETTINGS["median_size"],
    blur_sigma: float = PAPER_SETTINGS["blur_sigma"],
    sharpen_sigma: float = PAPER_SETTINGS["sharpen_sigma"],
    sharpen_amount: float = PAPER_SETTINGS["sharpen_amount"],
    init_scale: float = PAPER_SETTINGS["init_scale"],
    seed: int = 0,
) -> torch.Tensor:
    """Reconstructions (K, C, H, W) in [0, 1], one per entry of ``target_classes`` (K,).

    The clean-up runs after every ``filter_every`` steps but not after the last step, so
    the returned image is one the gradient has just refined (0 disables it).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    labels = torch.as_tensor(np.asarray(target_classes, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    x = init_scale * torch.rand((len(labels), *input_shape), generator=gen)  # "near black"
    was_training = model.training
    model.eval()
    try:
        for i in range(1, iterations + 1):
            x.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = (x - learning_rate * grad).clamp_(0.0, 1.0)
                if filter_every and i % filter_every == 0 and i < iterations:
                    x = smooth_and_sharpen(x, median_size, blur_sigma, sharpen_sigma, sharpen_amount)
    finally:
        model.train(was_training)
    return x.detach()


def mi_face_art(
    model: nn.Module,
    target_classes: np.ndarray,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    iterations: int = 1000,
    learning_rate: float = 0.1,
    batch_size: int = 1,
    init_scale: float = PAPER_SETTINGS["init_scale"],
    seed: int = 0,
) -> torch.Tensor:
    """ART's ``MIFace`` (gradient ascent on the class logit, per batch) for exactly ``iterations``.

    ART stops a row early when its cost 1 - output stops improving inside a window; on a
    logit model that test is meaningless, so the window spans all iterations and the
    threshold is effectively off: every image gets the same number of steps as ours.
    """
    from art.attacks.inference.model_inversion import MIFace

    from attacks.shadow import art_classifier

    gen = torch.Generator().manual_seed(seed)
    x0 = (init_scale * torch.rand((len(target_classes), *input_shape), generator=gen)).numpy()
    was_training = model.training
    model.eval()
    try:
        attack = MIFace(
            art_classifier(model, input_shape, num_classes), max_iter=iterations, window_length=iterations,
            threshold=1e12, learning_rate=float(learning_rate), batch_size=batch_size, verbose=False,
        )
        out = attack.infer(x0, np.asarray(target_classes, dtype=np.int64))
    finally:
        model.train(was_training)
    return torch.as_tensor(np.asarray(out, dtype=np.float32))


def model_inversion(
    target_model: nn.Module,
    num_classes: int,
    input_shape: tuple[int, int, int],
    *,
    evaluation_model: nn.Module | None = None,
    x_reference: torch.Tensor | None = None,
    y_reference: torch.Tensor | np.ndarray | None = None,
    classes: Sequence[int] | None = None,
    restarts: int = 1,
    method: str = "batched",
    iterations: int = PAPER_SETTINGS["iterations"],
    seed: int = 0,
    **settings: float,
) -> ModelInversionResult:
    """Invert ``classes`` (default: all) ``restarts`` times each and score the results.

    ``method`` is "batched" (the paper's MI-Face, one graph) or "art" (ART's MIFace).
    ``evaluation_model`` is an independent classifier for attack accuracy;
    ``x_reference``/``y_reference`` real images for the nearest-image similarity.
    Extra ``settings`` go to :func:`mi_face_batched` or :func:`mi_face_art`.
    """
    targets = _targets(num_classes, classes, restarts)
    start = time.perf_counter()
    if method == "batched":
        images = mi_face_batched(target_model, targets, input_shape, iterations=iterations, seed=seed, **settings)  # type: ignore[arg-type]
        used = {**PAPER_SETTINGS, **settings, "iterations": iterations}
    elif method == "art":
        images = mi_face_art(target_model, targets, input_shape, num_classes, iterations=iterations, seed=seed, **settings)  # type: ignore[arg-type]
        used = {"learning_rate": 0.1, "batch_size": 1, **settings, "iterations": iterations}
    else:
        raise ValueError(f"method must be 'batched' or 'art', got {method!r}")
    seconds = time.perf_counter() - start
    per_class, acc, conf, near = score_reconstructions(images, targets, target_model, evaluation_model, x_reference, y_reference)
    return ModelInversionResult(
        images=images.numpy().astype(np.float32),
        target_classes=targets,
        per_class=per_class,
        attack_accuracy=acc,
        target_confidence=conf,
        nearest_is_target=near,
        method=method,
        iterations=iterations,
        seconds=seconds,
        settings={**used, "restarts": restarts, "seed": seed},
    )
