"""``lpips.model=alexnet_cifar``: the LPIPS distance over the PAT authors' CIFAR AlexNet, read from a file in
their ``alexnet_cifar.pt`` layout, equals the definition computed from that file's tensors, and bounds PPGD /
LPA."""

from __future__ import annotations

import pytest
import torch
from pat_helpers import (
    alexnet_cifar_keys,
    alexnet_feature_model_layout,
    alexnet_features_reference,
    small_info,
)

from advlab.attacks.base import ATTACKS
from advlab.errors import ConfigError
from advlab.perceptual.lpips_distance import LPIPSConfig, LPIPSDistance
from advlab.tasks.base import TASKS
from advlab.victims.base import Victim
from advlab.victims.smallcnn import small_cnn


def reference_distance(sd: dict, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """sum over layers of || f/|f|_c (x1) - f/|f|_c (x2) ||^2 / (H W), square-rooted."""
    total = torch.zeros(x1.shape[0])
    for f1, f2 in zip(alexnet_features_reference(sd, x1), alexnet_features_reference(sd, x2)):
        n1 = f1 / f1.pow(2).sum(1, keepdim=True).add(1e-10).sqrt()
        n2 = f2 / f2.pow(2).sum(1, keepdim=True).add(1e-10).sqrt()
        total += (n1 - n2).pow(2).sum(dim=(1, 2, 3)) / (f1.shape[2] * f1.shape[3])
    return total.sqrt()


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    sd = alexnet_cifar_keys(32, hidden=16, seed=5)
    path = tmp_path_factory.mktemp("lpips") / "alexnet_cifar.pt"
    torch.save({"model": alexnet_feature_model_layout(sd)}, path)
    return sd, str(path)


def test_alexnet_cifar_lpips_equals_the_definition_on_the_authors_file(alexnet_file):
    sd, path = alexnet_file
    dist = LPIPSDistance(LPIPSConfig(model="alexnet_cifar", weights=path))
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(4, 3, 32, 32, generator=g)
    x2 = (x1 + 0.05 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(dist(x1, x2), reference_distance(sd, x1, x2), rtol=1e-4, atol=1e-6)
        assert torch.all(dist(x1, x1) < 1e-6)


def test_alexnet_cifar_lpips_needs_its_weights_file(tmp_path):
    with pytest.raises(ConfigError, match=r"attack\.lpips\.weights"):
        ATTACKS.parse({"name": "ppgd", "lpips": {"model": "alexnet_cifar"}}, key="attack")
    with pytest.raises(ConfigError, match=r"attack\.lpips\.weights"):
        ATTACKS.parse(
            {"name": "ppgd", "lpips": {"model": "alexnet_cifar", "weights": str(tmp_path / "no.pt")}}
        )


@pytest.mark.parametrize("name", ["ppgd", "lpa"])
def test_ppgd_and_lpa_stay_inside_the_alexnet_cifar_bound(alexnet_file, name):
    sd, path = alexnet_file
    info = small_info(32)
    task = TASKS.create("classification", info)
    torch.manual_seed(0)
    model = Victim(small_cnn(3, 10, 32, 8, 32), info.mean, info.std).eval().requires_grad_(False)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    extra = {"binary_steps": 2} if name == "lpa" else {}
    attack = ATTACKS.create(
        name, task, bound=0.1, steps=4, lpips={"model": "alexnet_cifar", "weights": path}, **extra
    )
    x_adv = attack(model, x, y)
    with torch.no_grad():
        d = reference_distance(sd, x, x_adv)
    assert torch.all(d <= 0.1 * 1.001), d
    assert (x_adv - x).abs().amax() > 1e-3  # the attack moved the images
