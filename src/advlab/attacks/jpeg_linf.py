"""JPEG-Linf (Kang et al. 2019, used by Laidlaw et al. 2021 on ImageNet-100): a perturbation of the image's
JPEG coefficients.

The image is converted to YCbCr (0-255 scale, kornia) and to 8x8 block DCT coefficients per channel (the
orthonormal DCT-II of JPEG); the perturbation is added to the coefficients in units of the JPEG quantisation
step (the standard quality-50 luminance table for Y, chrominance table for Cb/Cr): ``C~ = C + Q * delta``
with ``||delta||_inf <= eps`` (0.125), then the inverse DCT and colour conversion give the image (clipped to
[0, 1]). PGD with signed steps and a random start inside the box. Image sides must be multiples of 8; grey
images use the luminance table only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import JPEGLinfConfig  # noqa: F401

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


def jpeg_coefficients(x: Tensor) -> Tensor:
    """Block DCT of the level-shifted YCbCr image (0-255 scale), [N, C, H/8, W/8, 8, 8]."""
    import kornia  # imported lazily: kornia takes seconds to import

    ycc = kornia.color.rgb_to_ycbcr(x) if x.shape[1] == 3 else x
    d = dct_matrix(device=x.device, dtype=x.dtype)
    return d @ to_blocks(ycc * 255 - 128) @ d.T


def from_coefficients(coef: Tensor, channels: int) -> Tensor:
    import kornia

    d = dct_matrix(device=coef.device, dtype=coef.dtype)
    ycc = (from_blocks(d.T @ coef @ d) + 128) / 255
    return (kornia.color.ycbcr_to_rgb(ycc) if channels == 3 else ycc).clamp(0, 1)


def quant_table(channels: int, device, dtype) -> Tensor:
    luma = torch.tensor(LUMA_Q, device=device, dtype=dtype)
    if channels == 1:
        return luma.view(1, 1, 1, 1, 8, 8)
    chroma = torch.tensor(CHROMA_Q, device=device, dtype=dtype)
    return torch.stack([luma, chroma, chroma]).view(1, 3, 1, 1, 8, 8)


@ATTACKS.register("jpeg_linf")
class JPEGLinf(Attack):
    paper = "Kang, Sun, Hendrycks, Brown & Steinhardt, Testing Robustness Against Unforeseen Adversaries, arXiv 2019"
    url = "https://arxiv.org/abs/1908.08016"
    Config = JPEGLinfConfig
    norm = None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        n, c, h, w = x.shape
        pad_h, pad_w = (-h) % 8, (-w) % 8
        xp = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        alpha = p.step_size if p.step_size is not None else 2.5 * p.eps / p.steps
        coef = jpeg_coefficients(xp)
        q = quant_table(c, x.device, x.dtype)
        delta = torch.empty_like(coef).uniform_(-p.eps, p.eps) if p.random_start else torch.zeros_like(coef)

        def image(dl: Tensor) -> Tensor:
            return from_coefficients(coef + q * dl, c)[:, :, :h, :w]

        for _ in range(p.steps):
            dl = delta.detach().requires_grad_(True)
            out = model(image(dl))
            (grad,) = torch.autograd.grad(self.task.attack_loss(out, y, target).sum(), dl)
            delta = (delta + alpha * grad.sign()).clamp_(-p.eps, p.eps)
        with torch.no_grad():
            return image(delta)
