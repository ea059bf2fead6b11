"""BiSeNetV1/V2 in CoinCheung's layout from fixtures written like the released Cityscapes files (plain state_dicts
of the networks built with aux_mode='train': the training-time auxiliary heads included): every network key
consumed with its shape, the auxiliary heads ignored, logits at the input resolution, gradients to the input."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.data.info import DataInfo
from advlab.victims.base import VICTIMS, load_victim_weights

CITY = DataInfo(19, (3, 64, 128), [f"c{i}" for i in range(19)], (0.5,) * 3, (0.25,) * 3)


def conv(k, cout, cin, s, bias=False):
    return {f"{k}.weight": (cout, cin, s, s), **({f"{k}.bias": (cout,)} if bias else {})}


def bn(k, c):
    return {f"{k}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{k}.num_batches_tracked": ()
    }


def cbr(k, cout, cin, s):  # ConvBNReLU: conv / bn
    return conv(f"{k}.conv", cout, cin, s) | bn(f"{k}.bn", cout)


def v1_layout(n=19):
    k = conv("cp.resnet.conv1", 64, 3, 7) | bn("cp.resnet.bn1", 64)
    for i, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], start=1):
        for j, c_in in enumerate((cin, cout)):
            b = f"cp.resnet.layer{i}.{j}"
            k |= conv(f"{b}.conv1", cout, c_in, 3) | bn(f"{b}.bn1", cout)
            k |= conv(f"{b}.conv2", cout, cout, 3) | bn(f"{b}.bn2", cout)
            if j == 0 and i > 1:
                k |= conv(f"{b}.downsample.0", cout, cin, 1) | bn(f"{b}.downsample.1", cout)
    for name, cin in (("arm16", 256), ("arm32", 512)):
        k |= cbr(f"cp.{name}.conv", 128, cin, 3) | conv(f"cp.{name}.conv_atten", 128, 128, 1)
        k |= bn(f"cp.{name}.bn_atten", 128)
    k |= (
        cbr("cp.conv_head32", 128, 128, 3)
        | cbr("cp.conv_head16", 128, 128, 3)
        | cbr("cp.conv_avg", 128, 512, 1)
    )
    k |= cbr("sp.conv1", 64, 3, 7) | cbr("sp.conv2", 64, 64, 3) | cbr("sp.conv3", 64, 64, 3)
    k |= cbr("sp.conv_out", 128, 64, 1)
    k |= cbr("ffm.convblk", 256, 256, 1) | conv("ffm.conv", 256, 256, 1) | bn("ffm.bn", 256)
    k |= cbr("conv_out.conv", 256, 256, 3) | conv("conv_out.conv_out", n, 256, 1, True)
    for aux in ("conv_out16", "conv_out32"):  # training-only heads (aux_mode='train')
        k |= cbr(f"{aux}.conv", 64, 128, 3) | conv(f"{aux}.conv_out", n, 64, 1, True)
    return k


def _ge(k, cin, cout, down):
    mid = 6 * cin
    keys = cbr(f"{k}.conv1", cin, cin, 3)
    if down:
        keys |= conv(f"{k}.dwconv1.0", mid, 1, 3) | bn(f"{k}.dwconv1.1", mid)
        keys |= conv(f"{k}.dwconv2.0", mid, 1, 3) | bn(f"{k}.dwconv2.1", mid)
        keys |= conv(f"{k}.shortcut.0", cin, 1, 3) | bn(f"{k}.shortcut.1", cin)
        keys |= conv(f"{k}.shortcut.2", cout, cin, 1) | bn(f"{k}.shortcut.3", cout)
    else:
        keys |= conv(f"{k}.dwconv.0", mid, 1, 3) | bn(f"{k}.dwconv.1", mid)
    return keys | conv(f"{k}.conv2.0", cout, mid, 1) | bn(f"{k}.conv2.1", cout)


def v2_layout(n=19):
    k = cbr("detail.S1.0", 64, 3, 3) | cbr("detail.S1.1", 64, 64, 3)
    k |= cbr("detail.S2.0", 64, 64, 3) | cbr("detail.S2.1", 64, 64, 3) | cbr("detail.S2.2", 64, 64, 3)
    k |= cbr("detail.S3.0", 128, 64, 3) | cbr("detail.S3.1", 128, 128, 3) | cbr("detail.S3.2", 128, 128, 3)
    s = "segment"
    k |= (
        cbr(f"{s}.S1S2.conv", 16, 3, 3)
        | cbr(f"{s}.S1S2.left.0", 8, 16, 1)
        | cbr(f"{s}.S1S2.left.1", 16, 8, 3)
    )
    k |= cbr(f"{s}.S1S2.fuse", 16, 32, 3)
    k |= _ge(f"{s}.S3.0", 16, 32, True) | _ge(f"{s}.S3.1", 32, 32, False)
    k |= _ge(f"{s}.S4.0", 32, 64, True) | _ge(f"{s}.S4.1", 64, 64, False)
    k |= _ge(f"{s}.S5_4.0", 64, 128, True)
    for i in (1, 2, 3):
        k |= _ge(f"{s}.S5_4.{i}", 128, 128, False)
    k |= (
        bn(f"{s}.S5_5.bn", 128)
        | cbr(f"{s}.S5_5.conv_gap", 128, 128, 1)
        | cbr(f"{s}.S5_5.conv_last", 128, 128, 3)
    )
    k |= conv("bga.left1.0", 128, 1, 3) | bn("bga.left1.1", 128) | conv("bga.left1.2", 128, 128, 1)
    k |= conv("bga.left2.0", 128, 128, 3) | bn("bga.left2.1", 128)
    k |= conv("bga.right1.0", 128, 128, 3) | bn("bga.right1.1", 128)
    k |= conv("bga.right2.0", 128, 1, 3) | bn("bga.right2.1", 128) | conv("bga.right2.2", 128, 128, 1)
    k |= conv("bga.conv.0", 128, 128, 3) | bn("bga.conv.1", 128)
    k |= cbr("head.conv", 1024, 128, 3) | conv("head.conv_out.1", n, 1024, 1, True)
    for aux, cin, up in (
        ("aux2", 16, 4),
        ("aux3", 32, 8),
        ("aux4", 64, 16),
        ("aux5_4", 128, 32),
    ):  # training only
        k |= cbr(f"{aux}.conv", 128, cin, 3) | cbr(f"{aux}.conv_out.0.1", up * up, 128, 3)
        k |= conv(f"{aux}.conv_out.1", n, up * up, 1, True)
    return k


LAYOUTS = {"bisenetv1_coincheung": (v1_layout, "model_final_v1_city_new.pth", ("conv_out16", "conv_out32")),
           "bisenetv2_coincheung": (v2_layout, "model_final_v2_city.pth", ("aux2", "aux3", "aux4", "aux5_4"))}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_released_file_loads_every_network_key_and_backpropagates(name, tmp_path):
    layout, filename, aux = LAYOUTS[name]
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in layout().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    path = tmp_path / filename
    torch.save(state, path)
    builder = VICTIMS.build(VICTIMS.parse(make_cfg(f"victim={name}").victim))
    victim = builder.build(CITY, 19)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    loaded = victim.net.state_dict()
    assert set(loaded) == {k for k in state if k.split(".")[0] not in aux}  # only the aux heads are left out
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    victim.eval().requires_grad_(False)
    x = torch.rand(1, 3, 64, 128, requires_grad=True)
    out = victim(x)
    assert out.shape == (1, 19, 64, 128)
    z = (x.detach() - torch.tensor([0.3257, 0.3690, 0.3223]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2112, 0.2148, 0.2115]
    ).view(1, 3, 1, 1)  # CoinCheung's Cityscapes statistics, inside the wrapper
    torch.testing.assert_close(out.detach(), victim.net(z))
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
