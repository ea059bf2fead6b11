"""``victim=promptpar``: PromptPAR (Wang et al.), pedestrian attribute recognition on an open_clip CLIP.

- **Visual deep prompts.** The token sequence entering every layer of the CLIP image encoder is
  ``[CLS, P prompts, part1, P prompts, part2, ..., part_K, P prompts, patches]`` (K = 4 part tokens, K + 1
  prompt groups; P = 10 for ViT-L/14). The prompts are replaced by a fresh learnable set at every layer (deep
  prompts); the part tokens enter at the first layer. With ``part_mask`` each part group (part token and the
  prompt group after it) attends only to itself and to the patches of its row stripe of the patch grid
  (overlapping stripes, rows 0-4 / 3-8 / 7-12 / 11-15 of 16 for ViT-L/14, scaled to other grids); the global
  group (CLS and the first prompt group) and the patches see the whole image.
- **Global-local similarity aggregator.** Cosine similarity of the CLS and part features with the attribute
  sentence features, times CLIP's ``exp(logit_scale)`` -> ``[B, K + 1, A]``; softmax over attributes with a
  learnable temperature; ``local`` = per attribute the maximum over parts where it exceeds 0.5, else the
  minimum; ``(local + global) / 2`` -> BatchNorm1d(A). Computed per sample (the official code's local loop
  keeps only the last sample of the batch; here every sample gets its own result).
- **Multi-modal fusion.** Linear embeddings of the attribute text features and of the image tokens,
  concatenated, one pre-norm transformer block (ViT-B/16 block: MLP ratio 4, GELU) and LayerNorm; a separate
  linear head per attribute token, BatchNorm1d(A).

Outputs ``[B, 2, A]``: classification logits and the aggregator's scores, trained with
``L_cls + 0.5 L_GL`` by the PAR task. CLIP is frozen when ``freeze_clip`` (the paper's split: prompts, part
tokens, aggregator, embeddings, fusion block, heads and norms train); a CLIP without pretrained weights (the
tiny embedded config) must train, so ``freeze_clip: auto`` freezes exactly when ``pretrained`` is given.

**Weights.** ``pretrained``: OpenAI / open_clip CLIP weights from a local file (OpenAI's TorchScript
``ViT-L-14.pt``, its state_dict, or an open_clip checkpoint), every key consumed and every shape checked.
``checkpoint``: advlab's own state_dict, or a released OpenPAR PromptPAR checkpoint (``model_state_dict`` for the
fusion model, ``ViT_model``/``clip_model`` for CLIP with its prompts), mapped by :func:`openpar_state_dict`;
with it ``openpar_tokens: true`` reproduces OpenPAR's token use (see the config field).

``text_prompts`` (the ASL-PAR defense) are learnable vectors added to the token embeddings right after the
start token of every attribute sentence, zero at the start: they sit before the end-of-text token that CLIP
pools, inside its causal attention, so they receive gradient (the official defense's prompts do not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_state_dict_file, read_checkpoint
from advlab.victims.configs import OPENAI_CLIP, TINY_MODEL, PromptPARConfig  # noqa: F401

CONFIG_DIR = Path(__file__).parent / "open_clip_configs"


def part_stripes(grid: int, num_parts: int) -> list[tuple[int, int]]:
    """Overlapping row ranges [start, end) of a ``grid``-row patch grid; PromptPAR's 16-row, 4-part layout is
    rows 0-4, 3-8, 7-12, 11-15 (inclusive), i.e. stripes of 5-6 rows overlapping by 2."""
    if num_parts == 4 and grid == 16:
        return [(0, 5), (3, 9), (7, 13), (11, 16)]
    bounds = torch.linspace(0, grid, num_parts + 1)
    overlap = grid / (num_parts * 8)
    out = []
    for k in range(num_parts):
        lo = max(0, int(torch.floor(bounds[k] - overlap)))
        hi = min(grid, int(torch.ceil(bounds[k + 1] + overlap)))
        out.append((lo, hi))
    return out


def load_clip(params: PromptPARConfig) -> nn.Module:
    import open_clip

    # always advlab's own file for the tiny model (another config of that name may be registered)
    if params.model_name == TINY_MODEL:
        open_clip.add_model_config(CONFIG_DIR / f"{TINY_MODEL}.json")
    if params.model_name not in open_clip.list_models():
        raise ConfigError(
            f"victim.model_name: '{params.model_name}' is not an open_clip model config "
            f"(e.g. ViT-L-14, ViT-B-16, {TINY_MODEL})"
        )
    quick = params.force_quick_gelu and params.model_name != TINY_MODEL
    clip = open_clip.create_model(params.model_name, pretrained=None, force_quick_gelu=quick)
    if params.pretrained:
        path = os.path.expanduser(params.pretrained)
        load_clip_weights(clip, clip_state_dict(read_checkpoint(path, "victim.pretrained")), path)
    return clip


# ---- checkpoint files --------------------------------------------------------------------------------------
#: integers OpenAI stores beside the weights in its CLIP archives (the model's shape, not weights)
OPENAI_METADATA = ("input_resolution", "context_length", "vocab_size")


def clip_state_dict(obj: dict[str, Any]) -> dict[str, Tensor]:
    """OpenAI / open_clip CLIP weights as open_clip names them (the same names as OpenAI's): a ``state_dict``
    wrapper and a DataParallel ``module.`` prefix removed, OpenAI's shape integers dropped (they are not weights;
    the model config gives the shape), half precision widened to float32."""
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state = {
        k.removeprefix("module."): v
        for k, v in obj.items()
        if k.removeprefix("module.") not in OPENAI_METADATA
    }
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}


def check_state_fits(model: nn.Module, state: dict[str, Tensor], source: str, key: str) -> None:
    """Every key of ``state`` is one of ``model``'s with its shape, and every one of ``model``'s is given."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shape:
            parts.append(f"shape mismatch {shape[:3]}")
        raise CheckpointError(f"{key}: '{source}' does not fit this model ({'; '.join(parts)})")


def load_clip_weights(clip: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load CLIP weights (OpenAI / open_clip names), every key consumed and every shape checked."""
    if "logit_scale" in state and state["logit_scale"].dim() != clip.logit_scale.dim():
        state = {**state, "logit_scale": state["logit_scale"].reshape(clip.logit_scale.shape)}
    check_state_fits(clip, state, source, "victim.pretrained")
    clip.load_state_dict(state)


#: OpenPAR PromptPAR checkpoint (``train.py``: ``{'epoch', 'optimizer', 'model_state_dict', 'clip_model',
#: 'result'}``; ``test_example.py`` reads the CLIP part as ``'ViT_model'``): the fusion model's names -> ours
OPENPAR_FUSION = {
    "word_embed.weight": "text_embed.weight",
    "word_embed.bias": "text_embed.bias",
    "visual_embed.weight": "image_embed.weight",
    "visual_embed.bias": "image_embed.bias",
    "norm.weight": "fusion_norm.weight",
    "norm.bias": "fusion_norm.bias",
    "blocks.0.norm1.weight": "fusion.norm1.weight",
    "blocks.0.norm1.bias": "fusion.norm1.bias",
    "blocks.0.attn.qkv.weight": "fusion.self_attn.in_proj_weight",  # rows q, k, v as nn.MultiheadAttention
    "blocks.0.attn.qkv.bias": "fusion.self_attn.in_proj_bias",
    "blocks.0.attn.proj.weight": "fusion.self_attn.out_proj.weight",
    "blocks.0.attn.proj.bias": "fusion.self_attn.out_proj.bias",
    "blocks.0.norm2.weight": "fusion.norm2.weight",
    "blocks.0.norm2.bias": "fusion.norm2.bias",
    "blocks.0.mlp.fc1.weight": "fusion.linear1.weight",
    "blocks.0.mlp.fc1.bias": "fusion.linear1.bias",
    "blocks.0.mlp.fc2.weight": "fusion.linear2.weight",
    "blocks.0.mlp.fc2.bias": "fusion.linear2.bias",
}
#: OpenPAR's trainable additions inside its CLIP: names -> ours (``prompt_deep``/``softmax_model`` converted)
OPENPAR_CLIP_EXTRAS = {
    "visual.part_class_embedding": "part_tokens",
    **{
        f"agg_bn.{n}": f"agg_bn.{n}"
        for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    },
}
#: keys consumed but not loaded, with the reason
OPENPAR_IGNORED = {
    "transformer.prompt_text_deep": "OpenPAR's deep text prompts are appended after the 77 sentence tokens, behind "
    "CLIP's causal mask, so the pooled end-of-text feature never sees them: they do not change any output",
}
#: top-level entries of the file that are not weights
OPENPAR_NON_WEIGHTS = ("epoch", "optimizer", "result", "metric")


def is_openpar_checkpoint(obj: dict[str, Any]) -> bool:
    return "model_state_dict" in obj and ("ViT_model" in obj or "clip_model" in obj)


def openpar_state_dict(obj: dict[str, Any], source: str) -> dict[str, Tensor]:
    """An OpenPAR PromptPAR checkpoint as the bare :class:`PromptPARNet` state_dict. Every published key is
    mapped or listed in :data:`OPENPAR_IGNORED` (with the reason); any other key is an error."""
    unknown = sorted(set(obj) - {"model_state_dict", "ViT_model", "clip_model", *OPENPAR_NON_WEIGHTS})
    if unknown:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' has entries {unknown} that OpenPAR's files do not"
        )
    fusion = {k.removeprefix("module."): v for k, v in obj["model_state_dict"].items()}
    clip_part = clip_state_dict(obj["ViT_model"] if "ViT_model" in obj else obj["clip_model"])
    out: dict[str, Tensor] = {}
    leftover = []
    for k, v in fusion.items():
        head = k.split(".")
        if k in OPENPAR_FUSION:
            out[OPENPAR_FUSION[k]] = v.float()
        elif head[0] == "weight_layer" and len(head) == 3:
            continue  # stacked below
        elif head[0] == "bn" and len(head) == 2:
            out[f"head_bn.{head[1]}"] = v
        else:
            leftover.append(k)
    heads = sorted({int(k.split(".")[1]) for k in fusion if k.startswith("weight_layer.")})
    if heads:
        if heads != list(range(len(heads))):
            raise CheckpointError(
                f"victim.checkpoint: '{source}': weight_layer indices {heads} are not 0..A-1"
            )
        out["head_weight"] = torch.cat([fusion[f"weight_layer.{i}.weight"].float() for i in heads])  # [A, D]
        out["head_bias"] = torch.cat([fusion[f"weight_layer.{i}.bias"].float() for i in heads])  # [A]
    for k, v in clip_part.items():
        if k in OPENPAR_IGNORED:
            continue
        if (
            k == "visual.transformer.prompt_deep"
        ):  # [vis_depth, prompts, 1, width] -> [layers, prompts, width]
            out["prompts"] = v[:, :, 0]
        elif k == "softmax_model.temperature":  # softmax(s / T): our parameter is log T
            if float(v) <= 0:
                raise CheckpointError(f"victim.checkpoint: '{source}': softmax temperature {float(v)} <= 0")
            out["agg_log_temperature"] = v.reshape(()).log()
        elif k in OPENPAR_CLIP_EXTRAS:
            out[OPENPAR_CLIP_EXTRAS[k]] = v
        else:
            out[f"clip.{k}"] = v
    if leftover:
        raise CheckpointError(f"victim.checkpoint: '{source}': unknown fusion-model keys {leftover[:5]}")
    if "token_embedding.weight" in clip_part:  # OpenPAR's own text prompts are void (above): ours are empty
        out["text_ctx"] = torch.zeros(0, clip_part["token_embedding.weight"].shape[1])
    return out


class PromptPARNet(nn.Module):
    """Images normalised by the wrapper -> ``[B, 2, A]`` (logits, global-local scores)."""

    def __init__(self, clip: nn.Module, text_tokens: Tensor, params: PromptPARConfig):
        super().__init__()
        self.clip = clip
        self.params = params
        visual = clip.visual
        width = visual.transformer.width
        layers = len(visual.transformer.resblocks)
        dim = visual.output_dim
        self.image_size = tuple(visual.image_size) if isinstance(visual.image_size, tuple | list) else (
            visual.image_size, visual.image_size)  # fmt: skip
        self.grid = tuple(visual.grid_size)
        a = text_tokens.shape[0]
        k, p = params.num_parts, params.prompts_per_group
        self.register_buffer("text_tokens", text_tokens, persistent=False)
        self.prompts = nn.Parameter(torch.randn(layers, (k + 1) * p, width) * 0.02)
        self.part_tokens = nn.Parameter(torch.randn(k, width) * 0.02)
        self.text_ctx = nn.Parameter(torch.zeros(params.text_prompts, clip.token_embedding.embedding_dim))
        self.agg_log_temperature = nn.Parameter(torch.zeros(()))
        self.agg_bn = nn.BatchNorm1d(a)
        self.text_embed = nn.Linear(dim, dim)
        self.image_embed = nn.Linear(dim, dim)
        self.fusion = nn.TransformerEncoderLayer(
            dim, max(1, dim // 64), 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
            layer_norm_eps=1e-6,
        )  # fmt: skip
        self.fusion_norm = nn.LayerNorm(dim, eps=1e-6)  # a ViT-B/16 block and norm (timm: eps 1e-6)
        self.head_weight = nn.Parameter(torch.randn(a, dim) * dim**-0.5)
        self.head_bias = nn.Parameter(torch.zeros(a))
        self.head_bn = nn.BatchNorm1d(a)
        # token layout: [CLS, group 0 prompts, (part_k, group k prompts) for k = 1..K, patches]
        self.prefix = 1 + (k + 1) * p + k
        prompt_pos, part_pos = list(range(1, 1 + p)), []
        for j in range(k):
            part_pos.append(1 + p + j * (p + 1))
            prompt_pos += list(range(part_pos[-1] + 1, part_pos[-1] + 1 + p))
        self.register_buffer("prompt_pos", torch.tensor(prompt_pos, dtype=torch.long), persistent=False)
        self.register_buffer("part_pos", torch.tensor(part_pos, dtype=torch.long), persistent=False)
        self.register_buffer("attn_mask", self._mask() if params.part_mask else None, persistent=False)
        if params.frozen_clip:
            clip.requires_grad_(False)
        self._text_cache: tuple[Any, Tensor] | None = None

    def _mask(self) -> Tensor:
        """Additive attention mask [S, S] (0 allowed, -inf blocked) confining each part group to its stripe."""
        k, p = self.params.num_parts, self.params.prompts_per_group
        gh, gw = self.grid
        s = self.prefix + gh * gw
        allowed = torch.ones(s, s, dtype=torch.bool)
        patch_rows = torch.arange(gh * gw) // gw
        for j, (lo, hi) in enumerate(part_stripes(gh, k)):
            start = 1 + p + j * (p + 1)
            group = torch.zeros(s, dtype=torch.bool)
            group[start : start + p + 1] = True
            keys = group.clone()
            keys[self.prefix :] = (patch_rows >= lo) & (patch_rows < hi)
            allowed[group] = keys
            if not self.params.openpar_tokens:  # OpenPAR lets the patches attend to the part groups
                allowed[~group & torch.arange(s).ge(self.prefix), start : start + p + 1] = False
        mask = torch.zeros(s, s)
        mask[~allowed] = float("-inf")
        return mask

    # ---- text ----------------------------------------------------------------------------------------
    def _text_params(self, text_ctx: Tensor) -> list[Tensor]:
        c = self.clip
        mods = [c.token_embedding, c.transformer, c.ln_final]
        ps = [p for m in mods for p in m.parameters()] + [c.positional_embedding]
        if text_ctx.numel():
            ps.append(text_ctx)
        if isinstance(c.text_projection, nn.Parameter):
            ps.append(c.text_projection)
        elif c.text_projection is not None:
            ps += list(c.text_projection.parameters())
        return ps

    def encode_text(self, text_ctx: Tensor | None = None) -> Tensor:
        """Attribute sentence features ``[A, D]`` with the text prompts ``text_ctx`` (default: the victim's own
        ``self.text_ctx``), cached while no text parameter trains or changes."""
        text_ctx = self.text_ctx if text_ctx is None else text_ctx
        params = self._text_params(text_ctx)
        if not any(p.requires_grad for p in params):
            key = (
                self.text_tokens.device,
                tuple(p._version for p in params),
                tuple(p.data_ptr() for p in params),
            )
            if self._text_cache is None or self._text_cache[0] != key:
                with torch.no_grad():
                    self._text_cache = (key, self._encode_text(text_ctx))
            return self._text_cache[1]
        self._text_cache = None
        return self._encode_text(text_ctx)

    def _encode_text(self, text_ctx: Tensor) -> Tensor:
        from open_clip.transformer import text_global_pool

        c, tokens = self.clip, self.text_tokens
        x = c.token_embedding(tokens)
        n = text_ctx.shape[0]
        if n:
            x = torch.cat([x[:, :1], x[:, 1 : 1 + n] + text_ctx, x[:, 1 + n :]], dim=1)
        x = x + c.positional_embedding
        x = c.transformer(x, attn_mask=c.attn_mask)
        x = c.ln_final(x)
        x = text_global_pool(x, tokens, c.text_pool_type, eos_token_id=getattr(c, "text_eos_id", None))
        proj = c.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    # ---- image ---------------------------------------------------------------------------------------
    def encode_image(self, x: Tensor) -> Tensor:
        """Projected output tokens ``[B, S, D]`` of the prompted image encoder (layout: see module doc)."""
        v = self.clip.visual
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        x = v.conv1(x).flatten(2).transpose(1, 2)  # [B, N, W]
        b = x.shape[0]
        cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        width = x.shape[-1]
        prefix = x.new_zeros(b, self.prefix, width)
        prefix[:, 0] = x[:, 0]
        prefix = prefix.index_copy(1, self.part_pos, self.part_tokens.expand(b, -1, -1))
        x = v.ln_pre(torch.cat([prefix, x[:, 1:]], dim=1))
        tr = v.transformer
        if not tr.batch_first:
            x = x.transpose(0, 1)
        seq_dim = 0 if not tr.batch_first else 1
        for layer, block in enumerate(tr.resblocks):
            if self.prompt_pos.numel():
                prompts = self.prompts[layer].to(x.dtype)
                prompts = prompts.expand(b, -1, -1) if tr.batch_first else prompts[:, None].expand(-1, b, -1)
                x = x.index_copy(seq_dim, self.prompt_pos, prompts)
            x = block(x, attn_mask=self.attn_mask)
        if not tr.batch_first:
            x = x.transpose(0, 1)
        x = v.ln_post(x)
        return x @ v.proj if v.proj is not None else x

    # ---- heads ---------------------------------------------------------------------------------------
    def aggregate(self, image_feats: Tensor, text_feats: Tensor) -> Tensor:
        """Global-local similarity before the BatchNorm: ``[B, 1 + K, D]`` x ``[A, D]`` -> ``[B, A]``, each
        sample on its own."""
        sim = (
            self.clip.logit_scale.exp() * F.normalize(image_feats, dim=-1) @ F.normalize(text_feats, dim=-1).T
        )
        prob = torch.softmax(sim / self.agg_log_temperature.exp(), dim=-1)  # over attributes
        glob, parts = prob[:, 0], prob[:, 1:]
        high, low = parts.amax(1), parts.amin(1)
        local = torch.where(high > 0.5, high, low)
        return (local + glob) / 2

    def forward(self, x: Tensor, text_ctx: Tensor | None = None) -> Tensor:
        """``text_ctx``: text prompts to use instead of the victim's own (the defense's, which stay out of the
        victim so that the undefended victim is unchanged by the defense's fine-tuning)."""
        text = self.encode_text(text_ctx)  # [A, D]
        tokens = self.encode_image(x)  # [B, S, D]
        if self.params.openpar_tokens:  # global = first prompt token; every token fused (OpenPAR's code)
            glob, keep = tokens[:, 1:2], tokens
        else:
            glob = tokens[:, :1]
            keep = torch.cat([glob, tokens[:, self.part_pos], tokens[:, self.prefix :]], dim=1)
        gl = self.agg_bn(self.aggregate(torch.cat([glob, tokens[:, self.part_pos]], dim=1), text))
        a = text.shape[0]
        fused = torch.cat([self.text_embed(text).expand(x.shape[0], -1, -1), self.image_embed(keep)], dim=1)
        fused = self.fusion_norm(self.fusion(fused))[:, :a]
        logits = self.head_bn((fused * self.head_weight).sum(-1) + self.head_bias)
        return torch.stack([logits, gl], dim=1)

    def train(self, mode: bool = True) -> PromptPARNet:
        super().train(mode)
        if self.params.frozen_clip:
            self.clip.eval()  # the frozen backbone keeps inference behaviour (no dropout)
        return self


class PromptPARVictim(Victim):
    """The wrapper with PromptPAR's optimiser groups (see :meth:`param_groups`)."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Trainable parameters grouped by learning rate: prompts (and text prompts) at
        ``prompt_lr_scale * lr``, a trainable CLIP at ``clip_lr_scale * lr``, everything else at ``lr``."""
        net: PromptPARNet = self.net  # type: ignore[assignment]
        p = net.params
        prompts = [net.prompts, net.part_tokens, net.text_ctx]
        ids = {id(t) for t in prompts}
        clip = [t for t in net.clip.parameters() if id(t) not in ids]
        ids |= {id(t) for t in clip}
        rest = [t for t in net.parameters() if id(t) not in ids]
        groups = [
            {"params": [t for t in prompts if t.requires_grad], "lr": lr * p.prompt_lr_scale},
            {"params": [t for t in clip if t.requires_grad], "lr": lr * p.clip_lr_scale},
            {"params": [t for t in rest if t.requires_grad], "lr": lr},
        ]
        return [g for g in groups if g["params"]]


def attribute_sentences(info: DataInfo) -> list[str]:
    sentences = list(getattr(info, "sentences", []) or [])
    return sentences or [f"A pedestrian with the attribute {n.replace('_', ' ')}" for n in info.class_names]


@VICTIMS.register("promptpar")
class PromptPAR(VictimBuilder):
    Config = PromptPARConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        import open_clip

        sentences = attribute_sentences(info)
        if len(sentences) != num_outputs:
            raise ConfigError(f"victim: {len(sentences)} attribute sentences for {num_outputs} attributes")
        clip = load_clip(self.params)
        tokens = open_clip.get_tokenizer(self.params.model_name)(sentences)
        return PromptPARNet(clip, tokens, self.params)

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """``victim.checkpoint``: advlab's own state_dict, or a released OpenPAR PromptPAR checkpoint (its CLIP
        inside: ``victim.pretrained`` is then not needed), mapped by :func:`openpar_state_dict`."""
        obj = read_checkpoint(path, "victim.checkpoint")
        if is_openpar_checkpoint(obj):
            if not self.params.openpar_tokens:
                raise ConfigError(
                    f"victim.checkpoint: '{path}' is an OpenPAR PromptPAR checkpoint; its weights were trained with "
                    "OpenPAR's token use: set victim.openpar_tokens=true (or use victim=promptpar_openpar)"
                )
            return openpar_state_dict(obj, str(path))
        return load_state_dict_file(path)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        # CLIP's own input normalisation for PromptPAR is mean 0.5, std 0.5
        return PromptPARVictim(self.build_net(info, num_outputs), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
