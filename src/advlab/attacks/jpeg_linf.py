"""JPEG-Linf (Kang et al. 2019, used by Laidlaw et al. 2021): a perturbation of the image's JPEG
coefficients, as the authors' code (``advex_uar/attacks/jpeg.py``, ``jpeg_attack.py``) defines it.

The image (0-255 scale) is converted to YCbCr (JPEG, full range); with ``chroma_subsampling`` (4:2:0, the
authors') Cb and Cr are averaged over 2x2 pixels; each channel is split into 8x8 blocks and transformed by
the orthonormal DCT-II; the coefficients divided by the quality-50 quantisation tables (luminance for Y,
chrominance for Cb/Cr) are moved by ``(eps / 2) * r`` with ``||r||_inf <= 1``: the authors' ``eps`` allows a
change of half that many quantisation steps per coefficient (their "noisy rounding" ``c + eps (u - 0.5)``
with ``u = 0.5 + 0.5 r``). Then dequantisation, inverse DCT, chroma upsampled by repetition, RGB, clipped to
[0, 1]. With 4:2:0 the round trip itself is lossy (the chroma resolution halves), as in the authors' code.
PGD with signed steps of ``step_size`` (default ``eps / sqrt(steps)``, the authors') on ``r`` scaled by eps,
from a uniform random start. Image sides are padded (replicate) to multiples of 16 (8 without
subsampling); grey images use the luminance table only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import JPEGLinfConfig

# ITU-T T.81 Annex K quantisation tables (quality 50)
LUMA_Q = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
CHROMA_Q = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
]
CHROMA_Q += [[47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4


def dct_matrix(n: int = 8, device=None, dtype=torch.float32) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (``D @ block @ D.T`` is the 2-D DCT)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)


def to_blocks(x: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, C, H/8, W/8, 8, 8]."""
    n, c, h, w = x.shape
    return x.view(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)


def from_blocks(b: Tensor) -> Tensor:
    n, c, hb, wb, _, _ = b.shape
    return b.permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)


def jpeg_coefficients(x: Tensor, subsample: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Block DCT of the level-shifted YCbCr image (0-255 scale): [N, C, H/8, W/8, 8, 8]; with ``subsample``
    (RGB only) the pair (luma [N, 1, H/8, W/8, 8, 8], chroma of the 2x2-averaged Cb, Cr [N, 2, H/16, ...])."""
    import kornia  # imported lazily: kornia takes seconds to import

    ycc = kornia.color.rgb_to_ycbcr(x) if x.shape[1] == 3 else x
    d = dct_matrix(device=x.device, dtype=x.dtype)
    if not (subsample and x.shape[1] == 3):
        return d @ to_blocks(ycc * 255 - 128) @ d.T
    luma, chroma = ycc[:, :1], F.avg_pool2d(ycc[:, 1:], 2)
    return d @ to_blocks(luma * 255 - 128) @ d.T, d @ to_blocks(chroma * 255 - 128) @ d.T


def from_coefficients(coef: Tensor | tuple[Tensor, Tensor], channels: int) -> Tensor:
    """Inverse of :func:`jpeg_coefficients` (subsampled chroma upsampled by repetition), clipped to [0, 1]."""
    import kornia

    def image(c: Tensor) -> Tensor:
        d = dct_matrix(device=c.device, dtype=c.dtype)
        return (from_blocks(d.T @ c @ d) + 128) / 255

    if isinstance(coef, tuple):
        chroma = image(coef[1]).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        ycc = torch.cat([image(coef[0]), chroma], 1)
    else:
        ycc = image(coef)
    return (kornia.color.ycbcr_to_rgb(ycc) if channels == 3 else ycc).clamp(0, 1)


def quant_table(channels: int, device, dtype) -> Tensor:
    luma = torch.tensor(LUMA_Q, device=device, dtype=dtype)
    if channels == 1:
        return luma.view(1, 1, 1, 1, 8, 8)
    chroma = torch.tensor(CHROMA_Q, device=device, dtype=dtype)
    return torch.stack([luma, chroma, chroma]).view(1, 3, 1, 1, 8, 8)


@ATTACKS.register("jpeg_linf")
class JPEGLinf(Attack):
    """JPEG-Linf: each JPEG coefficient moves by at most eps/2 quantisation steps (4:2:0 chroma)."""

    Config = JPEGLinfConfig
    norm = None
    paper = "Kang, Sun, Hendrycks, Brown & Steinhardt, Testing Robustness Against Unforeseen Adversaries, arXiv 2019"
    url = "https://arxiv.org/abs/1908.08016"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        n, c, h, w = x.shape
        sub = p.chroma_subsampling and c == 3
        m = 16 if sub else 8
        pad_h, pad_w = (-h) % m, (-w) % m
        xp = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        alpha = p.step_size if p.step_size is not None else p.eps / math.sqrt(p.steps)
        coef = jpeg_coefficients(xp, subsample=sub)
        parts = coef if sub else (coef,)
        tables = (
            (quant_table(1, x.device, x.dtype), quant_table(3, x.device, x.dtype)[:, 1:])
            if sub
            else (quant_table(c, x.device, x.dtype),)
        )

        def start(t: Tensor) -> Tensor:  # r scaled by eps: in [-eps, eps]
            return torch.empty_like(t).uniform_(-p.eps, p.eps) if p.random_start else torch.zeros_like(t)

        rs = [start(t) for t in parts]

        def image(rr: list[Tensor]) -> Tensor:
            # coefficient / Q moves by (eps / 2) * (r / eps) = r / 2 quantisation steps
            moved = [t + q * r / 2 for t, q, r in zip(parts, tables, rr)]
            return from_coefficients(tuple(moved) if sub else moved[0], c)[:, :, :h, :w]

        for _ in range(p.steps):
            rr = [r.detach().requires_grad_(True) for r in rs]
            out = model(image(rr))
            grads = torch.autograd.grad(self.task.attack_loss(out, y, target).sum(), rr)
            rs = [(r + alpha * g.sign()).clamp_(-p.eps, p.eps) for r, g in zip(rs, grads)]
        self.last_change = [r / 2 for r in rs]  # coefficient change in quantisation steps (<= eps / 2)
        with torch.no_grad():
            return image(rs)
