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
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
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

    if params.model_name == TINY_MODEL and TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR / f"{TINY_MODEL}.json")
    if params.model_name not in open_clip.list_models():
        raise ConfigError(
            f"victim.model_name: '{params.model_name}' is not an open_clip model config "
            f"(e.g. ViT-L-14, ViT-B-16, {TINY_MODEL})"
        )
    pretrained = os.path.expanduser(params.pretrained) if params.pretrained else None
    quick = params.force_quick_gelu and params.model_name != TINY_MODEL
    return open_clip.create_model(params.model_name, pretrained=pretrained, force_quick_gelu=quick)


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
            dim, max(1, dim // 64), 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.fusion_norm = nn.LayerNorm(dim)
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
            allowed[~group & torch.arange(s).ge(self.prefix), start : start + p + 1] = False  # patches
        mask = torch.zeros(s, s)
        mask[~allowed] = float("-inf")
        return mask

    # ---- text ----------------------------------------------------------------------------------------
    def _text_params(self) -> list[Tensor]:
        c = self.clip
        mods = [c.token_embedding, c.transformer, c.ln_final]
        ps = [p for m in mods for p in m.parameters()] + [c.positional_embedding]
        if self.text_ctx.numel():
            ps.append(self.text_ctx)
        if isinstance(c.text_projection, nn.Parameter):
            ps.append(c.text_projection)
        elif c.text_projection is not None:
            ps += list(c.text_projection.parameters())
        return ps

    def encode_text(self) -> Tensor:
        """Attribute sentence features ``[A, D]`` (cached while no text parameter trains or changes)."""
        params = self._text_params()
        if not any(p.requires_grad for p in params):
            key = (
                self.text_tokens.device,
                tuple(p._version for p in params),
                tuple(p.data_ptr() for p in params),
            )
            if self._text_cache is None or self._text_cache[0] != key:
                with torch.no_grad():
                    self._text_cache = (key, self._encode_text())
            return self._text_cache[1]
        self._text_cache = None
        return self._encode_text()

    def _encode_text(self) -> Tensor:
        from open_clip.transformer import text_global_pool

        c, tokens = self.clip, self.text_tokens
        x = c.token_embedding(tokens)
        n = self.text_ctx.shape[0]
        if n:
            x = torch.cat([x[:, :1], x[:, 1 : 1 + n] + self.text_ctx, x[:, 1 + n :]], dim=1)
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

    def forward(self, x: Tensor) -> Tensor:
        text = self.encode_text()  # [A, D]
        tokens = self.encode_image(x)  # [B, S, D]
        keep = torch.cat([tokens[:, :1], tokens[:, self.part_pos], tokens[:, self.prefix :]], dim=1)
        gl = self.agg_bn(self.aggregate(keep[:, : 1 + self.params.num_parts], text))
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

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        # CLIP's own input normalisation for PromptPAR is mean 0.5, std 0.5
        return PromptPARVictim(self.build_net(info, num_outputs), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
