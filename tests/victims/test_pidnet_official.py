"""PIDNet-S/M/L from the authors' released Cityscapes files: a fixture in the published layout (the state_dict of
PIDNet's training wrapper FullModel: the network under ``model.``, with the P and D training heads, and the
loss's class-weight buffer ``sem_loss.criterion.weight``), every network key consumed with its shape, the loss
buffer ignored, anything else refused; the output is the I branch resized to the input, with gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.base import VICTIMS, load_victim_weights

CITY = DataInfo(19, (3, 64, 128), [f"c{i}" for i in range(19)], (0.5,) * 3, (0.25,) * 3)
#: the official get_seg_model settings: (m, n, planes, ppm_planes, head_planes)
OFFICIAL = {"s": (2, 3, 32, 96, 128), "m": (2, 3, 64, 96, 128), "l": (3, 4, 64, 112, 256)}


# --- the released key layout, written from the official models/pidnet.py + model_utils.py ------------------
def _conv(k: str, cout: int, cin: int, size: int, bias: bool = False) -> dict:
    return {f"{k}.weight": (cout, cin, size, size), **({f"{k}.bias": (cout,)} if bias else {})}


def _bn(k: str, c: int) -> dict:
    return {f"{k}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{k}.num_batches_tracked": ()
    }


def _block(k: str, kind: str, cin: int, planes: int, down: bool) -> dict:
    out = planes * (2 if kind == "bottleneck" else 1)
    if kind == "basic":
        keys = _conv(f"{k}.conv1", planes, cin, 3) | _bn(f"{k}.bn1", planes)
        keys |= _conv(f"{k}.conv2", planes, planes, 3) | _bn(f"{k}.bn2", planes)
    else:
        keys = _conv(f"{k}.conv1", planes, cin, 1) | _bn(f"{k}.bn1", planes)
        keys |= _conv(f"{k}.conv2", planes, planes, 3) | _bn(f"{k}.bn2", planes)
        keys |= _conv(f"{k}.conv3", out, planes, 1) | _bn(f"{k}.bn3", out)
    if down:
        keys |= _conv(f"{k}.downsample.0", out, cin, 1) | _bn(f"{k}.downsample.1", out)
    return keys


def _layer(k: str, kind: str, cin: int, planes: int, blocks: int, stride: int = 1) -> dict:
    out = planes * (2 if kind == "bottleneck" else 1)
    keys = _block(f"{k}.0", kind, cin, planes, stride != 1 or cin != out)
    for i in range(1, blocks):
        keys |= _block(f"{k}.{i}", kind, out, planes, False)
    return keys


def _head(k: str, cin: int, mid: int, cout: int) -> dict:
    return (
        _bn(f"{k}.bn1", cin)
        | _conv(f"{k}.conv1", mid, cin, 3)
        | _bn(f"{k}.bn2", mid)
        | _conv(f"{k}.conv2", cout, mid, 1, bias=True)
    )


def _ppm(k: str, cin: int, b: int, cout: int, parallel: bool) -> dict:
    keys = {}
    for i in (1, 2, 3, 4):  # pooling, BN, ReLU, conv
        keys |= _bn(f"{k}.scale{i}.1", cin) | _conv(f"{k}.scale{i}.3", b, cin, 1)
    keys |= _bn(f"{k}.scale0.0", cin) | _conv(f"{k}.scale0.2", b, cin, 1)
    if parallel:  # PAPPM: one grouped 3x3 conv (4 groups) over the four pooled scales
        keys |= _bn(f"{k}.scale_process.0", 4 * b) | {f"{k}.scale_process.2.weight": (4 * b, b, 3, 3)}
    else:  # DAPPM
        for i in (1, 2, 3, 4):
            keys |= _bn(f"{k}.process{i}.0", b) | _conv(f"{k}.process{i}.2", b, b, 3)
    keys |= _bn(f"{k}.compression.0", 5 * b) | _conv(f"{k}.compression.2", cout, 5 * b, 1)
    return keys | _bn(f"{k}.shortcut.0", cin) | _conv(f"{k}.shortcut.2", cout, cin, 1)


def released_layout(variant: str, classes: int = 19) -> dict[str, tuple]:
    m, n, p, ppm, head = OFFICIAL[variant]
    k = (
        _conv("conv1.0", p, 3, 3, True)
        | _bn("conv1.1", p)
        | _conv("conv1.3", p, p, 3, True)
        | _bn("conv1.4", p)
    )
    k |= _layer("layer1", "basic", p, p, m) | _layer("layer2", "basic", p, 2 * p, m, 2)
    k |= _layer("layer3", "basic", 2 * p, 4 * p, n, 2) | _layer("layer4", "basic", 4 * p, 8 * p, n, 2)
    k |= _layer("layer5", "bottleneck", 8 * p, 8 * p, 2, 2)
    k |= _conv("compression3.0", 2 * p, 4 * p, 1) | _bn("compression3.1", 2 * p)
    k |= _conv("compression4.0", 2 * p, 8 * p, 1) | _bn("compression4.1", 2 * p)
    for pag in ("pag3", "pag4"):
        k |= _conv(f"{pag}.f_x.0", p, 2 * p, 1) | _bn(f"{pag}.f_x.1", p)
        k |= _conv(f"{pag}.f_y.0", p, 2 * p, 1) | _bn(f"{pag}.f_y.1", p)
    k |= _layer("layer3_", "basic", 2 * p, 2 * p, m) | _layer("layer4_", "basic", 2 * p, 2 * p, m)
    k |= _layer("layer5_", "bottleneck", 2 * p, 2 * p, 1)
    if m == 2:
        k |= _block("layer3_d", "basic", 2 * p, p, True) | _layer("layer4_d", "bottleneck", p, p, 1)
        k |= _conv("diff3.0", p, 4 * p, 3) | _bn("diff3.1", p)
        k |= _ppm("spp", 16 * p, ppm, 4 * p, parallel=True)
        k |= _conv("dfm.conv_p.0", 4 * p, 4 * p, 1) | _bn("dfm.conv_p.1", 4 * p)
        k |= _conv("dfm.conv_i.0", 4 * p, 4 * p, 1) | _bn("dfm.conv_i.1", 4 * p)
    else:
        k |= _block("layer3_d", "basic", 2 * p, 2 * p, False) | _block(
            "layer4_d", "basic", 2 * p, 2 * p, False
        )
        k |= _conv("diff3.0", 2 * p, 4 * p, 3) | _bn("diff3.1", 2 * p)
        k |= _ppm("spp", 16 * p, ppm, 4 * p, parallel=False)
        k |= _bn("dfm.conv.0", 4 * p) | _conv("dfm.conv.2", 4 * p, 4 * p, 3)
    k |= _conv("diff4.0", 2 * p, 8 * p, 3) | _bn("diff4.1", 2 * p)
    k |= _layer("layer5_d", "bottleneck", 2 * p, 2 * p, 1)
    k |= _head("seghead_p", 2 * p, head, classes) | _head("seghead_d", 2 * p, p, 1)
    k |= _head("final_layer", 4 * p, head, classes)
    out = {f"model.{key}": shape for key, shape in k.items()}
    out["sem_loss.criterion.weight"] = (classes,)  # OhemCrossEntropy's class weights (a buffer of FullModel)
    return out


def released_file(variant: str, path, wrap: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in released_layout(variant).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    torch.save({"state_dict": state} if wrap else state, path)
    return state


def build(name: str):
    builder = VICTIMS.build(VICTIMS.parse({"name": name}))
    return builder, builder.build(CITY, 19)


@pytest.mark.parametrize("variant", ["m", "l"])
def test_network_keys_and_shapes_are_those_of_the_released_file(variant):
    _, victim = build(f"pidnet_{variant}_official")
    ours = {k: tuple(v.shape) for k, v in victim.net.state_dict().items()}
    layout = {k[len("model.") :]: s for k, s in released_layout(variant).items() if k.startswith("model.")}
    assert ours == layout


@pytest.mark.parametrize("wrap", [False, True])
def test_released_pidnet_s_file_loads_every_key_and_backpropagates(tmp_path, wrap):
    path = tmp_path / "PIDNet_S_Cityscapes_test.pt"
    state = released_file("s", path, wrap)
    builder, victim = build("pidnet_s_official")
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    loaded = victim.net.state_dict()
    network = {k for k in state if k.startswith("model.")}
    assert {f"model.{k}" for k in loaded} == network  # every network key consumed; only the loss buffer left
    assert all(torch.equal(loaded[k[len("model.") :]], state[k]) for k in network)
    victim.eval().requires_grad_(False)
    x = torch.rand(2, 3, 64, 128, requires_grad=True)
    out = victim(x)
    assert out.shape == (2, 19, 64, 128)  # the I branch (1/8) resized to the input
    z = (x.detach() - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    low = victim.net(z)
    assert low.shape == (2, 19, 8, 16)  # PIDNet's own ImageNet normalisation inside the wrapper
    torch.testing.assert_close(out.detach(), torch.nn.functional.interpolate(low, (64, 128), mode="bilinear"))
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_files_not_in_the_released_layout_are_refused(tmp_path):
    builder, victim = build("pidnet_s_official")
    bad = tmp_path / "other.pt"
    torch.save({"backbone.conv.weight": torch.zeros(1), "model.conv1.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="backbone.conv.weight"):
        builder.load_checkpoint(str(bad))
    wrong = tmp_path / "PIDNet_S_Cityscapes_test.pt"
    state = released_file("s", wrong)
    state["model.final_layer.conv2.bias"] = torch.zeros(11)
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="final_layer.conv2.bias"):
        load_victim_weights(victim, builder.load_checkpoint(str(wrong)), str(wrong))


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_official_pidnet_victims_compose(variant):
    cfg = make_cfg(f"victim=pidnet_{variant}_official")
    params = VICTIMS.parse(cfg.victim)
    assert params.name == f"pidnet_{variant}_official" and params.variant == variant
