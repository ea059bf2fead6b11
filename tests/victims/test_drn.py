"""DRN-D-22 (fyu/drn ``DRNSeg('drn_d_22', 19)``) loads a fixture written key by key in the layout of the released
``drn_d_22_cityscapes.pth`` (the keys and shapes follow ``drn.py`` / ``segment.py`` of the authors' repository,
enumerated here from that code, not from advlab's module): every key consumed, the values land where they
belong, the up-sampling is the fixed bilinear kernel, and the output is at the input resolution."""

from __future__ import annotations

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.base import VICTIMS, load_victim_weights

CITYSCAPES = DataInfo(19, (3, 64, 64), [f"c{i}" for i in range(19)], (0.5,) * 3, (0.25,) * 3)
CH = (16, 32, 64, 128, 256, 512, 512, 512)


def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}


def block(prefix: str, cin: int, cout: int, downsample: bool) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.conv1.weight": (cout, cin, 3, 3), **bn(f"{prefix}.bn1", cout)}
    keys |= {f"{prefix}.conv2.weight": (cout, cout, 3, 3), **bn(f"{prefix}.bn2", cout)}
    if downsample:
        keys |= {f"{prefix}.downsample.0.weight": (cout, cin, 1, 1), **bn(f"{prefix}.downsample.1", cout)}
    return keys


def published_layout(classes: int = 19) -> dict[str, tuple[int, ...]]:
    """``DRNSeg('drn_d_22', classes).state_dict()`` shapes as in fyu/drn (PyTorch < 0.4.1: no BN counters)."""
    keys = {"base.0.0.weight": (CH[0], 3, 7, 7), **bn("base.0.1", CH[0])}  # layer0
    keys |= {"base.1.0.weight": (CH[0], CH[0], 3, 3), **bn("base.1.1", CH[0])}  # layer1 (conv layers)
    keys |= {"base.2.0.weight": (CH[1], CH[0], 3, 3), **bn("base.2.1", CH[1])}  # layer2 (stride 2)
    for level, (cin, cout) in zip(
        (3, 4, 5, 6), ((CH[1], CH[2]), (CH[2], CH[3]), (CH[3], CH[4]), (CH[4], CH[5]))
    ):
        keys |= block(f"base.{level}.0", cin, cout, downsample=True)  # layers 3-6: 2 BasicBlocks each
        keys |= block(f"base.{level}.1", cout, cout, downsample=False)
    keys |= {"base.7.0.weight": (CH[6], CH[5], 3, 3), **bn("base.7.1", CH[6])}  # layer7 (dilation 2)
    keys |= {"base.8.0.weight": (CH[7], CH[6], 3, 3), **bn("base.8.1", CH[7])}  # layer8
    keys |= {"seg.weight": (classes, CH[7], 1, 1), "seg.bias": (classes,), "up.weight": (classes, 1, 16, 16)}
    return keys


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.05 for k, shape in published_layout().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    path = tmp_path_factory.mktemp("drn") / "drn_d_22_cityscapes.pth"
    torch.save(state, path)
    return path, state


def build():
    builder = VICTIMS.build(VICTIMS.parse({"name": "drn_d_22"}))
    return builder, builder.build(CITYSCAPES, 19)


def test_released_layout_loads_every_key(released):
    path, state = released
    builder, victim = build()
    loaded = builder.load_checkpoint(str(path))
    added = set(loaded) - set(state)
    assert added and all(k.endswith("num_batches_tracked") for k in added)  # the only keys not in the file
    load_victim_weights(victim, loaded, str(path))  # strict: every model key present, no key left over
    own = victim.state_dict()
    for k, v in state.items():
        assert torch.equal(own[f"net.{k}"], v), k
    assert torch.allclose(victim.mean.flatten(), torch.tensor([0.290101, 0.328081, 0.286964]))
    # DRN-D-22 has 16.4M parameters (fyu/drn README): the base plus the ImageNet classifier (1x1 conv 512 -> 1000)
    n = sum(p.numel() for p in victim.net.base.parameters())
    assert round((n + 512 * 1000 + 1000) / 1e6, 1) == 16.4
    with torch.no_grad():
        out = victim.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 19, 64, 64)


def test_fresh_up_sampling_is_the_bilinear_kernel_of_fill_up_weights():
    _, victim = build()
    w = victim.net.up.weight
    assert not w.requires_grad
    # fill_up_weights: f = ceil(16/2) = 8, c = (2f - 1 - f%2) / 2f = 15/16, w[i,j] = (1-|i/f-c|)(1-|j/f-c|)
    assert float(w[3, 0, 7, 7]) == pytest.approx((1 - abs(7 / 8 - 15 / 16)) ** 2)
    assert float(w[0, 0, 0, 15]) == pytest.approx((1 - 15 / 16) * (1 - abs(15 / 8 - 15 / 16)))


def test_training_checkpoint_with_dataparallel_prefix_loads(released, tmp_path):
    path, state = released
    wrapped = {"epoch": 250, "arch": "drn_d_22", "best_prec1": 68.0,
               "state_dict": {f"module.{k}": v for k, v in state.items()}}  # fmt: skip
    p = tmp_path / "checkpoint_250.pth.tar"
    torch.save(wrapped, p)
    builder, victim = build()
    load_victim_weights(victim, builder.load_checkpoint(str(p)), str(p))
    assert torch.equal(victim.state_dict()["net.seg.bias"], state["seg.bias"])


def test_foreign_or_missing_keys_are_refused(released, tmp_path):
    path, state = released
    builder, victim = build()
    bad = tmp_path / "bad.pth"
    torch.save({**state, "fc.weight": torch.zeros(1000, 512, 1, 1)}, bad)
    with pytest.raises(CheckpointError, match="fc.weight"):
        builder.load_checkpoint(str(bad))
    short = tmp_path / "short.pth"
    torch.save({k: v for k, v in state.items() if k != "seg.bias"}, short)
    with pytest.raises(CheckpointError, match="seg.bias"):
        load_victim_weights(victim, builder.load_checkpoint(str(short)), str(short))
