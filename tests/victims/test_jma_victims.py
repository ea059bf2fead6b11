"""JMA issue: the real-dataset victims build, take their outputs from the task, load local weights or fail
clearly, and JMA's vectorised Jacobian runs through each of them (conv, attention, open_clip)."""

from __future__ import annotations

import json

import pytest
import torch

from advlab.attacks.jma import output_jacobian
from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS

TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build(name: str, size: int, outputs: int = 5, **params):
    info = DataInfo(outputs, (3, size, size), [str(i) for i in range(outputs)], (0.5,) * 3, (0.25,) * 3)
    return VICTIMS.create(name, **params).build(info, outputs).eval()


def jacobian_matches_autograd(model, x):
    out, jac = output_jacobian(model, x)
    assert jac.shape == (x.shape[0], out.shape[1], x[0].numel())
    # row j of sample i equals d out[i, j] / d x[i] from plain autograd
    xi = x[1:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xi)[0, 2], xi)
    assert torch.allclose(jac[1, 2], g.flatten(), atol=1e-4, rtol=1e-3)


@pytest.fixture(scope="module")
def tiny_clip_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "advlab-test-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


def test_clip_mlp_tiny(tiny_clip_config):
    torch.manual_seed(0)
    model = build("clip_mlp", 64, model="advlab-test-clip", model_config=str(tiny_clip_config), hidden=32)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    assert not any(p.requires_grad for p in model.net.encoder.parameters())  # frozen encoder
    assert all(p.requires_grad for p in model.net.head.parameters())
    x = torch.rand(3, 3, 64, 64)
    assert model(x).shape == (3, 5)
    jacobian_matches_autograd(model.requires_grad_(False), x)
    with pytest.raises(ConfigError, match="dataset.size=64"):
        build("clip_mlp", 32, model="advlab-test-clip", model_config=str(tiny_clip_config))
    with pytest.raises(CheckpointError, match="does not exist"):
        build(
            "clip_mlp",
            64,
            model="advlab-test-clip",
            model_config=str(tiny_clip_config),
            pretrained="/nope.bin",
        )


def test_vit_b16_small_input():
    torch.manual_seed(0)
    model = build("vit_b16", 32, outputs=4).requires_grad_(False)
    assert model.net.heads.head.out_features == 4
    jacobian_matches_autograd(model, torch.rand(2, 3, 32, 32))
    with pytest.raises(ConfigError, match="dataset.size=224"):
        build("vit_b16", 32, pretrained="/some/file.pth")


def test_resnet50_weights_from_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50-11ad3fa6.pth"
    torch.save(ref.state_dict(), path)
    model = build("resnet50", 32, outputs=20, pretrained=str(path))
    assert torch.equal(model.net.conv1.weight, ref.conv1.weight)  # backbone loaded
    assert model.net.fc.out_features == 20  # head replaced
    jacobian_matches_autograd(model.requires_grad_(False), torch.rand(2, 3, 32, 32))
    with pytest.raises(CheckpointError, match="download.pytorch.org"):
        build("resnet50", 32, pretrained=str(tmp_path / "missing.pth"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="does not hold"):
        build("resnet50", 32, pretrained=str(tmp_path / "bad.pth"))
