"""M-DI2-FGSM (Xie et al. 2019): MI-FGSM whose gradients are taken at randomly resized and padded inputs.

Before each gradient, with probability ``diversity_prob`` (0.5) the batch is resized to a random side
``r`` in ``[W, floor(resize_rate * W))`` and zero-padded at a random offset to ``floor(resize_rate * W)``
(the authors: 299 -> [299, 330) -> 330, ``resize_rate = 330 / 299``); one draw per step for the whole batch,
as in the authors' code. advlab's victims take a fixed input size (e.g. 112x112 faces), so the padded image is
resized back to ``W`` (bilinear) before the victim; the authors fed the 330x330 image to Inception directly.
``decay = 1`` (default) is M-DI2-FGSM; ``decay = 0`` is DI2-FGSM. Everything else is
:class:`advlab.attacks.mi_fgsm.MIFGSM`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import DIFGSMConfig  # noqa: F401
from advlab.attacks.mi_fgsm import MIFGSM


def resize_and_pad(x: Tensor, side: int, padded: int, top: int, left: int) -> Tensor:
    """``x`` resized to ``side`` x ``side`` and zero-padded to ``padded`` x ``padded`` at (``top``, ``left``)."""
    r = F.interpolate(x, size=(side, side), mode="nearest")
    return F.pad(r, (left, padded - side - left, top, padded - side - top))


@ATTACKS.register("di_fgsm")
class DIFGSM(MIFGSM):
    Config = DIFGSMConfig
    paper = (
        "Xie, Zhang, Zhou, Bai, Wang, Ren, Yuille, Improving Transferability of Adversarial Examples with Input "
        "Diversity, CVPR 2019"
    )
    url = "https://arxiv.org/abs/1803.06978"

    def diversify(self, x: Tensor) -> Tensor:
        p = self.params
        w = x.shape[-1]
        padded = int(p.resize_rate * w)
        if padded <= w or float(torch.rand(())) >= p.diversity_prob:
            return x
        side = int(torch.randint(w, padded, ()))
        top = int(torch.randint(0, padded - side + 1, ()))
        left = int(torch.randint(0, padded - side + 1, ()))
        out = resize_and_pad(x, side, padded, top, left)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
