"""The JMA paper's victims (issue #15): Inception-v3 (VOC), the VGG16 shared-bottom ECOC ensemble, Swin-B
(COCO) and ViT-B/16 ImageNet-21K (ImageNet2K), each loading weights written in its published layout:
torchvision state_dicts (built by torchvision's own architecture classes, at small widths where the key layout
is unchanged) and a timm-layout ViT checkpoint written key by key."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.swin_transformer import SwinTransformer

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.registry import parse_config
from advlab.victims.base import VICTIMS


def build(name: str, size: int, outputs: int = 5, channels: int = 3, **params):
    cls = VICTIMS.get(name)
    info = DataInfo(
        outputs, (channels, size, size), [str(i) for i in range(outputs)], (0.5,) * 3, (0.25,) * 3
    )
    return cls(parse_config(cls.Config, {"name": name, **params}, "victim")).build(info, outputs).eval()


def test_inception_v3_loads_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=False
    )  # published layout
    state = ref.state_dict()
    assert any(k.startswith("AuxLogits.") for k in state) and state["fc.weight"].shape == (1000, 2048)
    torch.save(state, tmp_path / "inception_v3_google-0cc3c7bd.pth")
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older files lack these
    torch.save(old, tmp_path / "old.pth")
    for name in ("inception_v3_google-0cc3c7bd.pth", "old.pth"):
        model = build("inception_v3", 80, outputs=20, pretrained=str(tmp_path / name))
        assert torch.equal(model.net.Conv2d_1a_3x3.conv.weight, ref.Conv2d_1a_3x3.conv.weight)
        assert torch.equal(
            model.net.Mixed_7c.branch_pool.bn.running_var, ref.Mixed_7c.branch_pool.bn.running_var
        )
        assert model.net.fc.out_features == 20 and model.net.transform_input and model.net.AuxLogits is None
    with torch.no_grad():
        assert model(torch.rand(2, 3, 80, 80)).shape == (2, 20)
    with pytest.raises(ConfigError, match="dataset.size=299"):
        build("inception_v3", 64)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="does not hold"):
        build("inception_v3", 80, pretrained=str(tmp_path / "bad.pth"))


def test_swin_b_loads_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    # torchvision's Swin class at 1/4 width: the same keys as swin_b-68c6b09e.pth (depths 2-2-18-2, 7x7 windows)
    ref = SwinTransformer([4, 4], 32, [2, 2, 18, 2], [1, 2, 4, 8], [7, 7], stochastic_depth_prob=0.5)
    with torch.device("meta"):  # the full-size architecture's key list, without allocating it
        full = torchvision.models.swin_b(weights=None)
    assert set(ref.state_dict()) == set(full.state_dict())
    torch.save(ref.state_dict(), tmp_path / "swin.pth")
    model = build("swin_b", 64, outputs=6, pretrained=str(tmp_path / "swin.pth"), width=32)
    assert torch.equal(model.net.features[0][0].weight, ref.features[0][0].weight)
    assert torch.equal(model.net.features[5][17].attn.qkv.weight, ref.features[5][17].attn.qkv.weight)
    assert model.net.head.out_features == 6
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 6)
    with pytest.raises(CheckpointError, match="other sizes"):
        build("swin_b", 64, pretrained=str(tmp_path / "swin.pth"), width=64)


def _timm_vit(width: int, tokens: int, head_rows: int, pre_logits: bool) -> dict[str, torch.Tensor]:
    """A state_dict with timm's VisionTransformer keys and shapes (vit_base_patch16_224_in21k at ``width``)."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    s = {
        "cls_token": r(1, 1, width),
        "pos_embed": r(1, tokens, width),
        "patch_embed.proj.weight": r(width, 3, 16, 16),
        "patch_embed.proj.bias": r(width),
        "norm.weight": r(width),
        "norm.bias": r(width),
        "head.weight": r(head_rows, width),
        "head.bias": r(head_rows),
    }
    for i in range(12):
        b = f"blocks.{i}."
        s |= {
            b + "norm1.weight": r(width),
            b + "norm1.bias": r(width),
            b + "attn.qkv.weight": r(3 * width, width),
            b + "attn.qkv.bias": r(3 * width),
            b + "attn.proj.weight": r(width, width),
            b + "attn.proj.bias": r(width),
            b + "norm2.weight": r(width),
            b + "norm2.bias": r(width),
            b + "mlp.fc1.weight": r(4 * width, width),
            b + "mlp.fc1.bias": r(4 * width),
            b + "mlp.fc2.weight": r(width, 4 * width),
            b + "mlp.fc2.bias": r(width),
        }
    if pre_logits:
        s |= {"pre_logits.fc.weight": r(width, width), "pre_logits.fc.bias": r(width)}
    return s


def test_vit_b16_in21k_loads_timm_layout(tmp_path):
    # a fine-tuned head with one row per class (the paper's ImageNet2K head): loaded as is
    state = _timm_vit(64, 5, head_rows=7, pre_logits=False)
    torch.save(state, tmp_path / "vit_in2k.pth")
    model = build("vit_b16_in21k", 32, outputs=7, pretrained=str(tmp_path / "vit_in2k.pth"), width=64)
    net = model.net
    assert torch.equal(net.class_token, state["cls_token"]) and torch.equal(
        net.encoder.pos_embedding, state["pos_embed"]
    )
    layer = net.encoder.layers.encoder_layer_11
    assert torch.equal(layer.self_attention.in_proj_weight, state["blocks.11.attn.qkv.weight"])
    assert torch.equal(layer.self_attention.out_proj.bias, state["blocks.11.attn.proj.bias"])
    assert torch.equal(layer.mlp[3].weight, state["blocks.11.mlp.fc2.weight"])
    assert torch.equal(net.heads.head.weight, state["head.weight"])
    # the fused qkv is torchvision's in_proj in the same q, k, v order: attention output equals timm's formula
    x = torch.randn(1, 5, 64)
    qkv = x @ state["blocks.11.attn.qkv.weight"].t() + state["blocks.11.attn.qkv.bias"]
    q, k, v = qkv.view(1, 5, 3, 1, 64).permute(2, 0, 3, 1, 4)
    ref = ((q @ k.transpose(-2, -1)) / 8).softmax(-1) @ v
    ref = (
        ref.transpose(1, 2).reshape(1, 5, 64) @ state["blocks.11.attn.proj.weight"].t()
        + state["blocks.11.attn.proj.bias"]
    )
    with torch.no_grad():
        ours, _ = layer.self_attention(x, x, x, need_weights=False)
        assert torch.allclose(ours, ref, atol=1e-4)
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    # the in21k file: 21k-class head left out (replaced), pre-logits representation layer loaded
    state21 = _timm_vit(64, 5, head_rows=11, pre_logits=True)
    torch.save(state21, tmp_path / "vit_in21k.pth")
    m21 = build(
        "vit_b16_in21k",
        32,
        outputs=7,
        pretrained=str(tmp_path / "vit_in21k.pth"),
        width=64,
        representation=True,
    )
    assert torch.equal(m21.net.heads.pre_logits.weight, state21["pre_logits.fc.weight"])
    assert m21.net.heads.head.weight.shape == (7, 64)
    with pytest.raises(CheckpointError, match="unexpected"):  # pre-logits in the file but not built
        build("vit_b16_in21k", 32, outputs=7, pretrained=str(tmp_path / "vit_in21k.pth"), width=64)


# torchvision VGG16 ("D") convolution widths and their indices in ``features``, at 1/16 width
VGG16_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG16_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _torchvision_vgg16(scale: int = 16, fc: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    s, ch = {}, 3
    for width, idx in zip(VGG16_CONVS, VGG16_INDEX):
        s[f"features.{idx}.weight"] = torch.randn(width // scale, ch, 3, 3, generator=g)
        s[f"features.{idx}.bias"] = torch.randn(width // scale, generator=g)
        ch = width // scale
    for i, (out, inp) in enumerate([(fc, ch * 49), (fc, fc), (1000, fc)]):
        s[f"classifier.{3 * i}.weight"] = torch.randn(out, inp, generator=g)
        s[f"classifier.{3 * i}.bias"] = torch.randn(out, generator=g)
    return s


def test_vgg16_ecoc_shared_bottom_ensemble(tmp_path):
    state = _torchvision_vgg16()
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    model = build(
        "vgg16_ecoc", 32, outputs=16, pretrained=str(tmp_path / "vgg16-397923af.pth"), width=4, fc=8
    )
    net = model.net
    convs = net.conv_modules()
    assert len(convs) == 16 and all(len(c) == 13 for c in convs)  # one branch per bit, 13 VGG16 convolutions
    shared = [m for m in net.bottom if isinstance(m, torch.nn.Conv2d)]
    assert len(shared) == 6  # the paper's shared bottom
    for branch in convs:
        for conv, idx in zip(branch, VGG16_INDEX):
            assert torch.equal(conv.weight, state[f"features.{idx}.weight"])
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 16)
    # bit j depends on the bottom and on its own branch only
    out[:, 3].sum().backward()
    assert net.bottom[0].weight.grad is not None
    others = [b[0].weight.grad for i, b in enumerate(net.branches) if i != 3]
    assert all(g is None or not g.any() for g in others)
    assert net.branches[3][0].weight.grad is not None
    four = build("vgg16_ecoc", 32, outputs=16, width=4, fc=8, branches=4, shared_convs=4)
    assert four.net.bits == [4, 4, 4, 4] and four(torch.rand(1, 3, 32, 32)).shape == (1, 16)
    with pytest.raises(ConfigError, match="divisible by 32"):
        build("vgg16_ecoc", 28, outputs=16, width=4, fc=8)
    bad = dict(state, extra=torch.zeros(1))
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="unexpected"):
        build("vgg16_ecoc", 32, outputs=16, pretrained=str(tmp_path / "bad.pth"), width=4, fc=8)
    with pytest.raises(CheckpointError, match="victim.width"):
        build("vgg16_ecoc", 32, outputs=16, pretrained=str(tmp_path / "vgg16-397923af.pth"), width=8, fc=8)


@pytest.mark.parametrize("name", ["inception_v3", "vgg16_ecoc", "swin_b", "vit_b16_in21k"])
def test_paper_victims_compose(name):
    from conftest import make_cfg

    from advlab.context import build_spec

    spec = build_spec(make_cfg(f"victim={name}", "device=cpu"))
    assert spec.victim.name == name
