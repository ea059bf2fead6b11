"""The released SemanticAdv face model (``res101_softmax.pth.tar``) loads as published.

The fixture is written from the published layout (AI-secure/SemanticAdv ``Face/verification_model.py``:
``DataParallel(IdentityMapping(resnet101(feature_dim=256)))`` saved by its training script under ``state_dict``),
key by key and shape by shape, not from advlab's module."""

from __future__ import annotations

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, load_victim_weights
from advlab.victims.face_resnet_semanticadv import check_released_weights

BLOCKS = (3, 4, 23, 3)  # ResNet-101
PLANES = (64, 128, 256, 512)


def _bn(prefix: str, c: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.rand(c, generator=gen),
        f"{prefix}.bias": 0.1 * torch.randn(c, generator=gen),
        f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=gen),
        f"{prefix}.running_var": 1 + 0.1 * torch.rand(c, generator=gen),
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def _conv(out_c: int, in_c: int, k: int, gen: torch.Generator, gain: float = 1.0) -> torch.Tensor:
    return torch.randn(out_c, in_c, k, k, generator=gen) * gain * (2 / (in_c * k * k)) ** 0.5


def published_state_dict() -> dict[str, torch.Tensor]:
    """``module.base.*`` keys of the released file, with the published shapes."""
    gen = torch.Generator().manual_seed(0)
    sd = {"conv1.weight": _conv(64, 3, 7, gen), **_bn("bn1", 64, gen)}
    inplanes = 64
    for layer, (n, planes) in enumerate(zip(BLOCKS, PLANES), start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            sd[f"{p}.conv1.weight"] = _conv(planes, inplanes, 1, gen)
            sd.update(_bn(f"{p}.bn1", planes, gen))
            sd[f"{p}.conv2.weight"] = _conv(planes, planes, 3, gen)
            sd.update(_bn(f"{p}.bn2", planes, gen))
            sd[f"{p}.conv3.weight"] = _conv(planes * 4, planes, 1, gen, gain=0.2)  # keeps residuals tame
            sd.update(_bn(f"{p}.bn3", planes * 4, gen))
            if b == 0:
                sd[f"{p}.downsample.0.weight"] = _conv(planes * 4, inplanes, 1, gen)
                sd.update(_bn(f"{p}.downsample.1", planes * 4, gen))
            inplanes = planes * 4
    sd["fc.weight"] = torch.randn(256, 2048 * 7 * 7, generator=gen) * (1 / (2048 * 49)) ** 0.5
    sd["fc.bias"] = torch.randn(256, generator=gen) * 0.01
    return {f"module.base.{k}": v for k, v in sd.items()}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    state = published_state_dict()
    path = tmp_path_factory.mktemp("face") / "res101_softmax.pth.tar"
    torch.save({"epoch": 24, "best_prec1": 0.0, "state_dict": state}, path)
    return path, state


def _victim(checkpoint: str):
    builder = VICTIMS.build(VICTIMS.parse({"name": "face_resnet101_semanticadv", "checkpoint": checkpoint}))
    info = DataInfo(0, (3, 112, 112), [], (0.5,) * 3, (0.5,) * 3)
    victim = builder.build(info, 256)
    load_victim_weights(victim, builder.load_checkpoint(checkpoint), checkpoint)
    return victim.eval()


def test_released_layout_loads_every_key_and_embeds_to_unit_256(released):
    torch.set_num_threads(1)
    path, state = released
    victim = _victim(str(path))
    own = victim.net.state_dict()
    assert len(own) == len(state)  # 530 parameters/buffers: nothing left over on either side
    for k, v in state.items():
        assert torch.equal(own[k.removeprefix("module.base.")], v), k
    net = victim.net
    assert net.conv1.stride == (1, 1) and not hasattr(net, "avgpool")
    assert net.fc.in_features == 2048 * 7 * 7 and net.fc.out_features == 256
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        emb = victim(x)
        # the authors' input transform: rec_transform(x) = (x - 0.5) * 4 on images in [0, 1]
        ref = net((x - 0.5) * 4)
    assert emb.shape == (2, 256)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(emb, ref, atol=1e-6)
    assert (emb[0] - emb[1]).norm() > 1e-3  # different faces, different embeddings


def test_released_layout_checks(released):
    state = {k.removeprefix("module.base."): v for k, v in released[1].items() if "num_batches" not in k}
    # files without batch-norm counters (PyTorch < 0.4.1) are accepted: the counters do not affect evaluation
    full = check_released_weights(dict(state), "f")
    assert all(int(full[k]) == 0 for k in full if k.endswith("num_batches_tracked"))
    with pytest.raises(CheckpointError, match="unexpected"):
        check_released_weights({**state, "fc2.weight": torch.zeros(1)}, "f")
    with pytest.raises(CheckpointError, match="missing"):
        check_released_weights({k: v for k, v in state.items() if k != "layer3.22.conv2.weight"}, "f")
    with pytest.raises(CheckpointError, match="shapes"):
        check_released_weights({**state, "fc.weight": torch.zeros(512, 2048)}, "f")


def test_released_wrapper_is_required(tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bare)
    with pytest.raises(CheckpointError, match="state_dict"):
        VICTIMS.create("face_resnet101_semanticadv").load_checkpoint(str(bare))
    unprefixed = tmp_path / "unprefixed.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, unprefixed)
    with pytest.raises(CheckpointError, match="module.base."):
        VICTIMS.create("face_resnet101_semanticadv").load_checkpoint(str(unprefixed))


def test_released_model_needs_112_and_256():
    builder = VICTIMS.create("face_resnet101_semanticadv")
    info = DataInfo(0, (3, 112, 112), [], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ConfigError, match="embedding_dim"):
        builder.build(info, 512)
