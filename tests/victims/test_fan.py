"""FAN: the published 2DFAN-4 checkpoint layout (face-alignment's ``2DFAN4-11f355bf06.pth.tar``: a plain
state_dict of ``FAN(4)``), written key by key from the published module structure, is loaded with every key
consumed; the architecture's outputs and the small embedded variant."""

from __future__ import annotations

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import parse_config
from advlab.victims.base import load_victim_weights
from advlab.victims.fan import FAN, FANVictim


def bn(prefix: str, c: int, counters: bool) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,)}  # fmt: skip
    if counters:
        keys[f"{prefix}.num_batches_tracked"] = ()
    return keys


def conv_block(prefix: str, cin: int, cout: int, counters: bool) -> dict[str, tuple[int, ...]]:
    """face-alignment's ConvBlock(in_planes, out_planes): bn1 conv1 bn2 conv2 bn3 conv3 (+ downsample 0/2)."""
    h, q = cout // 2, cout // 4
    keys = {**bn(f"{prefix}.bn1", cin, counters), f"{prefix}.conv1.weight": (h, cin, 3, 3),
            **bn(f"{prefix}.bn2", h, counters), f"{prefix}.conv2.weight": (q, h, 3, 3),
            **bn(f"{prefix}.bn3", q, counters), f"{prefix}.conv3.weight": (q, q, 3, 3)}  # fmt: skip
    if cin != cout:
        keys.update(bn(f"{prefix}.downsample.0", cin, counters))
        keys[f"{prefix}.downsample.2.weight"] = (cout, cin, 1, 1)
    return keys


def published_2dfan4_layout(counters: bool = False, stacks: int = 4) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the released 2DFAN-4 file, from face-alignment's ``FAN(num_modules=4)``: the stem, then per
    stack ``m<i>`` = HourGlass(1, 4, 256) (``_generate_network``: b1_<l>, b2_<l>, recursion or b2_plus_1, b3_<l>),
    ``top_m_<i>``, ``conv_last<i>``, ``bn_end<i>``, ``l<i>`` and, between stacks, ``bl<i>`` / ``al<i>``."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,)}
    keys.update(bn("bn1", 64, counters))
    keys.update(conv_block("conv2", 64, 128, counters))
    keys.update(conv_block("conv3", 128, 128, counters))
    keys.update(conv_block("conv4", 128, 256, counters))
    for i in range(stacks):
        for level in (4, 3, 2, 1):
            for name in ("b1", "b2", "b3"):
                keys.update(conv_block(f"m{i}.{name}_{level}", 256, 256, counters))
        keys.update(conv_block(f"m{i}.b2_plus_1", 256, 256, counters))
        keys.update(conv_block(f"top_m_{i}", 256, 256, counters))
        keys[f"conv_last{i}.weight"], keys[f"conv_last{i}.bias"] = (256, 256, 1, 1), (256,)
        keys.update(bn(f"bn_end{i}", 256, counters))
        keys[f"l{i}.weight"], keys[f"l{i}.bias"] = (68, 256, 1, 1), (68,)
        if i < stacks - 1:
            keys[f"bl{i}.weight"], keys[f"bl{i}.bias"] = (256, 256, 1, 1), (256,)
            keys[f"al{i}.weight"], keys[f"al{i}.bias"] = (256, 68, 1, 1), (256,)
    return keys


def write_fixture(path, layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    state = {}
    for i, (k, shape) in enumerate(layout.items()):  # a distinct value per tensor: a swap would show
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        else:
            state[k] = torch.full(shape, 1.0 + i * 1e-3)
    torch.save(state, path)
    return state


def fan_victim(**kw) -> FANVictim:
    return FANVictim(parse_config(FANVictim.Config, {"name": "fan", **kw}, "victim"))


INFO = DataInfo(68, (3, 112, 112), [], (0.0,) * 3, (1.0,) * 3)


def test_published_2dfan4_layout_loads_with_every_key_consumed(tmp_path):
    path = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    state = write_fixture(path, published_2dfan4_layout(counters=False))
    builder = fan_victim()
    weights = builder.load_checkpoint(str(path))
    assert set(weights) - set(state) == {k for k in weights if k.endswith("num_batches_tracked")}
    with torch.device("meta"):
        net = builder.build_net(INFO, 68)
    net.load_state_dict(weights, strict=True, assign=True)  # strict: no key left over, none missing
    own = net.state_dict()
    for k, v in state.items():  # every published tensor landed in the network under its own name
        assert torch.equal(own[k], v), k
    # the counters of a newer file are read too
    path2 = tmp_path / "with_counters.pth.tar"
    state2 = write_fixture(path2, published_2dfan4_layout(counters=True))
    assert torch.equal(builder.load_checkpoint(str(path2))["m3.b2_plus_1.bn1.num_batches_tracked"],
                       state2["m3.b2_plus_1.bn1.num_batches_tracked"])  # fmt: skip


def test_fan_checkpoint_errors_name_the_problem(tmp_path):
    layout = published_2dfan4_layout(stacks=1)  # the 1-stack layout (2DFAN-1), small and fast to write
    one = write_fixture(tmp_path / "one.pth", layout)
    assert "l0.weight" in fan_victim(num_modules=1).load_checkpoint(str(tmp_path / "one.pth"))
    missing = dict(layout)
    del missing["l0.bias"]
    write_fixture(tmp_path / "missing.pth", missing)
    with pytest.raises(CheckpointError, match="l0.bias"):
        fan_victim(num_modules=1).load_checkpoint(str(tmp_path / "missing.pth"))
    extra = {**layout, "fc.weight": (2, 2)}
    write_fixture(tmp_path / "extra.pth", extra)
    with pytest.raises(CheckpointError, match="fc.weight"):
        fan_victim(num_modules=1).load_checkpoint(str(tmp_path / "extra.pth"))
    victim = fan_victim(num_modules=1).build(INFO, 68)  # through the victim wrapper (net. prefix, mean/std)
    load_victim_weights(
        victim, fan_victim(num_modules=1).load_checkpoint(str(tmp_path / "one.pth")), "one.pth"
    )
    assert torch.equal(victim.net.l0.bias.detach(), one["l0.bias"])
    assert torch.equal(victim.net.m0.b2_plus_1.conv3.weight.detach(), one["m0.b2_plus_1.conv3.weight"])
    with pytest.raises(CheckpointError, match="num_modules=4"):  # a 1-stack file for the 4-stack 2DFAN-4
        fan_victim().load_checkpoint(str(tmp_path / "one.pth"))
    with pytest.raises(CheckpointError, match="2DFAN4-11f355bf06"):
        fan_victim().load_checkpoint(str(tmp_path / "absent.pth.tar"))


def test_fan_outputs_one_heatmap_per_landmark_per_stack():
    net = FAN(num_modules=2, features=32, hg_depth=2, stem_stride=2, input_size=64).eval()
    x = torch.rand(2, 3, 40, 40)  # resized to 64 inside: heatmaps at 64 / 4
    stacks = net.stacks(x)
    assert len(stacks) == 2 and stacks[-1].shape == (2, 68, 16, 16)
    assert torch.equal(net(x), stacks[-1])
    small = FAN(num_modules=1, features=32, hg_depth=2, stem_stride=1)
    assert small(torch.rand(1, 3, 32, 32)).shape == (1, 68, 16, 16)
    assert "m0.b2_plus_1.conv3.weight" in small.state_dict() and "bl0.weight" not in small.state_dict()
