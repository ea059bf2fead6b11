"""Builders for the PAT tests: state_dicts in the PAT authors' published layouts (by key name and shape, from
the architectures), and their forward passes written with ``torch.nn.functional`` -- independent of advlab's
modules, so a loader is checked against the authors' network, not against itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from advlab.data.info import DataInfo

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # robustness CIFAR
IN100_MEAN, IN100_STD = (0.4717, 0.4499, 0.3837), (0.2600, 0.2516, 0.2575)  # robustness CustomImageNet
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def small_info(size: int, classes: int = 10) -> DataInfo:
    return DataInfo(classes, (3, size, size), [str(i) for i in range(classes)], (0.5,) * 3, (0.25,) * 3)


def _bn(prefix: str, c: int, g: torch.Generator) -> dict:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.randn(c, generator=g),
        f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_var": 1 + torch.rand(c, generator=g),
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def _conv(shape, g):
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5


def resnet50_keys(cifar: bool, classes: int, seed: int = 0) -> dict:
    """A ResNet-50 state_dict by name: robustness ``cifar_models`` naming (``shortcut``, ``linear``, 3x3 stem)
    when ``cifar``, torchvision naming (``downsample``, ``fc``, 7x7 stem) otherwise."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": _conv((64, 3, 3, 3) if cifar else (64, 3, 7, 7), g), **_bn("bn1", 64, g)}
    inp = 64
    short = "shortcut" if cifar else "downsample"
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            sd[f"{p}.conv1.weight"] = _conv((planes, inp, 1, 1), g)
            sd.update(_bn(f"{p}.bn1", planes, g))
            sd[f"{p}.conv2.weight"] = _conv((planes, planes, 3, 3), g)
            sd.update(_bn(f"{p}.bn2", planes, g))
            sd[f"{p}.conv3.weight"] = _conv((4 * planes, planes, 1, 1), g) * 0.2
            sd.update(_bn(f"{p}.bn3", 4 * planes, g))
            if b == 0:
                sd[f"{p}.{short}.0.weight"] = _conv((4 * planes, inp, 1, 1), g)
                sd.update(_bn(f"{p}.{short}.1", 4 * planes, g))
            inp = 4 * planes
    head = "linear" if cifar else "fc"
    sd[f"{head}.weight"] = 0.05 * torch.randn(classes, 2048, generator=g)
    sd[f"{head}.bias"] = 0.05 * torch.randn(classes, generator=g)
    return sd


def resnet50_reference(sd: dict, x: torch.Tensor, cifar: bool, mean, std) -> torch.Tensor:
    """The authors' forward (robustness CIFAR ResNet / torchvision ResNet), written with functional ops."""

    def bn(h, p):
        return F.batch_norm(
            h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    h = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if cifar:
        h = F.relu(bn(F.conv2d(h, sd["conv1.weight"], padding=1), "bn1"))
    else:
        h = F.relu(bn(F.conv2d(h, sd["conv1.weight"], stride=2, padding=3), "bn1"))
        h = F.max_pool2d(h, 3, 2, 1)
    short = "shortcut" if cifar else "downsample"
    for li, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            stride = 2 if (b == 0 and li > 1) else 1
            out = F.relu(bn(F.conv2d(h, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            if b == 0:
                h = bn(F.conv2d(h, sd[f"{p}.{short}.0.weight"], stride=stride), f"{p}.{short}.1")
            h = F.relu(out + h)
    h = F.avg_pool2d(h, 4) if cifar else F.adaptive_avg_pool2d(h, 1)
    head = "linear" if cifar else "fc"
    return F.linear(h.flatten(1), sd[f"{head}.weight"], sd[f"{head}.bias"])


ALEX_CONVS = {0: (64, 3), 3: (192, 64), 6: (384, 192), 8: (256, 384), 10: (256, 256)}


def alexnet_cifar_keys(size: int, hidden: int, classes: int = 10, seed: int = 0) -> dict:
    """``CifarAlexNet`` by name (``features.{0,3,6,8,10}``, ``classifier.{1,4,6}``); ``hidden`` replaces the
    authors' 4096 to keep the fixture small (the keys are the same)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (cout, cin) in ALEX_CONVS.items():
        sd[f"features.{i}.weight"] = _conv((cout, cin, 3, 3), g)
        sd[f"features.{i}.bias"] = 0.01 * torch.randn(cout, generator=g)
    s = ((size - 1) // 2 + 1) // 8
    for i, (cout, cin) in {1: (hidden, 256 * s * s), 4: (hidden, hidden), 6: (classes, hidden)}.items():
        sd[f"classifier.{i}.weight"] = torch.randn(cout, cin, generator=g) * (2.0 / cin) ** 0.5
        sd[f"classifier.{i}.bias"] = 0.01 * torch.randn(cout, generator=g)
    return sd


def alexnet_feature_model_layout(sd: dict) -> dict:
    """``AlexNetFeatureModel(CifarAlexNet()).state_dict()``: the network under ``model.``, and its trunk again
    under ``layer1 = Sequential(features[:2])`` ... ``layer5 = Sequential(features[10:12])`` (same tensors)."""
    out = {f"model.{k}": v for k, v in sd.items()}
    for layer, conv in zip(range(1, 6), (0, 3, 6, 8, 10)):
        for p in ("weight", "bias"):
            out[f"layer{layer}.0.{conv}.{p}"] = sd[f"features.{conv}.{p}"]
    return out


def alexnet_features_reference(sd: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """The five ReLU outputs of the authors' trunk on ImageNet-normalised inputs."""
    h = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    outs = []
    for i in (0, 3, 6, 8, 10):
        if i in (3, 6):
            h = F.max_pool2d(h, 2)
        h = F.relu(
            F.conv2d(
                h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride=2 if i == 0 else 1, padding=1
            )
        )
        outs.append(h)
    return outs


def alexnet_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    h = F.max_pool2d(alexnet_features_reference(sd, x)[-1], 2).flatten(1)
    h = F.relu(F.linear(h, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    h = F.relu(F.linear(h, sd["classifier.4.weight"], sd["classifier.4.bias"]))
    return F.linear(h, sd["classifier.6.weight"], sd["classifier.6.bias"])
