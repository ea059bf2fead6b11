"""mmsegmentation victims: every listed model builds from its shipped config and runs forward + backward at
256x512 with the output at the label's resolution; the wrapper's normalisation / BGR handling; strict and
safe checkpoint loading; the mmcv-lite compatibility module."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.tasks.base import TASKS
from advlab.victims.base import VICTIMS, load_victim_weights
from advlab.victims.mmseg import MMSEG_MODELS, load_mmseg_config

CITY = DataInfo(19, (3, 256, 512), [f"c{i}" for i in range(19)], (0.5,) * 3, (0.25,) * 3)
NARROW = {"model.backbone.channels": 8, "model.backbone.ppm_channels": 16, "model.decode_head.in_channels": 32,
          "model.decode_head.channels": 16}  # fmt: skip


def build(name: str, info: DataInfo = CITY, **kw):
    builder = VICTIMS.build(VICTIMS.parse({"name": name, **kw}))
    return builder, builder.build(info, info.num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MMSEG_MODELS))
def test_every_listed_mmseg_victim_builds_and_backpropagates_at_256x512(name):
    _, victim = build(name, init_weights=False)
    victim.eval().requires_grad_(False)
    x = torch.rand(1, 3, 256, 512, requires_grad=True)
    out = victim(x)
    y = torch.randint(0, 19, (1, 256, 512))
    y[:, :10] = 255
    assert out.shape == (1, 19, 256, 512)  # the logits are at the label's resolution
    task = TASKS.build(TASKS.parse({"name": "segmentation"}), CITY)
    task.attack_loss(out, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert not any(type(m).__name__ == "SyncBatchNorm" for m in victim.modules())


def test_wrapper_owns_mmseg_normalisation_and_channel_order():
    info = DataInfo(5, (3, 32, 64), [str(i) for i in range(5)], (0.5,) * 3, (0.25,) * 3)
    _, rgb = build("pidnet_s", info, cfg_options=NARROW)
    _, bgr = build("pidnet_s", info, cfg_options={**NARROW, "model.data_preprocessor.bgr_to_rgb": False})
    bgr.load_state_dict(rgb.state_dict())
    rgb.eval(), bgr.eval()
    cfg = load_mmseg_config(MMSEG_MODELS["pidnet_s"])
    mean = torch.tensor(cfg.model.data_preprocessor.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.data_preprocessor.std).view(1, 3, 1, 1)
    seen = []
    for v in (rgb, bgr):
        v.net.backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        out = rgb(x)
        bgr(x)
    assert out.shape == (2, 5, 32, 64)
    by_hand = (
        x * 255 - mean
    ) / std  # mmseg's convention: RGB in 0-255, normalised with the config's mean/std
    torch.testing.assert_close(seen[0], by_hand, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(seen[1], (x.flip(1) * 255 - mean) / std, rtol=1e-5, atol=1e-4)  # BGR model
    assert not rgb.bgr_input and bgr.bgr_input


def test_training_mode_uses_pidnet_main_branch():
    info = DataInfo(5, (3, 32, 32), [str(i) for i in range(5)], (0.5,) * 3, (0.25,) * 3)
    _, victim = build("pidnet_s", info, cfg_options=NARROW)
    victim.train()
    out = victim(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 5, 32, 32)


class Opaque:  # a class outside the allow-list (a stand-in for arbitrary pickled objects)
    def __init__(self):
        self.value = 3


@pytest.fixture(scope="module")
def small_victim():
    info = DataInfo(5, (3, 32, 32), [str(i) for i in range(5)], (0.5,) * 3, (0.25,) * 3)
    return build("pidnet_s", info, cfg_options=NARROW)


def test_checkpoint_with_missing_or_unexpected_keys_names_them(small_victim, tmp_path):
    builder, victim = small_victim
    state = {k: v.clone() for k, v in victim.net.state_dict().items()}
    dropped = "decode_head.i_head.conv.conv.weight"
    assert dropped in state
    del state[dropped]
    state["decode_head.extra_layer.weight"] = torch.zeros(3)
    path = tmp_path / "zoo.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    assert f"net.{dropped}" in str(err.value) and "net.decode_head.extra_layer.weight" in str(err.value)


def test_zoo_style_checkpoint_loads_safely_with_the_allow_list(small_victim, tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    builder, victim = small_victim
    hist = HistoryBuffer()
    hist.update(0.5)
    meta = {"seed": np.int64(3), "lr": np.float64(0.01), "arr": np.arange(3), "hub": {"loss": hist}}
    state = {k: v + 1 if v.is_floating_point() else v for k, v in victim.net.state_dict().items()}
    path = tmp_path / "zoo.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    loaded = builder.load_checkpoint(str(path))  # weights_only=True + allow-list, no opt-in needed
    load_victim_weights(victim, loaded, str(path))
    key = "decode_head.i_head.conv.conv.weight"
    torch.testing.assert_close(victim.net.state_dict()[key], state[key])


def test_unlisted_pickled_objects_need_an_explicit_opt_in(tmp_path):
    path = tmp_path / "opaque.pth"
    torch.save({"meta": {"thing": Opaque()}, "state_dict": {"w": torch.zeros(2)}}, path)
    safe = VICTIMS.build(VICTIMS.parse({"name": "pidnet_s"}))
    with pytest.raises(CheckpointError, match="trusted_checkpoint=true") as err:
        safe.load_checkpoint(str(path))
    assert "Opaque" in str(err.value)
    trusted = VICTIMS.build(VICTIMS.parse({"name": "pidnet_s", "trusted_checkpoint": True}))
    assert set(trusted.load_checkpoint(str(path))) == {"w"}


def test_missing_checkpoint_file_is_a_clear_error():
    builder = VICTIMS.build(VICTIMS.parse({"name": "bisenetv2"}))
    with pytest.raises(CheckpointError, match="does not exist"):
        builder.load_checkpoint("/nonexistent/bisenetv2.pth")


def test_mmcv_compat_stand_in_only_when_compiled_ops_are_missing(monkeypatch):
    import importlib

    from advlab.victims.mmcv_compat import ensure_mmcv_ops

    real = ensure_mmcv_ops()
    importlib.import_module("mmseg.models")  # mmseg imports mmcv.ops at import time: works either way
    ops = sys.modules["mmcv.ops"]
    if real:  # a full mmcv install: the real ops are used untouched
        assert not hasattr(ops, "__advlab__")
        return
    with pytest.raises(ModuleNotFoundError):
        ops.nms  # noqa: B018
    with pytest.raises(AttributeError):
        ops.__wrapped__  # noqa: B018
    with pytest.raises(RuntimeError, match="compiled ops"):
        ops.sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
    grid = torch.rand(1, 5, 2)
    assert ops.point_sample(torch.rand(1, 3, 8, 8), grid).shape == (1, 3, 5)
    # with a real mmcv.ops module imported, the compat layer leaves it alone
    monkeypatch.setitem(sys.modules, "mmcv.ops", types.ModuleType("mmcv.ops"))
    assert ensure_mmcv_ops() is True
