"""Input-transformation defenses: the victim sees a transformed image, ``victim(T(x))``, for any task.

``defense.transform`` chooses ``T`` (SemanticAdv's Figure 5 settings are the defaults):

- ``jpeg``: JPEG compression and decompression at ``jpeg_quality`` (75; Dziugaite et al. 2016). With
  ``jpeg_gradient: bpda`` (default) the forward pass is the real codec (libjpeg / nvJPEG through
  ``torchvision.io``, on 8-bit images) and the backward pass is the identity (BPDA, Athalye et al. 2018); with
  ``differentiable`` both passes are kornia's differentiable JPEG (Shin & Song 2017's approximation: the
  quantisation rounding is replaced by a smooth surrogate, so the forward image differs slightly from libjpeg's).
- ``blur``: Gaussian blur, ``blur_kernel`` x ``blur_kernel`` (3) with standard deviation ``blur_sigma`` (1;
  Li & Li 2017), reflect padding; differentiable.
- ``squeeze``: bit-depth reduction to ``bits`` (4) bits per channel, ``round(x (2^b - 1)) / (2^b - 1)`` (Xu et al.
  2018's feature squeezing); straight-through gradient (BPDA).

With ``detector: true`` (``squeeze`` only) the defense also gives feature squeezing's detector score
``||s(f(x)) - s(f(T(x)))||_1`` per image (:meth:`InputTransformDefense.detector_score`), ``s`` the softmax of the
outputs (``detector_outputs: softmax``, Xu et al.'s classifiers) or the outputs themselves (``raw``, e.g. unit
face embeddings); a threshold on it flags adversarial inputs.

The transform is applied to whatever is evaluated (``defense.wrap``); whether an attack sees it (adaptive) or
only the bare victim is the pipeline's choice (``pipeline=standard`` attacks the wrapped model).
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor, nn

from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import InputTransformConfig  # noqa: F401


def straight_through(x: Tensor, y: Tensor) -> Tensor:
    """``y`` in the forward pass, the identity's gradient in the backward pass (BPDA)."""
    return x + (y - x).detach()


def squeeze_bits(x: Tensor, bits: int) -> Tensor:
    levels = 2**bits - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


@torch.no_grad()
def jpeg_codec(x: Tensor, quality: int) -> Tensor:
    """The real JPEG round trip of a batch in [0, 1] (8-bit, torchvision's libjpeg / nvJPEG)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    on_gpu = x.is_cuda
    images = list(u8 if on_gpu else u8.cpu())
    decoded = decode_jpeg(encode_jpeg(images, quality=quality), device=x.device if on_gpu else "cpu")
    return torch.stack(decoded).to(x.device, x.dtype) / 255


def jpeg_differentiable(x: Tensor, quality: int) -> Tensor:
    """kornia's differentiable JPEG; grey images go through as equal RGB channels."""
    grey = x.shape[1] == 1
    rgb = x.expand(-1, 3, -1, -1) if grey else x
    q = torch.full((x.shape[0],), float(quality), device=x.device, dtype=x.dtype)
    out = kornia.enhance.jpeg_codec_differentiable(rgb.clamp(0, 1), q)
    return out.mean(dim=1, keepdim=True) if grey else out


class InputTransformed(nn.Module):
    """``forward(x) = victim(transform(x))``."""

    def __init__(self, victim: nn.Module, defense: InputTransformDefense):
        super().__init__()
        self.victim = victim
        self.defense = defense

    def forward(self, x: Tensor) -> Tensor:
        return self.victim(self.defense.transform(x))


@DEFENSES.register("input_transform")
class InputTransformDefense(Defense):
    """JPEG compression, Gaussian blur or bit-depth squeezing in front of the victim."""

    Config = InputTransformConfig
    paper = (
        "Xu, Evans, Qi, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks, NDSS 2018"
    )
    url = "https://arxiv.org/abs/1704.01155"

    def transform(self, x: Tensor) -> Tensor:
        p = self.params
        if p.transform == "squeeze":
            return straight_through(x, squeeze_bits(x, p.bits))
        if p.transform == "blur":
            k = p.blur_kernel
            return kornia.filters.gaussian_blur2d(
                x, (k, k), (p.blur_sigma, p.blur_sigma), border_type="reflect"
            )
        if p.jpeg_gradient == "differentiable":
            return jpeg_differentiable(x, p.jpeg_quality)
        return straight_through(x, jpeg_codec(x, p.jpeg_quality))

    def wrap(self, victim: nn.Module) -> nn.Module:
        return InputTransformed(victim, self)

    @property
    def detector(self):
        """:meth:`detector_score` when ``defense.detector`` is on, else None (what pipelines look for)."""
        return self.detector_score if self.params.detector else None

    def detector_score(self, victim: nn.Module, x: Tensor) -> Tensor:
        """Feature squeezing's score per image: L1 distance between the (softmax of the) victim's outputs on
        ``x`` and on its squeezed version."""
        a, b = victim(x), victim(squeeze_bits(x, self.params.bits))
        if self.params.detector_outputs == "softmax":
            a, b = a.softmax(dim=1), b.softmax(dim=1)
        return (a - b).abs().flatten(1).sum(dim=1)
