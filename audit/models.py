"""Architectures by name, wrapped so that every model takes images in [0, 1].

``smallcnn`` (sized for 8x8 to 32x32 inputs), ``convnet`` (sized for 28x28 to 32x32: the
default for MNIST and Fashion-MNIST, see :data:`DEFAULT_RECIPES`), ``resnet18`` adapted as in the Amnesiac
paper (conv1 to the input's channels, fc to the class count) and any other torchvision
classification model by its name. Normalisation lives inside the model
(:class:`Classifier`), so attacks and inversion work in image space.
"""

from __future__ import annotations

import torch
from torch import nn

from audit.errors import InputError, closest


class Classifier(nn.Module):
    """``net`` behind a fixed per-channel normalisation; input (N, C, H, W) in [0, 1], output logits."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        # Not persistent: the model file records normalisation on its own, and the
        # state_dict stays the plain network's (so bare state_dicts load too).
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks and a two-layer head; ~25k parameters at width 16.

    ``batch_norm=False`` drops BatchNorm (conv layers get biases): a model that memorises
    more, used as the leaky target of ``benchmarks/detection.py``.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, batch_norm: bool = True):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            if not batch_norm:
                return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, w), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 2 * w), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvNet(nn.Module):
    """Two conv-BN-ReLU-maxpool blocks and a two-layer head, sized for 28x28 to 32x32 images.

    At width 12 (155k parameters on 28x28) it reached 90.9% test accuracy on Fashion-MNIST
    with :data:`DEFAULT_RECIPES`' recipe (4 epochs, seed 0, ``audit train``; 91.0% in a
    trial of the same recipe outside the toolkit), about 25-45 s an epoch on one core;
    ``smallcnn`` pools to 2x2 and reached 87.2% after 2 epochs there (issue 22).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 12):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2)]

        # 28x28 comes out of the two blocks at 7x7; the adaptive pool fits 32x32 (8x8) to the same head.
        self.features = nn.Sequential(*block(in_channels, w), *block(w, 2 * w), nn.AdaptiveAvgPool2d(7))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 49, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


#: The architecture and training recipe ``audit train`` uses for a data set when none is given
#: (``TrainConfig`` fields). Fashion-MNIST's reached 90.9% test accuracy (seed 0, measured).
DEFAULT_RECIPES: dict[str, tuple[str, dict]] = {
    "digits": ("smallcnn", {"epochs": 20, "batch_size": 64, "lr": 1e-3}),
    "fashion-mnist": ("convnet", {"epochs": 4, "batch_size": 256, "lr": 3e-3, "lr_schedule": "cosine"}),
    "mnist": ("convnet", {"epochs": 4, "batch_size": 256, "lr": 3e-3, "lr_schedule": "cosine"}),
}


def default_recipe(data_spec: str) -> tuple[str, dict]:
    """(architecture, recipe fields) for ``data_spec`` (its kind before any ``:``); digits' for other data."""
    kind = (data_spec or "digits").partition(":")[0].lower().split("-split")[0]
    return DEFAULT_RECIPES.get(kind, DEFAULT_RECIPES["digits"])


class _RepeatChannels(nn.Module):
    """Feeds a grey image to a torchvision model built for three channels."""

    def __init__(self, net: nn.Module, times: int):
        super().__init__()
        self.net = net
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.repeat(1, self.times, 1, 1))


def _resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _torchvision(name: str, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise InputError(f"unknown architecture {name!r}{_closest_architecture(name)}: use smallcnn, convnet, "
                         "resnet18, a torchvision classification model name or your own package.module:factory "
                         "(docs/own-model.md)") from None
    net = builder(weights=None, num_classes=num_classes)
    return _RepeatChannels(net, 3) if in_channels == 1 else net


def _closest_architecture(name: str) -> str:
    """The "did you mean" of a near miss: a factory written with a dot for the colon
    (mymodel.TinyNet), or a misspelt built-in or torchvision name; "" when nothing is near."""
    import torchvision.models as tvm

    module, dot, attr = name.rpartition(".")
    if dot and module and attr.isidentifier() and all(p.isidentifier() for p in module.split(".")):
        return f"; did you mean {module}:{attr} (your own factory, written package.module:factory)?"
    known = ["smallcnn", "convnet", "resnet18", *tvm.list_models(module=tvm)]
    near = closest(name, known, cutoff=0.7)
    return f"; did you mean {near}?" if near else ""


def build_network(arch: str, in_channels: int, num_classes: int, arch_args: dict | None = None) -> nn.Module:
    """The bare network (no normalisation), freshly initialised from torch's global RNG."""
    args = dict(arch_args or {})
    if arch == "smallcnn":
        return SmallCNN(in_channels, num_classes, width=int(args.get("width", 16)),
                        batch_norm=bool(args.get("batch_norm", True)))
    if arch == "convnet":
        return ConvNet(in_channels, num_classes, width=int(args.get("width", 12)))
    if arch == "resnet18":
        return _resnet18(in_channels, num_classes)
    return _torchvision(arch, in_channels, num_classes)


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    mean: list[float],
    std: list[float],
    arch_args: dict | None = None,
    seed: int | None = None,
) -> Classifier:
    """A :class:`Classifier`; with ``seed`` the initial weights are reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    return Classifier(build_network(arch, in_channels, num_classes, arch_args), mean, std)


def check_forward(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, arch: str) -> None:
    """A trial forward pass on two blank images, so that an architecture that cannot take
    this input (a ViT's fixed patch grid on 8x8 digits, pooling past 1x1) is refused
    before training starts rather than failing in its first step."""
    was_training = model.training
    model.eval()  # no batch-norm statistics move, no dropout draws from the RNG
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        text = " ".join(str(exc).split())[:160]
        raise InputError(f"--arch {arch} cannot take {'x'.join(map(str, input_shape))} inputs ({text}); "
                         "use smallcnn or resnet18, or resize the images to what this architecture expects") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, num_classes):
        raise InputError(f"--arch {arch} outputs shape {tuple(out.shape)[1:]} per image, not {num_classes} class "
                         "scores; use a classification architecture")
