"""PromptPAR weights from released files: OpenAI CLIP weights (OpenAI's key names, its shape integers, half
precision) through ``victim.pretrained``, and OpenPAR's PromptPAR checkpoints (``train.py``'s saved dict:
``model_state_dict`` + ``clip_model`` / ``ViT_model``, pickled metrics object, optimizer) through
``victim.checkpoint``. The fixtures are written key by key in the published layouts for the tiny CLIP config
(embed 64; vision width 64, 3 layers, patch 8, 64 px; text width 64, 2 layers, context 24); every published
key must land in the model or be one of the documented ignored ones."""

from __future__ import annotations

import pytest
import torch

from advlab.data.synthpar import SynthPAR, SynthPARConfig
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import load_victim_weights
from advlab.victims.promptpar import PromptPAR, PromptPARConfig

EMBED, V_WIDTH, V_LAYERS, PATCH, SIZE = 64, 64, 3, 8, 64
T_WIDTH, T_LAYERS, CONTEXT, VOCAB = 64, 2, 24, 49408
PROMPTS, PARTS, TEXT_PROMPTS = 2, 4, 3


def block(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP's ResidualAttentionBlock keys."""
    return {
        f"{prefix}.attn.in_proj_weight": (3 * width, width),
        f"{prefix}.attn.in_proj_bias": (3 * width,),
        f"{prefix}.attn.out_proj.weight": (width, width),
        f"{prefix}.attn.out_proj.bias": (width,),
        f"{prefix}.ln_1.weight": (width,),
        f"{prefix}.ln_1.bias": (width,),
        f"{prefix}.mlp.c_fc.weight": (4 * width, width),
        f"{prefix}.mlp.c_fc.bias": (4 * width,),
        f"{prefix}.mlp.c_proj.weight": (width, 4 * width),
        f"{prefix}.mlp.c_proj.bias": (width,),
        f"{prefix}.ln_2.weight": (width,),
        f"{prefix}.ln_2.bias": (width,),
    }


def openai_clip_shapes() -> dict[str, tuple[int, ...]]:
    """The keys and shapes of OpenAI's ``model.state_dict()`` for a ViT CLIP (clip/model.py names)."""
    grid = SIZE // PATCH
    shapes = {
        "positional_embedding": (CONTEXT, T_WIDTH),
        "text_projection": (T_WIDTH, EMBED),
        "logit_scale": (),
        "visual.class_embedding": (V_WIDTH,),
        "visual.positional_embedding": (grid * grid + 1, V_WIDTH),
        "visual.proj": (V_WIDTH, EMBED),
        "visual.conv1.weight": (V_WIDTH, 3, PATCH, PATCH),
        "visual.ln_pre.weight": (V_WIDTH,),
        "visual.ln_pre.bias": (V_WIDTH,),
        "visual.ln_post.weight": (V_WIDTH,),
        "visual.ln_post.bias": (V_WIDTH,),
        "token_embedding.weight": (VOCAB, T_WIDTH),
        "ln_final.weight": (T_WIDTH,),
        "ln_final.bias": (T_WIDTH,),
    }
    for i in range(V_LAYERS):
        shapes.update(block(f"visual.transformer.resblocks.{i}", V_WIDTH))
    for i in range(T_LAYERS):
        shapes.update(block(f"transformer.resblocks.{i}", T_WIDTH))
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * 0.05 for k, s in shapes.items()}


def openpar_checkpoint(num_attributes: int) -> dict:
    """OpenPAR ``train.py``'s ``torch.save({...}, 'epoch{i}.pth')`` for the tiny config (PromptPAR flags
    --use_div --use_vismask --use_GL --use_textprompt --use_mm_former, vis_depth = all layers)."""
    a = num_attributes
    clip = random_state(openai_clip_shapes(), 1)
    clip["logit_scale"] = torch.tensor(4.6052)
    clip.update(random_state({
        "visual.transformer.prompt_deep": (V_LAYERS, (PARTS + 1) * PROMPTS, 1, V_WIDTH),
        "visual.part_class_embedding": (PARTS, V_WIDTH),
        "transformer.prompt_text_deep": (T_LAYERS, TEXT_PROMPTS, a, T_WIDTH),
        "agg_bn.weight": (a,), "agg_bn.bias": (a,), "agg_bn.running_mean": (a,),
    }, 2))  # fmt: skip
    clip["agg_bn.running_var"] = torch.rand(a) + 0.5
    clip["agg_bn.num_batches_tracked"] = torch.tensor(1200)
    clip["softmax_model.temperature"] = torch.tensor(0.8)
    clip = {k: v.half() if v.is_floating_point() else v for k, v in clip.items()}  # build_model: fp16 CLIP
    d = EMBED  # the fusion width (768 for ViT-L/14 and the ViT-B/16 block)
    fusion = random_state({
        "word_embed.weight": (d, EMBED), "word_embed.bias": (d,),
        "visual_embed.weight": (d, EMBED), "visual_embed.bias": (d,),
        "norm.weight": (d,), "norm.bias": (d,),
        "blocks.0.norm1.weight": (d,), "blocks.0.norm1.bias": (d,),
        "blocks.0.attn.qkv.weight": (3 * d, d), "blocks.0.attn.qkv.bias": (3 * d,),
        "blocks.0.attn.proj.weight": (d, d), "blocks.0.attn.proj.bias": (d,),
        "blocks.0.norm2.weight": (d,), "blocks.0.norm2.bias": (d,),
        "blocks.0.mlp.fc1.weight": (4 * d, d), "blocks.0.mlp.fc1.bias": (4 * d,),
        "blocks.0.mlp.fc2.weight": (d, 4 * d), "blocks.0.mlp.fc2.bias": (d,),
        **{f"weight_layer.{i}.weight": (1, d) for i in range(a)},
        **{f"weight_layer.{i}.bias": (1,) for i in range(a)},
        "bn.weight": (a,), "bn.bias": (a,), "bn.running_mean": (a,),
    }, 3)  # fmt: skip
    fusion["bn.running_var"] = torch.rand(a) + 0.5
    fusion["bn.num_batches_tracked"] = torch.tensor(1200)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=8e-3, momentum=0.9)
    return {"epoch": 21, "optimizer": opt.state_dict(), "model_state_dict": fusion, "clip_model": clip,
            "result": MetricsResult(ma=0.8876)}  # fmt: skip


class MetricsResult(dict):
    """Stands for OpenPAR's ``result`` (an EasyDict of metrics): a pickled non-tensor class."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.__dict__.update(kw)


@pytest.fixture(scope="module")
def info():
    return SynthPAR(SynthPARConfig(name="synthpar", num_train=8, num_test=4, data_seed=3), 0).info


def build(info, **overrides):
    params = PromptPARConfig(
        name="promptpar", model_name="advlab-tiny-clip", prompts_per_group=PROMPTS, **overrides
    )
    builder = PromptPAR(params)
    return builder, builder.build(info, info.num_classes)


def test_openai_clip_weights_load_from_a_local_file_every_key_consumed(info, tmp_path):
    state = {k: v.half() for k, v in random_state(openai_clip_shapes(), 7).items()}
    state.update({"input_resolution": torch.tensor(SIZE), "context_length": torch.tensor(CONTEXT),
                  "vocab_size": torch.tensor(VOCAB)})  # fmt: skip
    path = tmp_path / "clip.pt"
    torch.save(state, path)
    _, victim = build(info, pretrained=str(path))
    own = victim.net.clip.state_dict()
    assert set(own) == set(openai_clip_shapes())  # exactly the published keys, less the 3 shape integers
    for k, v in state.items():
        if k not in ("input_resolution", "context_length", "vocab_size"):
            assert torch.equal(own[k], v.float()), k
    assert victim.net.params.frozen_clip and not any(p.requires_grad for p in victim.net.clip.parameters())
    # an open_clip checkpoint of the same model (a state_dict wrapper, DataParallel prefixes) loads the same way
    wrapped = tmp_path / "open_clip.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    _, again = build(info, pretrained=str(wrapped))
    assert all(torch.equal(again.net.clip.state_dict()[k], own[k]) for k in own)
    # a file of another model is refused with the keys that do not fit
    del state["visual.proj"]
    state["visual.extra"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"victim.pretrained: .*missing \['visual.proj'\].*unexpected"):
        build(info, pretrained=str(path))


def test_openpar_promptpar_checkpoint_every_key_consumed(info, tmp_path):
    a = info.num_classes
    ckpt = openpar_checkpoint(a)
    path = tmp_path / "epoch21.pth"
    torch.save(ckpt, path)
    with pytest.raises(ConfigError, match="victim.openpar_tokens=true"):
        build(info)[0].load_checkpoint(str(path))
    builder, victim = build(info, openpar_tokens=True)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    net = victim.net
    own = net.state_dict()
    clip, fusion = ckpt["clip_model"], ckpt["model_state_dict"]
    for k in openai_clip_shapes():
        assert torch.equal(own[f"clip.{k}"], clip[k].float()), k
    assert torch.equal(net.prompts, clip["visual.transformer.prompt_deep"][:, :, 0].float())
    assert torch.equal(net.part_tokens, clip["visual.part_class_embedding"].float())
    assert net.agg_log_temperature.exp().item() == pytest.approx(
        clip["softmax_model.temperature"].float().item()
    )
    for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(own[f"agg_bn.{n}"], clip[f"agg_bn.{n}"].to(own[f"agg_bn.{n}"].dtype)), n
        assert torch.equal(own[f"head_bn.{n}"], fusion[f"bn.{n}"]), n
    for i in range(a):
        assert torch.equal(net.head_weight[i], fusion[f"weight_layer.{i}.weight"][0])
        assert torch.equal(net.head_bias[i], fusion[f"weight_layer.{i}.bias"][0])
    pairs = {"word_embed": net.text_embed, "visual_embed": net.image_embed, "norm": net.fusion_norm,
             "blocks.0.norm1": net.fusion.norm1, "blocks.0.norm2": net.fusion.norm2,
             "blocks.0.attn.proj": net.fusion.self_attn.out_proj, "blocks.0.mlp.fc1": net.fusion.linear1,
             "blocks.0.mlp.fc2": net.fusion.linear2}  # fmt: skip
    for name, module in pairs.items():
        assert torch.equal(module.weight, fusion[f"{name}.weight"]) and torch.equal(
            module.bias, fusion[f"{name}.bias"]
        )
    assert torch.equal(net.fusion.self_attn.in_proj_weight, fusion["blocks.0.attn.qkv.weight"])
    assert torch.equal(net.fusion.self_attn.in_proj_bias, fusion["blocks.0.attn.qkv.bias"])
    # every published tensor went somewhere (bar the documented void text prompts): count the values
    published = [v for k, v in {**clip, **fusion}.items() if k != "transformer.prompt_text_deep"]
    assert sum(v.numel() for v in published) == sum(v.numel() for v in own.values())
    out = victim.eval()(torch.rand(2, 3, SIZE, SIZE))
    assert out.shape == (2, 2, a) and torch.isfinite(out).all()
    # the CLIP part under test_example.py's name, and files that do not fit, with the reason
    torch.save({**{k: v for k, v in ckpt.items() if k != "clip_model"}, "ViT_model": clip}, path)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    bad = {**ckpt, "model_state_dict": {**fusion, "head.weight": torch.zeros(1)}}
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match=r"unknown fusion-model keys \['head.weight'\]"):
        builder.load_checkpoint(str(path))
    short = {**ckpt, "clip_model": {k: v for k, v in clip.items() if k != "visual.part_class_embedding"}}
    torch.save(short, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['net.part_tokens'\]"):
        load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))


def test_openpar_token_use_opens_the_part_groups_to_the_patches(info):
    _, ours = build(info)
    _, theirs = build(info, openpar_tokens=True)
    prefix, part = ours.net.prefix, int(ours.net.part_pos[0])
    assert torch.isinf(ours.net.attn_mask[prefix:, part]).all()  # advlab: patches do not see part groups
    assert (theirs.net.attn_mask[prefix:, part] == 0).all()  # OpenPAR: patch rows are unmasked
    # the part groups themselves are confined to their stripes in both
    torch.testing.assert_close(ours.net.attn_mask[part], theirs.net.attn_mask[part])


class Holder(torch.nn.Module):
    """A TorchScript module holding a state_dict under its dotted names, as OpenAI's JIT ``ViT-L-14.pt`` does."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            module: torch.nn.Module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, torch.nn.Module())
                module = getattr(module, part)
            module.register_buffer(leaf, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_openai_torchscript_archive_is_read_with_jit_load(info, tmp_path):
    state = {k: v.half() for k, v in random_state(openai_clip_shapes(), 9).items()}
    state["input_resolution"] = torch.tensor(SIZE)
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.script(Holder(state)).save(str(path))
    _, victim = build(info, pretrained=str(path))
    own = victim.net.clip.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in state.items() if k != "input_resolution")
