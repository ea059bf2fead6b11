"""How a segmentation victim is evaluated: whole-image or sliding-window inference, as mmseg's ``test_cfg``
defines them (``EncoderDecoder.whole_inference`` / ``slide_inference``).

Sliding window: windows of ``crop`` (height, width) every ``stride`` pixels; the last row / column of windows is
shifted back so that it ends at the image border, and an image smaller than the crop is one window of its own
size (no padding). Each window's logits (at the window's resolution) are summed into the full-size map and
divided by the number of windows covering each pixel. All windows of a batch have the same size, so they go
through the network as one batch (``window_batch`` caps how many at a time); the result is differentiable with
respect to the input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from advlab.errors import ConfigError

MODES = ("whole", "slide")


@dataclasses.dataclass(frozen=True)
class InferenceMode:
    mode: str = "whole"  # whole | slide
    crop: tuple[int, int] | None = None  # slide: window (height, width)
    stride: tuple[int, int] | None = None  # slide: step (height, width)

    @classmethod
    def from_mmseg(cls, test_cfg: dict[str, Any] | None, key: str = "victim") -> InferenceMode:
        """From an mmseg ``model.test_cfg`` (``dict(mode='slide', crop_size=(h, w), stride=(h, w))``)."""
        test_cfg = dict(test_cfg or {})
        mode = test_cfg.get("mode", "whole")
        if mode not in MODES:
            raise ConfigError(
                f"{key}: model.test_cfg.mode '{mode}' is not supported (use one of {MODES}, e.g. "
                f"victim.cfg_options={{model.test_cfg.mode: whole}})"
            )
        if mode == "whole":
            return cls()
        crop, stride = test_cfg.get("crop_size"), test_cfg.get("stride")
        ok = all(v is not None and len(v) == 2 and min(v) >= 1 for v in (crop, stride))
        if not ok:
            raise ConfigError(
                f"{key}: model.test_cfg mode=slide needs crop_size and stride as (height, width) with positive "
                f"sides (got crop_size={crop}, stride={stride})"
            )
        return cls("slide", (int(crop[0]), int(crop[1])), (int(stride[0]), int(stride[1])))


def slide_windows(
    height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """``(y1, y2, x1, x2)`` of every window, in mmseg's order (rows, then columns)."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    out = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * h_stride + h_crop, height), min(j * w_stride + w_crop, width)
            out.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return out


def slide_inference(
    logits_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    window_batch: int | None = None,
) -> Tensor:
    """Sliding-window logits ``[B, K, H, W]`` of ``x`` ``[B, C, H, W]``; ``logits_fn`` maps windows
    ``[N, C, h, w]`` to logits ``[N, K, h, w]`` at the window resolution."""
    b, _, h, w = x.shape
    windows = slide_windows(h, w, crop, stride)
    crops = torch.cat([x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows])  # [n_windows * B, C, h, w]
    step = crops.shape[0] if not window_batch else window_batch
    logits = torch.cat([logits_fn(crops[i : i + step]) for i in range(0, crops.shape[0], step)])
    preds = x.new_zeros((b, logits.shape[1], h, w), dtype=logits.dtype)
    count = x.new_zeros((1, 1, h, w), dtype=logits.dtype)
    for k, (y1, y2, x1, x2) in enumerate(windows):
        preds[:, :, y1:y2, x1:x2] += logits[k * b : (k + 1) * b]
        count[:, :, y1:y2, x1:x2] += 1
    return preds / count


__all__ = ["MODES", "InferenceMode", "slide_inference", "slide_windows"]
