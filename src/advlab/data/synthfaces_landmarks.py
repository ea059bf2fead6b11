"""``synthfaces_landmarks``: the embedded synthetic faces (:mod:`advlab.data.synthfaces`) with 68 landmarks in
the 300-W / iBUG layout, computed from the same drawing parameters that render each image, so the annotation is
exact and follows the attribute edits (``Chubby`` widens the jaw line, ``Smiling`` bends and opens the mouth).

The points, in the renderer's face-centred coordinates ``(u, v)`` (v down; the image pixel is
``((u * scale + cx + 1) * S / 2, (v * scale + cy + 1) * S / 2)``, pixel ``i`` covering ``[i, i + 1)``):

- 0-16 jaw: the lower half of the face ellipse ``(a, b)``, from the image's left ear level through the chin;
- 17-21 / 22-26 eyebrows: five points along each brow bar, left to right in the image;
- 27-30 nose bridge: down the nose stroke; 31-35 the nose's lower end, five points across;
- 36-41 / 42-47 eyes: the eye ellipse ``(1.3 r, r)`` at angles 180, 240, 300, 0, 60, 120 degrees (outer / inner
  corner, two upper lid points, the other corner, two lower lid points, as in iBUG);
- 48-59 outer lips and 60-67 inner lips: along the mouth line (straight when neutral; the smile drops the
  centre to a curve whose opening, between the straight upper edge and the curve, is where the teeth show).

The module only adds functions and a data module on top of ``synthfaces``; it does not change its rendering.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS
from advlab.data.configs import SynthFaceLandmarksConfig  # noqa: F401
from advlab.data.synthfaces import ATTRIBUTES, SynthFaces

NUM_LANDMARKS = 68
LIP_HALF_THICKNESS = 0.035  # of the drawn lip line (synthfaces.draw_faces)


def face_coordinates(params: dict[str, Tensor], attrs: Tensor) -> Tensor:
    """``[B, 68, 2]`` landmark positions in the renderer's face-centred ``(u, v)`` coordinates."""
    b = attrs.shape[0]
    flat = {k: v.reshape(b, -1)[:, 0] for k, v in params.items() if k in _SCALAR_KEYS}
    smiling, chubby = attrs[:, ATTRIBUTES.index("Smiling")], attrs[:, ATTRIBUTES.index("Chubby")]
    fa, fb = flat["face_a"] * (1 + 0.2 * chubby), flat["face_b"] * (1 + 0.05 * chubby)
    ex, ey, r = flat["eye_dx"], flat["eye_dy"], flat["eye_r"]
    col = lambda t: t[:, None]  # noqa: E731
    pts: list[tuple[Tensor, Tensor]] = []
    # jaw 0-16
    t = math.pi - math.pi * torch.arange(17, dtype=torch.float32) / 16
    pts.append((col(fa) * torch.cos(t), col(fb) * torch.sin(t)))
    # eyebrows 17-26
    lin5 = torch.linspace(-1, 1, 5)
    brow_v = ey - flat["brow_gap"] - r
    for side in (-1.0, 1.0):
        pts.append((col(side * ex) + col(r * 1.4) * lin5, col(brow_v).expand(b, 5)))
    # nose 27-35
    top = ey + 0.05
    bridge = torch.tensor([0.0, 0.3, 0.6, 0.85])
    pts.append((torch.zeros(b, 4), col(top) + col(flat["nose_len"]) * bridge))
    pts.append(
        (torch.tensor([-0.08, -0.04, 0.0, 0.04, 0.08]).expand(b, 5), col(top + flat["nose_len"]).expand(b, 5))
    )
    # eyes 36-47
    angles = torch.tensor([180.0, 240.0, 300.0, 0.0, 60.0, 120.0]) * math.pi / 180
    for side in (-1.0, 1.0):
        pts.append((col(side * ex) + col(1.3 * r) * torch.cos(angles), col(ey) + col(r) * torch.sin(angles)))
    # lips 48-67: the lip line v = my + smiling * 0.1 * (1 - (u / w)^2) (synthfaces.draw_faces)
    mw, my = col(flat["mouth_w"]), col(flat["mouth_y"])
    smile = col(smiling)

    def curve(frac: Tensor) -> Tensor:
        return my + smile * 0.1 * (1 - frac**2)

    outer_top = torch.tensor([-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0])  # 48-54
    outer_bottom = torch.tensor([2 / 3, 1 / 3, 0.0, -1 / 3, -2 / 3])  # 55-59
    pts.append((mw * outer_top, torch.minimum(my, curve(outer_top)) - LIP_HALF_THICKNESS))
    pts.append((mw * outer_bottom, curve(outer_bottom) + LIP_HALF_THICKNESS))
    inner_top = torch.tensor([-0.9, -0.45, 0.0, 0.45, 0.9])  # 60-64 (corners and upper inner lip)
    inner_bottom = torch.tensor([0.45, 0.0, -0.45])  # 65-67
    # when smiling the opening runs from the straight upper edge (my - 0.01) down to the curve (teeth region)
    upper = torch.where(smile > 0.5, torch.minimum(my - 0.01, curve(inner_top)), curve(inner_top))
    corners = torch.tensor([1.0, 0, 0, 0, 1.0]).bool()
    upper = torch.where(corners, curve(inner_top), upper)
    pts.append((mw * inner_top, upper))
    pts.append((mw * inner_bottom, curve(inner_bottom) - 0.02 * smile))
    u = torch.cat([p[0].expand(b, -1) for p in pts], dim=1)
    v = torch.cat([p[1].expand(b, -1) for p in pts], dim=1)
    return torch.stack([u, v], dim=-1)


_SCALAR_KEYS = (
    "face_a", "face_b", "eye_dx", "eye_dy", "eye_r", "brow_gap", "nose_len", "mouth_y", "mouth_w",
    "scale", "cx", "cy",
)  # fmt: skip


def face_landmarks(params: dict[str, Tensor], attrs: Tensor, size: int) -> Tensor:
    """``[B, 68, 2]`` image-pixel ``(x, y)`` of the faces drawn from ``params`` (rows of a split's drawing
    parameters) with attributes ``attrs`` [B, 6] at ``size`` x ``size``."""
    b = attrs.shape[0]
    uv = face_coordinates(params, attrs.float())
    scale, cx, cy = (params[k].reshape(b, 1) for k in ("scale", "cx", "cy"))
    x = (uv[..., 0] * scale + cx + 1) * size / 2
    y = (uv[..., 1] * scale + cy + 1) * size / 2
    return torch.stack([x, y], dim=-1)


@DATASETS.register("synthfaces_landmarks")
class SynthFaceLandmarks(SynthFaces):
    """``synthfaces`` whose labels are the 68 landmarks (``dataset(split)`` yields ``(image, [68, 2])``)."""

    Config = SynthFaceLandmarksConfig

    @functools.cached_property
    def _landmarks(self) -> dict[str, Tensor]:
        out = {}
        for split in self.splits:
            t = self._tensors()[split]
            out[split] = face_landmarks(t["params"], t["attributes"], self.params.size)
        return out

    def landmarks(self, split: str) -> Tensor:
        """Ground-truth landmarks ``[N, 68, 2]`` of ``split``."""
        self.check_split(split)
        return self._landmarks[split]

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(self._tensors()[split]["images"], self.landmarks(split))

    def landmarks_of_edit(self, split: str, index: Tensor, attrs: Tensor) -> Tensor:
        """The landmarks of the images ``index`` redrawn with attributes ``attrs`` (their counterfactuals)."""
        params = {k: v[index.cpu()] for k, v in self._tensors()[split]["params"].items()}
        return face_landmarks(params, attrs.cpu().float(), self.params.size)
