"""Input-transform defenses (JPEG, Gaussian blur, bit-depth squeezing, the feature-squeezing detector) against
their definitions, and on the default digits composition."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg
from PIL import Image

from advlab.defenses.base import DEFENSES
from advlab.errors import ConfigError


def defense(**params):
    return DEFENSES.create("input_transform", None, **params)


def smooth_image(c: int = 3, s: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    return (torch.stack([xx, yy, (xx + yy) / 2])[:c][None] * 0.8 + 0.1).repeat(2, 1, 1, 1)


def pil_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for img in (x * 255).round().to(torch.uint8):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()).save(buf, format="JPEG", quality=quality)
        arr = np.array(Image.open(buf), dtype=np.float32)
        out.append(torch.from_numpy(arr).reshape(img.shape[1], img.shape[2], -1).permute(2, 0, 1))
    return torch.stack(out) / 255


@pytest.mark.parametrize("channels", [3, 1])
def test_jpeg_bpda_is_the_real_codec_forward_and_the_identity_backward(channels):
    x = torch.rand(2, channels, 32, 32).requires_grad_(True)
    y = defense(transform="jpeg").transform(x)
    assert torch.allclose(y, pil_jpeg(x.detach(), 75), atol=1e-6)  # libjpeg at quality 75, as PIL writes it
    assert (y - x).abs().mean() > 0.01  # noise does not survive quality 75
    (g,) = torch.autograd.grad((y * torch.arange(32.0)).sum(), x)
    assert torch.allclose(g, torch.arange(32.0).expand_as(g))  # BPDA: the identity's gradient


def test_differentiable_jpeg_approximates_the_codec_with_a_real_gradient():
    x = smooth_image().requires_grad_(True)
    y = defense(transform="jpeg", jpeg_gradient="differentiable").transform(x)
    assert (y - pil_jpeg(x.detach(), 75)).abs().mean() < 2 / 255
    (g,) = torch.autograd.grad(y[:, 0].sum(), x)
    assert g.abs().sum() > 0 and not torch.allclose(g[:, 0], torch.ones_like(g[:, 0]))


def test_gaussian_blur_is_the_3x3_sigma_1_kernel():
    i = torch.tensor([-1.0, 0.0, 1.0])
    k1 = torch.exp(-(i**2) / 2)
    k = torch.outer(k1, k1) / torch.outer(k1, k1).sum()
    x = torch.rand(2, 3, 9, 9)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.expand(3, 1, 3, 3), groups=3)
    assert torch.allclose(defense(transform="blur").transform(x), ref, atol=1e-6)


def test_bit_depth_squeezing_by_hand():
    x = torch.tensor([0.0, 0.03, 0.52, 0.97, 1.0]).view(1, 1, 1, 5).requires_grad_(True)
    y = defense(transform="squeeze", bits=4).transform(x)
    assert torch.allclose(y.detach().flatten(), torch.tensor([0.0, 0.0, 8 / 15, 1.0, 1.0]))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.ones_like(g))
    y1 = defense(transform="squeeze", bits=1).transform(x)
    assert torch.equal(y1.detach().flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))


def test_feature_squeezing_detector_score_by_hand():
    victim = torch.nn.Flatten()
    x = torch.tensor([[0.03, 0.52], [0.2, 0.9]]).view(2, 1, 1, 2)
    squeezed = torch.round(x * 15) / 15
    raw = defense(transform="squeeze", detector=True, detector_outputs="raw")
    assert torch.allclose(raw.detector(victim, x), (x - squeezed).abs().flatten(1).sum(1))
    soft = defense(transform="squeeze", detector=True).detector(victim, x)
    ref = (x.flatten(1).softmax(1) - squeezed.flatten(1).softmax(1)).abs().sum(1)
    assert torch.allclose(soft, ref)
    assert defense(transform="squeeze").detector is None


def test_wrap_applies_the_transform_before_the_victim():
    victim = torch.nn.Flatten()
    x = torch.rand(2, 1, 4, 4)
    wrapped = defense(transform="squeeze", bits=2).wrap(victim)
    assert torch.equal(wrapped(x), (torch.round(x * 3) / 3).flatten(1))


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="defense.transform"):
        defense(transform="median")
    with pytest.raises(ConfigError, match="defense.jpeg_quality"):
        defense(jpeg_quality=0)
    with pytest.raises(ConfigError, match="defense.blur_kernel"):
        defense(transform="blur", blur_kernel=4)
    with pytest.raises(ConfigError, match="defense.detector"):
        defense(transform="jpeg", detector=True)


TINY_DIGITS = ("device=cpu", "dataset.size=16", "train.epochs=1", "victim.width=8", "victim.hidden=32",
               "eval.num_examples=48", "eval.grid_examples=0", "attack.steps=2")  # fmt: skip


@pytest.mark.slow
def test_input_transform_runs_on_the_default_digits_composition(tmp_path):
    from advlab.runner import run

    first = run(make_cfg(*TINY_DIGITS, "defense=input_transform"), tmp_path / "jpeg")  # trains the victim
    ckpt = first["victim"]["path"]
    for transform in ("blur", "squeeze"):
        res = run(
            make_cfg(*TINY_DIGITS, f"victim.checkpoint={ckpt}", "defense=input_transform",
                     f"defense.transform={transform}"),
            tmp_path / transform,
        )  # fmt: skip
        m = res["metrics"]
        assert 0 <= m["adv/acc"] <= m["clean/acc"] <= 1
    assert 0 <= first["metrics"]["adv/acc"] <= first["metrics"]["clean/acc"]
