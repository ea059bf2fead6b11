"""``attack=eot_patch``: a universal adversarial patch trained with Expectation over Transformation, as in
"Cross-Model Transferability of Adversarial Patches in Real-time Segmentation for Autonomous Driving"
(arXiv:2502.16012).

Training (the universal loop, over the training split, victim frozen): every batch is first transformed as
a scene would be -- random scale in ``[scale_min, scale_max]`` (0.5-2.0), random crop to ``crop`` (1024x1024
for Cityscapes), random horizontal flip -- with the *same* geometry applied to images (bilinear) and label
maps (nearest; pixels from outside the image are ignored). The official code has these transforms commented
out; the paper uses them, and so does advlab. The patch is then pasted at its placement (centre, a fixed
corner, or a random position per image), the labels under the patch are set to ignore, and the loss is the
cross-entropy over the pixels the victim still classifies correctly (the paper's simplified loss; ``loss=all``
uses every labelled pixel; ``loss=gamma`` is the loss of the paper's reference [13], Nesti et al., WACV 2022,
that the paper simplifies: with Omega the labelled pixels outside the patch, Omega_x those still classified
correctly and Omega_x' the others,

    L = gamma / |Omega_x| * sum_{Omega_x} CE + (1 - gamma) / |Omega_x'| * sum_{Omega_x'} CE,

each term a mean over its set in the batch (an empty set contributes 0), ``gamma`` fixed by ``attack.gamma`` or,
when null, the adaptive ``|Omega_x| / |Omega|`` of the official code's ``compute_loss``). The patch takes a signed-gradient *ascent* step of ``lr`` (0.005) per batch and is
clamped to [0, 1]; it starts uniform-random.

Evaluation pastes the saved patch on every test image (centre / corner; ``random`` draws seeded positions)
and scores the patched prediction with the pixels under the patch ignored (:meth:`EOTPatch.adv_labels`).
With ``curve_examples > 0`` the patched mIoU on that many test images is logged after every epoch
(``universal/val_mIoU``, the paper's Fig. 2 curve, drawn to ``patch_curve.png``); the patch is written to
``patch.png``. For a non-segmentation task the loss is the task's per-sample attack loss over the samples
still classified correctly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import PLACEMENTS, EOTPatchConfig  # noqa: F401
from advlab.attacks.universal import UniversalAttack
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.reporting.pictures import save_patch_pictures


def gamma_weighted_loss(loss: Tensor, correct: Tensor, valid: Tensor, gamma: float | None) -> Tensor:
    """``gamma * mean(loss over correct & valid) + (1 - gamma) * mean(loss over ~correct & valid)`` (an empty set
    contributes 0); ``gamma=None`` takes the adaptive ``|correct & valid| / |valid|``. Any shape, elementwise."""
    right, wrong = correct & valid, ~correct & valid
    n_right, n_wrong = right.sum(), wrong.sum()
    g = n_right / (n_right + n_wrong).clamp(min=1) if gamma is None else gamma
    loss_right = (loss * right).sum() / n_right.clamp(min=1)
    loss_wrong = (loss * wrong).sum() / n_wrong.clamp(min=1)
    return g * loss_right + (1 - g) * loss_wrong


def eot_transform(
    x: Tensor,
    y: Tensor | None,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.5, 2.0),
    crop: tuple[int, int] | None = None,
    hflip: bool = True,
    ignore_index: int = 255,
) -> tuple[Tensor, Tensor | None]:
    """Random scale, random crop (``crop``, default the input size) and random horizontal flip, one draw per
    sample, applied with the same geometry to images ``x`` ``[B, C, H, W]`` (bilinear) and label maps ``y``
    ``[B, H, W]`` (nearest; pixels outside the scaled image become ``ignore_index``, image pixels 0)."""
    from kornia.geometry.transform import warp_affine

    b, _, h, w = x.shape
    ch, cw = crop or (h, w)
    s = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5 if hflip else torch.zeros(b, dtype=torch.bool)

    def offset(size: int, out: int) -> Tensor:
        free = s * size - out  # > 0: room to crop; < 0: the scaled image is smaller (padded)
        lo, hi = torch.minimum(free, torch.zeros(b)), torch.maximum(free, torch.zeros(b))
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    oy, ox = offset(h, ch), offset(w, cw)
    # pixel-centre convention (align_corners=True): u = s * (x + 0.5) - 0.5 - ox, mirrored when flipped
    m = torch.zeros(b, 2, 3)
    sign = torch.where(flip, -1.0, 1.0)
    m[:, 0, 0] = s * sign
    m[:, 0, 2] = torch.where(flip, cw - 1 - (0.5 * s - 0.5 - ox), 0.5 * s - 0.5 - ox)
    m[:, 1, 1] = s
    m[:, 1, 2] = 0.5 * s - 0.5 - oy
    m = m.to(x.device, x.dtype)
    xt = warp_affine(x, m, (ch, cw), mode="bilinear", padding_mode="zeros", align_corners=True)
    if y is None:
        return xt, None
    fill = torch.tensor([float(ignore_index)], device=x.device, dtype=x.dtype)
    yt = warp_affine(
        y[:, None].to(x.dtype),
        m,
        (ch, cw),
        mode="nearest",
        padding_mode="fill",
        align_corners=True,
        fill_value=fill,
    )
    return xt, yt[:, 0].round().long()


def patch_positions(
    placement: str,
    image_hw: tuple[int, int],
    patch_hw: tuple[int, int],
    n: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Top-left corners ``(top [n], left [n])`` of the patch for ``n`` images."""
    (h, w), (ph, pw) = image_hw, patch_hw
    if ph > h or pw > w:
        raise ConfigError(f"attack.patch_size: the patch ({ph}x{pw}) does not fit the image ({h}x{w})")
    if placement == "random":
        top = torch.randint(0, h - ph + 1, (n,), generator=generator)
        left = torch.randint(0, w - pw + 1, (n,), generator=generator)
        return top, left
    top = {"centre": (h - ph) // 2, "top_left": 0, "top_right": 0}.get(placement, h - ph)
    left = {"centre": (w - pw) // 2, "top_left": 0, "bottom_left": 0}.get(placement, w - pw)
    return torch.full((n,), top), torch.full((n,), left)


def paste_patch(x: Tensor, patch: Tensor, top: Tensor, left: Tensor) -> tuple[Tensor, Tensor]:
    """Paste ``patch`` ``[C, ph, pw]`` into every image of ``x`` at its own ``(top, left)``; returns the patched
    images (differentiable w.r.t. the patch) and the patch masks ``[B, H, W]`` (bool)."""
    b, _, h, w = x.shape
    ph, pw = patch.shape[-2:]
    if bool((top == top[0]).all() and (left == left[0]).all()):  # one position (centre / corner): pad once
        t, lft = int(top[0]), int(left[0])
        placed = F.pad(patch, (lft, w - lft - pw, t, h - t - ph))[None]
        mask = torch.zeros(h, w, dtype=torch.bool, device=x.device)
        mask[t : t + ph, lft : lft + pw] = True
        return torch.where(mask, placed, x), mask.expand(b, h, w)
    rows = torch.arange(h, device=x.device)[None, :] - top.to(x.device)[:, None]  # [B, H]
    cols = torch.arange(w, device=x.device)[None, :] - left.to(x.device)[:, None]  # [B, W]
    inside = ((rows >= 0) & (rows < ph))[:, :, None] & ((cols >= 0) & (cols < pw))[:, None, :]
    placed = patch[:, rows.clamp(0, ph - 1)[:, :, None], cols.clamp(0, pw - 1)[:, None, :]]  # [C, B, H, W]
    placed = placed.permute(1, 0, 2, 3)
    return torch.where(inside[:, None], placed, x), inside


@ATTACKS.register("eot_patch")
class EOTPatch(UniversalAttack):
    Config = EOTPatchConfig
    paper = (
        "Shekhar et al., Cross-Model Transferability of Adversarial Patches in Real-time Segmentation for "
        "Autonomous Driving, arXiv 2025"
    )
    url = "https://arxiv.org/abs/2502.16012"

    def __init__(self, params: Any, task: Any):
        super().__init__(params, task)
        self.ignore_index = getattr(task, "ignore_index", None)
        self._last_mask: Tensor | None = None
        self._eval_gen = torch.Generator().manual_seed(0)

    def check_data(self, info: DataInfo) -> None:
        """The patch must fit inside the images and the EOT crop (checked when the run is built, before a victim
        is trained for nothing, and again when the patch is created)."""
        _, h, w = info.image_shape
        ph, pw = self.params.patch_size
        ch, cw = self.params.crop or (h, w)
        if ph > min(h, ch) or pw > min(w, cw):
            raise ConfigError(
                f"attack.patch_size: {ph}x{pw} does not fit the images ({h}x{w}) or the EOT crop ({ch}x{cw}); "
                f"use attack.patch_size=[{min(h, ch) // 2},{min(w, cw) // 2}] or smaller"
            )

    # --- the perturbation ---------------------------------------------------------------------------------
    def init_perturbation(self, info: DataInfo, device: torch.device, generator: torch.Generator) -> None:
        self.check_data(info)
        c = info.image_shape[0]
        ph, pw = self.params.patch_size
        if self.params.init == "uniform":
            patch = torch.rand(c, ph, pw, generator=generator)
        else:
            patch = torch.full((c, ph, pw), 0.5)
        self.perturbation = {"patch": patch.to(device).requires_grad_(True)}

    @property
    def patch(self) -> Tensor:
        return self.perturbation["patch"]

    def apply(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Paste the patch at its placement; remembers the mask for :meth:`adv_labels`."""
        top, left = patch_positions(
            self.params.placement, tuple(x.shape[-2:]), tuple(self.patch.shape[-2:]), x.shape[0],
            generator if generator is not None else self._eval_gen,
        )  # fmt: skip
        patched, mask = paste_patch(x, self.patch.clamp(0, 1), top, left)
        self._last_mask = mask
        return patched

    def adv_labels(self, y: Tensor) -> Tensor:
        if self._last_mask is None or self.ignore_index is None or y.dim() != 3:
            return y
        return y.masked_fill(self._last_mask.to(y.device), self.ignore_index)

    # --- training -----------------------------------------------------------------------------------------
    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        p = self.params
        segmentation = self.ignore_index is not None and y.dim() == 3
        if p.eot and segmentation:
            x, y = eot_transform(
                x, y, generator, (p.scale_min, p.scale_max), tuple(p.crop) if p.crop else None, p.hflip,
                self.ignore_index,
            )  # fmt: skip
        elif p.eot:
            x, _ = eot_transform(x, None, generator, (p.scale_min, p.scale_max), None, p.hflip)
        patched = self.apply(x, y, generator)
        out = model(patched)
        if not segmentation:
            per_sample = self.task.attack_loss(out, y)
            correct = self.task.correct(out.detach(), y)
            valid = torch.ones_like(correct)
        else:
            y = self.adv_labels(y)
            if out.shape[-2:] != y.shape[-2:]:
                out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
            per_sample = self.task.pixel_loss(out, y)  # task.objective: cross-entropy or Houdini
            valid = y != self.ignore_index
            correct = out.detach().argmax(1) == y
        # ascent on the loss; the universal loop minimises
        if p.loss == "gamma":
            return -gamma_weighted_loss(per_sample, correct, valid, p.gamma)
        keep = valid & correct if p.loss == "correct" else valid
        return -(per_sample * keep).sum() / keep.sum().clamp(min=1)

    def project(self) -> None:
        with torch.no_grad():
            self.patch.clamp_(0, 1)

    # --- per-epoch curve and pictures ----------------------------------------------------------------------
    def epoch_end_hook(self, model: nn.Module, data: Any, device: torch.device) -> Any:
        n = self.params.curve_examples
        if n <= 0:
            return None
        loader = data.loader("test", self.params.batch_size, shuffle=False, limit=n)

        def epoch_end(epoch: int) -> dict[str, float]:
            clean, adv = self.task.meter(), self.task.meter()
            gen_state = self._eval_gen.get_state()
            self._eval_gen.manual_seed(0)
            with torch.no_grad():
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    self.task.update_metrics(clean, model(x), y)
                    out = model(self.apply(x, y))
                    self.task.update_metrics(adv, out, self.adv_labels(y))
            self._eval_gen.set_state(gen_state)
            key = "mIoU" if self.ignore_index is not None else "acc"
            return {
                f"universal/val_clean_{key}": clean.compute().get(key, float("nan")),
                f"universal/val_{key}": adv.compute().get(key, float("nan")),
            }

        return epoch_end

    def save_artifacts(self, run_dir: Path) -> dict[str, Path]:
        return save_patch_pictures(self.patch, run_dir)


__all__ = ["EOTPatch", "eot_transform", "gamma_weighted_loss", "paste_patch", "patch_positions"]
