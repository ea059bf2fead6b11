"""``victim=mambapar``: MambaPAR (Wang, Kong, et al., *An Empirical Study of Mamba-based Pedestrian Attribute
Recognition*, OpenPAR ``MambaPAR_Empirical_Study``; its ``train.sh`` setting: Vim vision branch + Mamba text
branch + Mamba fusion), in pure PyTorch (no compiled kernels).

- **Vision branch** (Vim, ``vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2``):
  a patch embedding, a class token inserted in the *middle* of the patch sequence, absolute position
  embeddings, ``depth`` pre-norm residual Mamba blocks (RMSNorm, residual kept in float32) whose mixer scans the
  sequence forwards and backwards with separate parameters ("bimamba v2") and averages the two (``div2``), a final
  RMSNorm over residual + output. All tokens go on ``[B, M + 1, vision_width]`` -> ``Linear`` -> ``dim``.
- **Text branch**: a Mamba language-model backbone (mamba-130M: 24 layers, width 768) over the tokenised
  attribute words, padded to ``text_length`` (10) tokens, averaged over the tokens (padding included, as the
  official code) -> ``Linear`` -> ``dim``.
- **Fusion** (the official "VSF"): the visual tokens (plus a learnable type embedding) and the attribute tokens
  (plus theirs) concatenated, two Mamba blocks used as ``x = mixer(norm(x)) + x``, RMSNorm; one linear head per
  attribute token (the last A tokens), BatchNorm1d(A). Output: logits ``[B, A]``.

The selective scan is written in PyTorch (:func:`selective_scan`): batched over samples, channels and states,
a loop over the sequence positions only. ``checkpoint`` also reads MambaPAR's own files (``save_ckpt``:
``{'state_dicts', 'epoch', 'metric'}``, keys ``vim.*``, ``vim_proj``, ``vis_embed``, ``mamba.backbone.*``,
``word_proj``, ``tex_embed``, ``VSF_mamba.{0,1}.*``, ``norm``, ``weight_layer.<i>``, ``bn``), mapped by
:func:`mambapar_state_dict`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_state_dict_file, read_checkpoint
from advlab.victims.configs import MambaPARConfig  # noqa: F401


def selective_scan(u: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, z: Tensor) -> Tensor:
    """Mamba's selective scan, ``u, delta, z: [B, D, L]``, ``a: [D, N]``, ``b, c: [B, N, L]``, ``d: [D]``
    (``delta`` already through softplus): ``h_t = exp(delta_t a) h_{t-1} + delta_t b_t u_t``,
    ``y_t = c_t . h_t + d u_t``, output ``y * silu(z)``."""
    da = torch.exp(delta.unsqueeze(-1) * a[:, None, :])  # [B, D, L, N]
    dbu = (delta * u).unsqueeze(-1) * b.transpose(1, 2).unsqueeze(1)  # [B, D, L, N]
    h = u.new_zeros(u.shape[0], u.shape[1], a.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = da[:, :, t] * h + dbu[:, :, t]
        ys.append(h)
    hs = torch.stack(ys, dim=2)  # [B, D, L, N]
    y = (hs * c.transpose(1, 2).unsqueeze(1)).sum(-1) + d[:, None] * u
    return y * F.silu(z)


class MambaMixer(nn.Module):
    """The Mamba mixer (parameter names of ``mamba_ssm``'s ``Mamba``); ``bidirectional``: Vim's "bimamba v2",
    a second scan over the reversed sequence with its own ``*_b`` parameters, the two averaged."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, bidirectional: bool = False):
        super().__init__()
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.bidirectional = bidirectional
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        for suffix in ("", "_b") if bidirectional else ("",):
            conv = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
            setattr(self, f"conv1d{suffix}", conv)
            setattr(self, f"x_proj{suffix}", nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False))
            dt = nn.Linear(self.dt_rank, self.d_inner)
            with torch.no_grad():  # mamba's dt initialisation: softplus^-1 of dt in [1e-3, 1e-1], log-uniform
                step = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                dt.bias.copy_(step + torch.log(-torch.expm1(-step)))
            setattr(self, f"dt_proj{suffix}", dt)
            a_log = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
            setattr(self, "A_log" if not suffix else "A_b_log", nn.Parameter(a_log))
            setattr(self, f"D{suffix}", nn.Parameter(torch.ones(self.d_inner)))

    def scan(self, x: Tensor, z: Tensor, suffix: str) -> Tensor:
        """One direction: ``x, z: [B, d_inner, L]`` -> ``[B, d_inner, L]``."""
        length = x.shape[-1]
        x = F.silu(getattr(self, f"conv1d{suffix}")(x)[..., :length])
        dbl = getattr(self, f"x_proj{suffix}")(x.transpose(1, 2))  # [B, L, r + 2N]
        dt, b, c = dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt_proj = getattr(self, f"dt_proj{suffix}")
        delta = F.softplus(dt @ dt_proj.weight.T + dt_proj.bias).transpose(1, 2)  # [B, d_inner, L]
        a = -torch.exp(getattr(self, "A_log" if not suffix else "A_b_log").float())
        d = getattr(self, f"D{suffix}")
        return selective_scan(x, delta, a, b.transpose(1, 2), c.transpose(1, 2), d, z)

    def forward(self, h: Tensor) -> Tensor:
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # [B, d_inner, L] each
        y = self.scan(x, z, "")
        if self.bidirectional:
            y = (y + self.scan(x.flip(-1), z.flip(-1), "_b").flip(-1)) / 2  # Vim's div2
        return self.out_proj(y.transpose(1, 2))


class MambaBlock(nn.Module):
    """``mamba_ssm``'s pre-norm block: ``residual = h + residual; h = mixer(norm(residual))`` (residual in
    float32); returns ``(h, residual)``."""

    def __init__(self, d_model: int, params: MambaPARConfig, bidirectional: bool = False):
        super().__init__()
        self.mixer = MambaMixer(d_model, params.d_state, params.d_conv, params.expand, bidirectional)
        self.norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, h: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        residual = h if residual is None else residual + h
        residual = residual.float()
        return self.mixer(self.norm(residual.to(self.norm.weight.dtype))), residual


class VisionMamba(nn.Module):
    """Vim with a middle class token; returns every token after the final norm, ``[B, M + 1, width]``."""

    def __init__(self, image_size: tuple[int, int], params: MambaPARConfig):
        super().__init__()
        width, p = params.vision_width, params.patch_size
        grid = (image_size[0] // p, image_size[1] // p)
        self.patch_embed = nn.Conv2d(3, width, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, grid[0] * grid[1] + 1, width) * 0.02)
        self.layers = nn.ModuleList(
            MambaBlock(width, params, bidirectional=True) for _ in range(params.vision_depth)
        )
        self.norm_f = nn.RMSNorm(width, eps=1e-5)
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, M, W]
        mid = x.shape[1] // 2
        x = (
            torch.cat([x[:, :mid], self.cls_token.expand(x.shape[0], -1, -1), x[:, mid:]], dim=1)
            + self.pos_embed
        )
        h, residual = x, None
        for layer in self.layers:
            h, residual = layer(h, residual)
        return self.norm_f((residual + h).to(self.norm_f.weight.dtype))


class MambaTextModel(nn.Module):
    """The Mamba language-model backbone (``MixerModel``): embedding, blocks, final norm -> ``[A, T, width]``."""

    def __init__(self, params: MambaPARConfig):
        super().__init__()
        self.embedding = nn.Embedding(params.text_vocab, params.text_width)
        self.layers = nn.ModuleList(MambaBlock(params.text_width, params) for _ in range(params.text_depth))
        self.norm_f = nn.RMSNorm(params.text_width, eps=1e-5)

    def forward(self, tokens: Tensor) -> Tensor:
        h, residual = self.embedding(tokens), None
        for layer in self.layers:
            h, residual = layer(h, residual)
        return self.norm_f((residual + h).to(self.norm_f.weight.dtype))


def tokenize_words(words: list[str], params: MambaPARConfig) -> Tensor:
    """``[A, text_length]`` token ids of the attribute words, padded / truncated as the official
    ``tokenizer(words, padding='max_length', max_length=10)``."""
    n = params.text_length
    if params.tokenizer == "bytes":
        rows = [[b + 1 for b in w.encode("utf-8")][:n] for w in words]
        return torch.tensor([r + [0] * (n - len(r)) for r in rows], dtype=torch.long)
    from transformers import AutoTokenizer  # a local folder: no download

    tok = AutoTokenizer.from_pretrained(params.tokenizer, local_files_only=True)
    return tok(words, return_tensors="pt", padding="max_length", max_length=n, truncation=True).input_ids


class MambaPARNet(nn.Module):
    def __init__(self, image_size: tuple[int, int], tokens: Tensor, params: MambaPARConfig):
        super().__init__()
        dim = params.text_width  # the fusion blocks are text-model blocks (official: copies of its last two)
        a = tokens.shape[0]
        self.vision = VisionMamba(image_size, params)
        self.vision_proj = nn.Linear(params.vision_width, dim)
        self.vision_type_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.text_model = MambaTextModel(params)
        self.text_proj = nn.Linear(params.text_width, dim)
        self.text_type_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.fusion_layers = nn.ModuleList(MambaBlock(dim, params) for _ in range(params.fusion_layers))
        self.fusion_norm = nn.RMSNorm(dim, eps=1e-5)
        self.head_weight = nn.Parameter(torch.randn(a, dim) * dim**-0.5)
        self.head_bias = nn.Parameter(torch.zeros(a))
        self.head_bn = nn.BatchNorm1d(a)
        self.register_buffer("tokens", tokens, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        vis = self.vision_proj(self.vision(x)) + self.vision_type_embed  # [B, M + 1, dim]
        words = self.text_model(self.tokens).mean(1)  # [A, width], padding included (official)
        text = self.text_proj(words).expand(x.shape[0], -1, -1) + self.text_type_embed  # [B, A, dim]
        h = torch.cat([vis, text], dim=1)
        for layer in self.fusion_layers:  # official VSF: x = block(x)[0] + x = mixer(norm(x)) + x
            h = layer.mixer(layer.norm(h)) + h
        h = self.fusion_norm(h)[:, -text.shape[1] :]
        return self.head_bn((h * self.head_weight).sum(-1) + self.head_bias)


#: MambaPAR file prefixes -> ours (module names that say what they are)
MAMBAPAR_PREFIXES = {
    "vim.": "vision.",
    "vim_proj.": "vision_proj.",
    "mamba.backbone.": "text_model.",
    "word_proj.": "text_proj.",
    "VSF_mamba.": "fusion_layers.",
    "norm.": "fusion_norm.",
    "bn.": "head_bn.",
}
MAMBAPAR_RENAMES = {
    "vis_embed": "vision_type_embed",
    "tex_embed": "text_type_embed",
    "vim.patch_embed.proj.weight": "vision.patch_embed.weight",
    "vim.patch_embed.proj.bias": "vision.patch_embed.bias",
}
#: keys consumed but not loaded, with the reason
MAMBAPAR_IGNORED = {
    "vim.head.": "Vim's classification head (create_model(num_classes=...)); MambaPAR's forward never uses it",
    "mamba.lm_head.": "the language-model head, tied to the embedding; the text branch uses the backbone only",
}


def mambapar_state_dict(obj: dict[str, Any], source: str) -> dict[str, Tensor]:
    """A MambaPAR checkpoint (``save_ckpt``'s ``{'state_dicts': ...}``) as :class:`MambaPARNet`'s state_dict."""
    state = {k.removeprefix("module."): v for k, v in obj["state_dicts"].items()}
    out: dict[str, Tensor] = {}
    heads: dict[int, dict[str, Tensor]] = {}
    for k, v in state.items():
        if any(k.startswith(p) for p in MAMBAPAR_IGNORED):
            continue
        v = v.float() if v.is_floating_point() else v
        if k.startswith("weight_layer."):
            _, i, name = k.split(".")
            heads.setdefault(int(i), {})[name] = v
        elif k in MAMBAPAR_RENAMES:
            out[MAMBAPAR_RENAMES[k]] = v
        else:
            prefix = next((p for p in MAMBAPAR_PREFIXES if k.startswith(p)), None)
            if prefix is None:
                raise CheckpointError(f"victim.checkpoint: '{source}': unknown MambaPAR key '{k}'")
            out[MAMBAPAR_PREFIXES[prefix] + k[len(prefix) :]] = v
    if heads:
        if sorted(heads) != list(range(len(heads))):
            raise CheckpointError(f"victim.checkpoint: '{source}': weight_layer indices are not 0..A-1")
        out["head_weight"] = torch.cat([heads[i]["weight"] for i in range(len(heads))])
        out["head_bias"] = torch.cat([heads[i]["bias"] for i in range(len(heads))])
    return out


@VICTIMS.register("mambapar")
class MambaPAR(VictimBuilder):
    Config = MambaPARConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        words = [n.replace("_", " ") for n in info.class_names]
        size = tuple(info.image_shape[-2:])
        if len(words) != num_outputs:
            raise CheckpointError(f"victim: {len(words)} attribute words for {num_outputs} attributes")
        return MambaPARNet(size, tokenize_words(words, self.params), self.params)  # type: ignore[arg-type]

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(
            self.build_net(info, num_outputs), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        )  # official Normalize

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """advlab's own state_dict, or a MambaPAR ``save_ckpt`` file (mapped by :func:`mambapar_state_dict`)."""
        obj = read_checkpoint(path, "victim.checkpoint")
        if "state_dicts" in obj and isinstance(obj["state_dicts"], dict):
            return mambapar_state_dict(obj, str(path))
        return load_state_dict_file(path)
