"""ICNet-R50 in the layout of the EOT patch paper's checkpoint: a ``{'model_state_dict': ...}`` training
checkpoint whose network is a torchvision ResNet-50 (``pretrained.*``, with its ImageNet classifier), the
sub-1 stem and the cascade-fusion head; every key consumed with its shape, full-resolution logits, gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.base import VICTIMS, load_victim_weights

CITY = DataInfo(19, (3, 128, 256), [f"c{i}" for i in range(19)], (0.5,) * 3, (0.25,) * 3)


def conv(k, cout, cin, s, bias=False):
    return {f"{k}.weight": (cout, cin, s, s), **({f"{k}.bias": (cout,)} if bias else {})}


def bn(k, c):
    return {f"{k}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{k}.num_batches_tracked": ()
    }


def released_layout(n: int = 19) -> dict[str, tuple]:
    k = conv("pretrained.conv1", 64, 3, 7) | bn("pretrained.bn1", 64)
    cin = 64
    for i, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):  # torchvision R50
        for j in range(blocks):
            b = f"pretrained.layer{i}.{j}"
            k |= conv(f"{b}.conv1", width, cin, 1) | bn(f"{b}.bn1", width)
            k |= conv(f"{b}.conv2", width, width, 3) | bn(f"{b}.bn2", width)
            k |= conv(f"{b}.conv3", 4 * width, width, 1) | bn(f"{b}.bn3", 4 * width)
            if j == 0:
                k |= conv(f"{b}.downsample.0", 4 * width, cin, 1) | bn(f"{b}.downsample.1", 4 * width)
            cin = 4 * width
    k |= {"pretrained.fc.weight": (1000, 2048), "pretrained.fc.bias": (1000,)}
    for i, (cout, c_in) in enumerate([(32, 3), (32, 32), (64, 32)]):
        k |= conv(f"conv_sub1.{i}.conv", cout, c_in, 3) | bn(f"conv_sub1.{i}.bn", cout)
    for name, low, high in (("cff_12", 128, 64), ("cff_24", 2048, 512)):
        h = f"head.{name}"
        k |= conv(f"{h}.conv_low.0", 128, low, 3) | bn(f"{h}.conv_low.1", 128)
        k |= conv(f"{h}.conv_high.0", 128, high, 1) | bn(f"{h}.conv_high.1", 128)
        k |= conv(f"{h}.conv_low_cls", n, 128, 1)
    return k | conv("head.conv_cls", n, 128, 1)


@pytest.mark.slow  # a full ResNet-50 fixture
def test_paper_checkpoint_loads_every_key_and_backpropagates(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in released_layout().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(10)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    path = tmp_path / "resnet50_2024-12-22 08:52:50 EST-0500_176_0.661.pth.tar"
    torch.save({"epoch": 176, "model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []}},
               path)  # fmt: skip
    builder = VICTIMS.build(VICTIMS.parse(make_cfg("victim=icnet_r50").victim))
    victim = builder.build(CITY, 19)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    loaded = victim.net.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    victim.eval().requires_grad_(False)
    x = torch.rand(1, 3, 128, 256, requires_grad=True)
    out = victim(x)
    assert out.shape == (1, 19, 128, 256)
    z = (x.detach() - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(out.detach(), victim.net(z))
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)  # not the paper's wrapper
    with pytest.raises(CheckpointError, match="model_state_dict"):
        builder.load_checkpoint(str(bare))
