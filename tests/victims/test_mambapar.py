"""MambaPAR in pure PyTorch: the selective scan equals its recurrence computed element by element, the
unidirectional mixer is causal while Vim's bidirectional one sees both sides, ``victim=mambapar_tiny`` trains a
step on synthpar and back-propagates to the input, MambaPAR's own checkpoint layout (written key by key) is
consumed, and the cross-model transfer preset applies a saved noise to MambaPAR."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_cfg

from advlab.context import build_spec
from advlab.data.synthpar import SynthPAR, SynthPARConfig
from advlab.errors import CheckpointError
from advlab.runner import run
from advlab.tasks.par import PAR, PARTaskConfig
from advlab.victims.base import VICTIMS, load_victim_weights
from advlab.victims.mambapar import MambaMixer, selective_scan


@pytest.fixture(scope="module")
def data():
    return SynthPAR(SynthPARConfig(name="synthpar", num_train=32, num_test=8, data_seed=3), 0)


def tiny_victim(data, **overrides):
    spec = build_spec(
        make_cfg(
            "dataset=synthpar", "victim=mambapar_tiny", *[f"victim.{k}={v}" for k, v in overrides.items()]
        )
    )
    builder = VICTIMS.build(spec.victim)
    return builder, builder.build(data.info, data.info.num_classes)


def test_selective_scan_is_the_recurrence():
    g = torch.Generator().manual_seed(0)
    bsz, d, length, n = 2, 3, 5, 4
    u, z = torch.randn(bsz, d, length, generator=g), torch.randn(bsz, d, length, generator=g)
    delta = torch.rand(bsz, d, length, generator=g) + 0.1
    a = -torch.rand(d, n, generator=g) - 0.5
    b, c = torch.randn(bsz, n, length, generator=g), torch.randn(bsz, n, length, generator=g)
    dd = torch.randn(d, generator=g)
    expected = torch.zeros(bsz, d, length)
    for i in range(bsz):
        for ch in range(d):
            h = [0.0] * n
            for t in range(length):
                dt = float(delta[i, ch, t])
                h = [
                    math.exp(dt * float(a[ch, k])) * h[k] + dt * float(b[i, k, t]) * float(u[i, ch, t])
                    for k in range(n)
                ]
                y = sum(float(c[i, k, t]) * h[k] for k in range(n)) + float(dd[ch]) * float(u[i, ch, t])
                zz = float(z[i, ch, t])
                expected[i, ch, t] = y * zz / (1 + math.exp(-zz))
    torch.testing.assert_close(selective_scan(u, delta, a, b, c, dd, z), expected, atol=1e-5, rtol=1e-5)


def test_unidirectional_mixer_is_causal_and_vims_sees_both_sides():
    torch.manual_seed(0)
    x = torch.randn(1, 7, 16)
    later = x.clone()
    later[:, 5] += 1.0  # change a later token
    for bidirectional in (False, True):
        mixer = MambaMixer(16, d_state=4, d_conv=4, expand=2, bidirectional=bidirectional)
        with torch.no_grad():
            before, after = mixer(x), mixer(later)
        early_changed = (before[:, :5] - after[:, :5]).abs().max()
        assert (early_changed > 1e-6) == bidirectional, bidirectional
        assert (before[:, 5:] - after[:, 5:]).abs().max() > 1e-6


def test_mambapar_tiny_trains_a_step_on_synthpar_and_backpropagates_to_the_input(data):
    _, victim = tiny_victim(data)
    task = PAR(PARTaskConfig(name="par"), data.info)
    x, y = data.dataset("train").tensors
    x, y = x[:8].clone().requires_grad_(True), y[:8]
    out = victim.train()(x)
    assert out.shape == (8, data.info.num_classes)
    before = {k: v.detach().clone() for k, v in victim.named_parameters()}
    opt = torch.optim.SGD(victim.parameters(), lr=0.1)
    loss = task.loss(out, y)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # back-propagates to the image
    opt.step()
    changed = [k for k, v in victim.named_parameters() if not torch.equal(v, before[k])]
    for part in (
        "vision.layers.0.mixer.A_b_log",
        "text_model.embedding",
        "fusion_layers.1.mixer",
        "head_weight",
    ):
        assert any(part in k for k in changed), part  # every branch learns
    victim.eval()
    with torch.no_grad():
        assert torch.isfinite(victim(x[:2])).all()


def mixer_shapes(prefix: str, d_model: int, d_state: int, bidirectional: bool) -> dict[str, tuple[int, ...]]:
    """mamba_ssm's Mamba (Vim's bimamba v2 adds the *_b copies), expand 2, d_conv 4, dt_rank ceil(d/16)."""
    inner, rank = 2 * d_model, math.ceil(d_model / 16)
    shapes = {f"{prefix}.in_proj.weight": (2 * inner, d_model), f"{prefix}.out_proj.weight": (d_model, inner)}
    for s in ("", "_b") if bidirectional else ("",):
        shapes.update({
            f"{prefix}.conv1d{s}.weight": (inner, 1, 4), f"{prefix}.conv1d{s}.bias": (inner,),
            f"{prefix}.x_proj{s}.weight": (rank + 2 * d_state, inner),
            f"{prefix}.dt_proj{s}.weight": (inner, rank), f"{prefix}.dt_proj{s}.bias": (inner,),
            f"{prefix}.{'A_log' if not s else 'A_b_log'}": (inner, d_state), f"{prefix}.D{s}": (inner,),
        })  # fmt: skip
    return shapes


def mambapar_file(num_attributes: int) -> dict:
    """MambaPAR ``save_ckpt``: ``{'state_dicts': MambaClassifier.state_dict(), 'epoch': str, 'metric': ...}`` for
    the tiny config (Vim width 32, 2 blocks, patch 8 at 64 px; Mamba LM width 32, 2 blocks, vocab 257)."""
    w, t, n, a = 32, 32, 8, num_attributes
    shapes: dict[str, tuple[int, ...]] = {
        "vim.patch_embed.proj.weight": (w, 3, 8, 8), "vim.patch_embed.proj.bias": (w,),
        "vim.cls_token": (1, 1, w), "vim.pos_embed": (1, 65, w), "vim.norm_f.weight": (w,),
        "vim.head.weight": (a, w), "vim.head.bias": (a,),
        "vim_proj.weight": (t, w), "vim_proj.bias": (t,), "vis_embed": (1, 1, t),
        "mamba.backbone.embedding.weight": (257, t), "mamba.backbone.norm_f.weight": (t,), "mamba.lm_head.weight": (257, t),
        "word_proj.weight": (t, t), "word_proj.bias": (t,), "tex_embed": (1, 1, t), "norm.weight": (t,),
        "bn.weight": (a,), "bn.bias": (a,), "bn.running_mean": (a,), "bn.running_var": (a,),
        **{f"weight_layer.{i}.weight": (1, t) for i in range(a)}, **{f"weight_layer.{i}.bias": (1,) for i in range(a)},
    }  # fmt: skip
    for i in range(2):
        shapes.update(mixer_shapes(f"vim.layers.{i}.mixer", w, n, True))
        shapes[f"vim.layers.{i}.norm.weight"] = (w,)
        shapes.update(mixer_shapes(f"mamba.backbone.layers.{i}.mixer", t, n, False))
        shapes[f"mamba.backbone.layers.{i}.norm.weight"] = (t,)
        shapes.update(mixer_shapes(f"VSF_mamba.{i}.mixer", t, n, False))
        shapes[f"VSF_mamba.{i}.norm.weight"] = (t,)
    g = torch.Generator().manual_seed(5)
    state = {k: torch.randn(s, generator=g) * 0.1 for k, s in shapes.items()}
    state["bn.running_var"] = state["bn.running_var"].abs() + 0.5
    state["bn.num_batches_tracked"] = torch.tensor(300)
    return {"state_dicts": state, "epoch": "2024-07-14_10_00_00 in epoch 37", "metric": Metric(ma=0.81)}


class Metric(dict):
    """Stands for the pickled metrics object MambaPAR saves beside the weights."""


def test_mambapar_checkpoint_layout_every_key_consumed(data, tmp_path):
    a = data.info.num_classes
    ckpt = mambapar_file(a)
    path = tmp_path / "ckpt_best_Ma.pth"
    torch.save(ckpt, path)
    builder, victim = tiny_victim(data)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    own, src = victim.net.state_dict(), ckpt["state_dicts"]
    renames = {"vim.patch_embed.proj.": "vision.patch_embed.", "vim_proj.": "vision_proj.", "vim.": "vision.",
               "mamba.backbone.": "text_model.", "word_proj.": "text_proj.", "VSF_mamba.": "fusion_layers.",
               "norm.": "fusion_norm.", "bn.": "head_bn.", "vis_embed": "vision_type_embed",
               "tex_embed": "text_type_embed"}  # fmt: skip
    ignored = ("vim.head.", "mamba.lm_head.")
    for k, v in src.items():
        if k.startswith(ignored) or k.startswith("weight_layer."):
            continue
        prefix = next(p for p in renames if k.startswith(p))
        assert torch.equal(own[renames[prefix] + k[len(prefix) :]], v), k
    for i in range(a):
        assert torch.equal(own["head_weight"][i], src[f"weight_layer.{i}.weight"][0])
        assert torch.equal(own["head_bias"][i], src[f"weight_layer.{i}.bias"][0])
    used = sum(v.numel() for k, v in src.items() if not k.startswith(ignored))
    assert used == sum(v.numel() for v in own.values())  # every published value is in the model, once
    torch.save({**ckpt, "state_dicts": {**src, "vim.extra_token": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['net.vision.extra_token'\]"):
        load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    torch.save({**ckpt, "state_dicts": {**src, "classifier.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="unknown MambaPAR key 'classifier.weight'"):
        builder.load_checkpoint(str(path))


@pytest.mark.slow
def test_cross_model_transfer_preset_applies_a_promptpar_noise_to_mambapar(data, tmp_path):
    from advlab.attacks.asl_par import ASLPAR, ASLPARConfig

    task = PAR(PARTaskConfig(name="par"), data.info)
    noise = ASLPAR(ASLPARConfig(name="asl_par"), task)
    noise.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    noise.perturbation["noise"].data.uniform_(-10 / 255, 10 / 255)
    saved = tmp_path / "perturbation.pt"
    torch.save(noise.state_dict(), saved)
    spec = build_spec(make_cfg("experiment=asl_par_transfer_mambapar", f"attack.perturbation_path={saved}",
                               f"dataset.root={tmp_path}"))  # fmt: skip
    assert (
        spec.victim.name == "mambapar"
        and spec.victim.vision_width == 384
        and spec.pipeline.require_perturbation
    )
    small = ["dataset.num_train=16", "dataset.num_test=8", "train.epochs=1", "train.warmup_epochs=0",
             "train.batch_size=16", "eval.batch_size=8", "device=cpu", f"attack.perturbation_path={saved}"]  # fmt: skip
    results = run(make_cfg("experiment=asl_par_synthpar_transfer_mambapar", *small), tmp_path / "run")
    m = results["metrics"]
    assert results["victim"]["name"] == "mambapar" and 0 <= m["adv/mA"] <= 1 and 0 <= m["clean/mA"] <= 1
    assert m["attack/linf_max"] <= 10 / 255 + 1e-6 and not (tmp_path / "run" / "perturbation.pt").exists()
