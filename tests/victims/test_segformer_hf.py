"""SegFormer through HuggingFace transformers from a model directory in the hub layout (config.json, weights with
transformers-4 key names, preprocessor_config.json): every key consumed with its shape, the processor's resize and
normalisation inside the wrapper (pixel-space input), sliding-window evaluation as the mean of its windows'
logits, gradients to the input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.base import VICTIMS, load_victim_weights
from advlab.victims.inference import slide_windows

pytestmark = pytest.mark.slow  # imports transformers

INFO = DataInfo(5, (3, 40, 72), [str(i) for i in range(5)], (0.5,) * 3, (0.25,) * 3)
TINY = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 1, 1, 2],
        "decoder_hidden_size": 16, "sr_ratios": [8, 4, 2, 1], "mlp_ratios": [4, 4, 4, 4],
        "patch_sizes": [7, 3, 3, 3], "strides": [4, 2, 2, 2], "num_channels": 3}  # fmt: skip
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def hub_layout(cfg: dict, labels: int) -> dict[str, tuple]:
    """The weight names and shapes of a SegformerForSemanticSegmentation file on the hub (transformers 4.x)."""
    out, prev = {}, cfg["num_channels"]
    for i, (d, c, sr, mlp, ps) in enumerate(
        zip(cfg["depths"], cfg["hidden_sizes"], cfg["sr_ratios"], cfg["mlp_ratios"], cfg["patch_sizes"])
    ):
        e = f"segformer.encoder.patch_embeddings.{i}"
        out |= {f"{e}.proj.weight": (c, prev, ps, ps), f"{e}.proj.bias": (c,)}
        out |= {f"{e}.layer_norm.weight": (c,), f"{e}.layer_norm.bias": (c,)}
        for j in range(d):
            b = f"segformer.encoder.block.{i}.{j}"
            for n in ("layer_norm_1", "layer_norm_2"):
                out |= {f"{b}.{n}.weight": (c,), f"{b}.{n}.bias": (c,)}
            for n in ("query", "key", "value"):
                out |= {f"{b}.attention.self.{n}.weight": (c, c), f"{b}.attention.self.{n}.bias": (c,)}
            if sr > 1:
                out |= {f"{b}.attention.self.sr.weight": (c, c, sr, sr), f"{b}.attention.self.sr.bias": (c,)}
                out |= {
                    f"{b}.attention.self.layer_norm.weight": (c,),
                    f"{b}.attention.self.layer_norm.bias": (c,),
                }
            out |= {f"{b}.attention.output.dense.weight": (c, c), f"{b}.attention.output.dense.bias": (c,)}
            h = c * mlp
            out |= {f"{b}.mlp.dense1.weight": (h, c), f"{b}.mlp.dense1.bias": (h,)}
            out |= {f"{b}.mlp.dwconv.dwconv.weight": (h, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": (h,)}
            out |= {f"{b}.mlp.dense2.weight": (c, h), f"{b}.mlp.dense2.bias": (c,)}
        out |= {
            f"segformer.encoder.layer_norm.{i}.weight": (c,),
            f"segformer.encoder.layer_norm.{i}.bias": (c,),
        }
        prev = c
    dh = cfg["decoder_hidden_size"]
    for i, c in enumerate(cfg["hidden_sizes"]):
        out |= {
            f"decode_head.linear_c.{i}.proj.weight": (dh, c),
            f"decode_head.linear_c.{i}.proj.bias": (dh,),
        }
    out["decode_head.linear_fuse.weight"] = (dh, 4 * dh, 1, 1)
    for n in ("weight", "bias", "running_mean", "running_var"):
        out[f"decode_head.batch_norm.{n}"] = (dh,)
    out["decode_head.batch_norm.num_batches_tracked"] = ()
    out |= {"decode_head.classifier.weight": (labels, dh, 1, 1), "decode_head.classifier.bias": (labels,)}
    return out


@pytest.fixture
def hub_dir(tmp_path):
    folder = tmp_path / "segformer-b5-finetuned-cityscapes-1024-1024"
    folder.mkdir()
    config = {"architectures": ["SegformerForSemanticSegmentation"], "model_type": "segformer", **TINY,
              "id2label": {str(i): f"c{i}" for i in range(5)}, "label2id": {f"c{i}": i for i in range(5)}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_resize": True, "image_mean": MEAN, "image_std": STD, "resample": 2,
        "size": {"height": 32, "width": 32}, "image_processor_type": "SegformerImageProcessor"}))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in hub_layout(TINY, 5).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.2
    torch.save(state, folder / "pytorch_model.bin")
    return folder, state


def load(folder, **kw):
    builder = VICTIMS.build(VICTIMS.parse({"name": "segformer_b5_hf", "checkpoint": str(folder), **kw}))
    victim = builder.build(INFO, 5)
    load_victim_weights(victim, builder.load_checkpoint(str(folder)), str(folder))
    return victim.eval().requires_grad_(False)


def test_hub_directory_loads_every_key_and_the_processor_runs_inside(hub_dir):
    folder, state = hub_dir
    victim = load(folder)
    loaded = victim.net.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    x = torch.rand(2, 3, 40, 72, requires_grad=True)
    out = victim(x)
    assert out.shape == (2, 5, 40, 72)
    # the processor: resize to its 32x32, normalise with its statistics; logits back to the input size
    z = F.interpolate(x.detach(), (32, 32), mode="bilinear", align_corners=False, antialias=True)
    z = (z - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    low = victim.net(pixel_values=z).logits
    assert low.shape == (2, 5, 8, 8)
    torch.testing.assert_close(
        out.detach(), F.interpolate(low, (40, 72), mode="bilinear", align_corners=False)
    )
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_hf_slide_inference_is_the_mean_of_its_windows(hub_dir):
    folder, _ = hub_dir
    victim = load(folder, mode="slide", crop=[32, 32], stride=[24, 24])
    x = torch.rand(1, 3, 40, 72, requires_grad=True)
    out = victim(x)
    z = (x.detach() - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    total, count = torch.zeros(1, 5, 40, 72), torch.zeros(40, 72)
    for y1, y2, x1, x2 in slide_windows(40, 72, (32, 32), (24, 24)):
        window = victim.net(pixel_values=z[:, :, y1:y2, x1:x2]).logits
        total[:, :, y1:y2, x1:x2] += F.interpolate(window, (y2 - y1, x2 - x1), mode="bilinear")
        count[y1:y2, x1:x2] += 1
    torch.testing.assert_close(out.detach(), total / count, rtol=1e-4, atol=1e-5)
    out[:, :, :, 30:40].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_directory_without_config_or_weights_is_a_clear_error(tmp_path, hub_dir):
    with pytest.raises(CheckpointError, match="config.json"):
        VICTIMS.build(VICTIMS.parse({"name": "segformer_b5_hf", "checkpoint": str(tmp_path)})).build(INFO, 5)
    folder, _ = hub_dir
    (folder / "pytorch_model.bin").unlink()
    builder = VICTIMS.build(VICTIMS.parse({"name": "segformer_b5_hf", "checkpoint": str(folder)}))
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        builder.load_checkpoint(str(folder))


def test_segformer_b5_hf_composes_as_b5():
    params = VICTIMS.parse(make_cfg("victim=segformer_b5_hf").victim)
    assert params.name == "segformer_b5_hf" and params.mode == "processor" and params.checkpoint is None
