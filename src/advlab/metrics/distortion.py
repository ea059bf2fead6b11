"""Perturbation size metrics, per sample."""

from __future__ import annotations

import torch
from torch import Tensor

from advlab.attacks.perturbation import lp_norm


def distortion(x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
    """Per-sample ``linf`` and ``l2`` of ``x_adv - x`` (images in [0,1])."""
    delta = (x_adv - x).detach()
    return {"linf": lp_norm(delta, "linf"), "l2": lp_norm(delta, "l2")}


def image_quality(x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
    """Per-sample ``mse`` (mean of the squared pixel differences, images in [0,1]), ``psnr`` (dB, peak 1) and
    ``ssim`` (Gaussian 11x11 window, sigma 1.5, mean over the SSIM map; kornia). Images smaller than the window
    use the largest odd window that fits."""
    import kornia

    x, x_adv = x.detach().float(), x_adv.detach().float()
    mse = (x_adv - x).pow(2).flatten(1).mean(dim=1)
    psnr = 10 * torch.log10(1.0 / mse.clamp(min=1e-20))
    window = min(11, min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2))
    ssim = kornia.metrics.ssim(x_adv, x, window_size=max(window, 1), max_val=1.0).flatten(1).mean(dim=1)
    return {"mse": mse, "psnr": psnr, "ssim": ssim}
