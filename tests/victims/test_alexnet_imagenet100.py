"""victim=alexnet: torchvision's ImageNet AlexNet with a new head, the PAT paper's ImageNet-100 relative-mCE
baseline (fine-tuned by experiment=alexnet_imagenet100 and used by the ImageNet-100 presets)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims import VICTIMS

# torchvision's alexnet-owt-7be5be79.pth: (key, shape) of every entry, as torchvision publishes it
TORCHVISION_ALEXNET = {
    "features.0": (64, 3, 11, 11),
    "features.3": (192, 64, 5, 5),
    "features.6": (384, 192, 3, 3),
    "features.8": (256, 384, 3, 3),
    "features.10": (256, 256, 3, 3),
    "classifier.1": (4096, 9216),
    "classifier.4": (4096, 4096),
    "classifier.6": (1000, 4096),
}


def _info(size: int, classes: int = 100) -> DataInfo:
    return DataInfo(classes, (3, size, size), [str(i) for i in range(classes)], (0.5,) * 3, (0.25,) * 3)


def test_alexnet_fine_tunes_from_the_torchvision_file_with_a_new_head(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in TORCHVISION_ALEXNET.items():
        n = torch.Size(shape).numel()
        if name.startswith("features"):
            state[f"{name}.weight"] = torch.randn(shape, generator=g) * 0.01
        else:  # 57M entries: a cheap deterministic pattern instead of random numbers (the shapes are what matter)
            state[f"{name}.weight"] = (
                torch.arange(n, dtype=torch.float32).remainder_(7).sub_(3).mul_(1e-3).view(shape)
            )
        state[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.01
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    builder = VICTIMS.build(VICTIMS.parse({"name": "alexnet", "pretrained": str(path)}))
    victim = builder.build(_info(64), 100).eval()
    net = victim.net
    assert net.classifier[6].weight.shape == (100, 4096)  # the 1000-class head replaced
    assert not torch.equal(net.classifier[6].weight[:100], state["classifier.6.weight"][:100])
    x = torch.rand(2, 3, 64, 64)
    # the trunk and the two hidden layers are the file's: AlexNet's forward written here from its tensors
    h = (x - 0.5) / 0.25
    for i, pool in ((0, True), (3, True), (6, False), (8, False), (10, True)):
        stride, pad = (4, 2) if i == 0 else (1, 2 if i == 3 else 1)
        h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], stride, pad))
        h = F.max_pool2d(h, 3, 2) if pool else h
    h = F.adaptive_avg_pool2d(h, 6).flatten(1)
    h = F.relu(F.linear(h, state["classifier.1.weight"], state["classifier.1.bias"]))
    h = F.relu(F.linear(h, state["classifier.4.weight"], state["classifier.4.bias"]))
    expected = F.linear(h, net.classifier[6].weight, net.classifier[6].bias)
    with torch.no_grad():
        assert torch.allclose(victim(x), expected, atol=1e-5)


def test_alexnet_needs_images_of_at_least_63_px():
    builder = VICTIMS.build(VICTIMS.parse({"name": "alexnet"}))
    with pytest.raises(ConfigError, match="alexnet_cifar"):
        builder.build(_info(32), 100)
    assert builder.build(_info(63), 100)(torch.rand(1, 3, 63, 63)).shape == (1, 100)


def test_the_imagenet100_presets_normalise_mce_by_the_fine_tuned_alexnet():
    from conftest import make_cfg
    from omegaconf import OmegaConf

    own = make_cfg("experiment=alexnet_imagenet100")
    assert own.victim.name == "alexnet" and own.dataset.name == "imagenet100"
    for preset in ("pat_imagenet100_union_eval", "pat_imagenet100_released_eval"):
        cfg = make_cfg(f"experiment={preset}")
        assert cfg.pipeline.baseline.model == "alexnet"
        baseline = OmegaConf.to_container(cfg.pipeline.baselines.alexnet, resolve=True)
        assert baseline["victim"]["name"] == "alexnet"
        assert baseline["victim"]["pretrained"] == own.victim.pretrained  # the same torchvision file
        assert {k: baseline["train"][k] for k in ("epochs", "lr", "milestones")} == {
            "epochs": own.train.epochs, "lr": own.train.lr, "milestones": list(own.train.milestones)
        }  # fmt: skip
