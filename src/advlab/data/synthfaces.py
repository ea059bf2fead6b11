"""Embedded face dataset: procedurally drawn faces with persistent identities and editable attributes.

No download. An *identity* is a fixed set of drawing parameters (face shape, skin tone, eye spacing, size
and colour, eyebrow height, nose length, mouth position and width, natural hair colour); an *image* of an
identity adds per-image nuisance (position, scale, lighting, background, noise) and a random draw of the
binary, editable attributes:

- ``Blond_Hair``: the hair is drawn blond instead of the identity's natural colour;
- ``Eyeglasses``: dark rings around the eyes with a bridge;
- ``Smiling``: a curved, open mouth with teeth instead of a straight one;
- ``Bangs``: hair over the forehead;
- ``Pale_Skin``: the identity's skin tone blended towards a pale tone;
- ``Chubby``: a wider, rounder face outline.

Identities are disjoint between the splits (``train`` for the victim and the generator, ``dev`` for choosing
verification thresholds, ``test`` for the attack pairs), as in face-verification benchmarks. Everything is drawn
in one batched pass with torch ops from ``dataset.split_seed``, in about a second.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS
from advlab.data.configs import SynthFacesConfig  # noqa: F401
from advlab.data.faces import FaceAttributeData
from advlab.data.info import DataInfo

ATTRIBUTES = ["Blond_Hair", "Eyeglasses", "Smiling", "Bangs", "Pale_Skin", "Chubby"]
ATTRIBUTE_RATE = 0.4  # probability of each attribute per image


def _ellipse(u: Tensor, v: Tensor, cx: Tensor, cy: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Signed 'distance' (normalised radius - 1) of an axis-aligned ellipse; negative inside."""
    return torch.sqrt(((u - cx) / a) ** 2 + ((v - cy) / b) ** 2 + 1e-12) - 1


def _soft(sd: Tensor, softness: float) -> Tensor:
    return torch.sigmoid(-sd / softness)


def _paint(img: Tensor, mask: Tensor, colour: Tensor) -> Tensor:
    """Composite ``colour`` [B,3] over ``img`` [B,3,H,W] with coverage ``mask`` [B,H,W]."""
    m = mask[:, None]
    return img * (1 - m) + colour[:, :, None, None] * m


def draw_identities(n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Persistent drawing parameters of ``n`` identities."""

    def uni(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=generator)

    tone = uni(0, 1, 1)  # skin tone from dark to light along a skin-colour line
    skin = torch.cat([0.35 + 0.55 * tone, 0.22 + 0.5 * tone, 0.15 + 0.45 * tone], 1) + uni(-0.05, 0.05, 3)
    hair_palette = torch.tensor(
        [[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.50, 0.22, 0.10], [0.2, 0.2, 0.22]]
    )
    hair = hair_palette[torch.randint(0, 4, (n,), generator=generator)] + uni(-0.04, 0.04, 3)
    iris_palette = torch.tensor([[0.25, 0.15, 0.05], [0.2, 0.4, 0.7], [0.25, 0.5, 0.3], [0.1, 0.1, 0.1]])
    iris = iris_palette[torch.randint(0, 4, (n,), generator=generator)]
    return {
        "face_a": uni(0.5, 0.68, 1),
        "face_b": uni(0.64, 0.82, 1),
        "skin": skin.clamp(0, 1),
        "hair": hair.clamp(0, 1),
        "iris": iris,
        "eye_dx": uni(0.2, 0.34, 1),
        "eye_dy": uni(-0.2, -0.04, 1),
        "eye_r": uni(0.07, 0.12, 1),
        "brow_gap": uni(0.06, 0.14, 1),
        "nose_len": uni(0.1, 0.28, 1),
        "mouth_y": uni(0.32, 0.48, 1),
        "mouth_w": uni(0.14, 0.3, 1),
    }


def draw_nuisance(b: int, size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Per-image parameters that are neither identity nor attribute: pose, lighting, colours, noise."""

    def uni(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=generator)

    return {
        "scale": uni(0.93, 1.07, 1, 1),
        "cx": uni(-0.07, 0.07, 1, 1),
        "cy": uni(-0.05, 0.07, 1, 1),
        "bg": torch.rand(b, 3, generator=generator) * 0.5 + 0.3,
        "light": uni(0.85, 1.15, 1, 1, 1),
        "noise": 0.015 * torch.randn(b, 3, size, size, generator=generator),
    }


def draw_faces(ident: dict[str, Tensor], nuisance: dict[str, Tensor], attrs: Tensor) -> Tensor:
    """Render one image per row of ``ident``/``nuisance`` with binary ``attrs`` [B, 6] -> [B, 3, S, S].
    Deterministic: the same rows with other attributes give the counterfactual image."""
    b = attrs.shape[0]
    size = nuisance["noise"].shape[-1]
    soft = 1.5 / size
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(grid, grid, indexing="ij")
    scale, cx, cy = nuisance["scale"], nuisance["cx"], nuisance["cy"]
    u = (u[None] - cx) / scale  # face-centred coordinates
    v = (v[None] - cy) / scale
    zero = torch.zeros(b, 1, 1)
    p = {k: t.view(b, -1, 1, 1) if t.shape[1] == 3 else t.view(b, 1, 1) for k, t in ident.items()}
    blond, glasses, smiling, bangs, pale, chubby = (attrs[:, i].view(b, 1, 1) for i in range(len(ATTRIBUTES)))
    skin = p["skin"].view(b, 3) + pale.view(b, 1) * 0.65 * (
        torch.tensor([[0.96, 0.88, 0.84]]) - p["skin"].view(b, 3)
    )

    bg = nuisance["bg"]
    img = bg[:, :, None, None].expand(b, 3, size, size).clone()
    hair_colour = torch.where(blond.view(b, 1) > 0.5, torch.tensor([[0.93, 0.8, 0.42]]), p["hair"].view(b, 3))
    fa, fb = p["face_a"] * (1 + 0.2 * chubby), p["face_b"] * (1 + 0.05 * chubby)
    # hair behind the head (upper part of a larger ellipse)
    hair_mask = _soft(_ellipse(u, v, zero, zero - 0.06, fa + 0.12, fb + 0.1), soft) * _soft(v - 0.05, soft)
    img = _paint(img, hair_mask, hair_colour)
    # face
    face_sd = _ellipse(u, v, zero, zero, fa, fb)
    face = _soft(face_sd, soft)
    img = _paint(img, face, skin)
    # bangs: hair over the forehead inside the face outline
    fringe_y = -fb * 0.5 + 0.06 * torch.cos(u * 9)
    img = _paint(img, bangs * face * _soft(v - fringe_y, soft), hair_colour)
    # eyebrows (natural hair colour, darkened)
    ey = p["eye_dy"]
    for side in (-1.0, 1.0):
        ex = side * p["eye_dx"]
        brow = _soft(
            torch.maximum(
                (u - ex).abs() - p["eye_r"] * 1.4, (v - (ey - p["brow_gap"] - p["eye_r"])).abs() - 0.025
            ),
            soft,
        )
        img = _paint(img, brow, p["hair"].view(b, 3) * 0.7)
        eye_sd = _ellipse(u, v, ex, ey, p["eye_r"] * 1.3, p["eye_r"])
        img = _paint(img, _soft(eye_sd, soft), torch.full((b, 3), 0.95))
        iris_sd = _ellipse(u, v, ex, ey, p["eye_r"] * 0.6, p["eye_r"] * 0.6)
        img = _paint(img, _soft(iris_sd, soft), p["iris"].view(b, 3))
        # glasses: ring around the eye
        ring_sd = (_ellipse(u, v, ex, ey, p["eye_r"] * 2.1, p["eye_r"] * 1.8)).abs() - 0.13
        img = _paint(img, glasses * _soft(ring_sd, soft), torch.full((b, 3), 0.06))
    bridge = _soft(torch.maximum(u.abs() - (p["eye_dx"] - p["eye_r"] * 2.0), (v - ey).abs() - 0.025), soft)
    img = _paint(img, glasses * bridge, torch.full((b, 3), 0.06))
    # nose: a darker vertical stroke
    nose = _soft(
        torch.maximum(u.abs() - 0.03, (v - (ey + p["nose_len"] / 2 + 0.05)).abs() - p["nose_len"] / 2), soft
    )
    img = _paint(img, nose, skin * 0.72)
    # mouth: straight line, or a curved open smile with teeth
    mw, my = p["mouth_w"], p["mouth_y"]
    t = ((u / mw) ** 2).clamp(max=1.0)
    inside_w = _soft(u.abs() - mw, soft)
    curve = my + smiling * 0.1 * (1 - t)  # the centre drops when smiling (corners up)
    lip = inside_w * _soft((v - curve).abs() - 0.035, soft)
    teeth = smiling * inside_w * _soft(v - curve + 0.02, soft) * _soft(my - 0.01 - v + smiling * 0.0, soft)
    img = _paint(img, teeth, torch.full((b, 3), 0.97))
    img = _paint(img, lip, torch.tensor([[0.62, 0.18, 0.2]]).expand(b, 3))
    # lighting and sensor noise
    img = img * nuisance["light"] + nuisance["noise"]
    return img.clamp(0, 1)


@functools.lru_cache(maxsize=4)
def make_synthfaces(
    size: int, n_train: int, n_dev: int, n_test: int, per_identity: int, seed: int
) -> dict[str, dict[str, Tensor | dict[str, Tensor]]]:
    """``{split: {"images", "identities", "attributes", "params"}}``: images [N,3,S,S], identities [N] (disjoint
    across splits), attributes [N,6] and the per-image drawing parameters (to render counterfactuals)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    first = 0
    for split, n_id in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        ident = draw_identities(n_id, gen)
        ids = torch.arange(n_id).repeat_interleave(per_identity)
        attrs = (torch.rand(len(ids), len(ATTRIBUTES), generator=gen) < ATTRIBUTE_RATE).float()
        params = {k: t[ids] for k, t in ident.items()}
        params.update(draw_nuisance(len(ids), size, gen))
        out[split] = {
            "images": render(params, attrs, torch.arange(len(ids))),
            "identities": ids + first,
            "attributes": attrs,
            "params": params,
        }
        first += n_id
    return out


def render(params: dict[str, Tensor], attrs: Tensor, index: Tensor, chunk: int = 512) -> Tensor:
    """Draw the images ``index`` of a split's parameters with attributes ``attrs`` [len(index), 6]."""
    ident_keys = (
        "face_a",
        "face_b",
        "skin",
        "hair",
        "iris",
        "eye_dx",
        "eye_dy",
        "eye_r",
        "brow_gap",
        "nose_len",
        "mouth_y",
        "mouth_w",
    )
    parts = []
    for s in range(0, len(index), chunk):
        i = index[s : s + chunk]
        rows = {k: t[i] for k, t in params.items()}
        parts.append(
            draw_faces(
                {k: rows[k] for k in ident_keys},
                {k: v for k, v in rows.items() if k not in ident_keys},
                attrs[s : s + chunk],
            )
        )
    return torch.cat(parts)


@DATASETS.register("synthfaces")
class SynthFaces(FaceAttributeData):
    Config = SynthFacesConfig

    def _tensors(self):
        p = self.params
        return make_synthfaces(
            p.size,
            p.train_identities,
            p.dev_identities,
            p.test_identities,
            p.images_per_identity,
            p.split_seed,
        )

    @property
    def attribute_names(self) -> list[str]:
        return list(ATTRIBUTES)

    @classmethod
    def configured_attributes(cls, params) -> list[str]:
        return list(ATTRIBUTES)

    @classmethod
    def configured_image_size(cls, params) -> int:
        return int(params.size)

    @functools.cached_property
    def info(self) -> DataInfo:
        x = self._tensors()["train"]["images"]
        p = self.params
        return DataInfo(
            num_classes=p.train_identities,
            image_shape=(3, p.size, p.size),
            class_names=[f"id{i}" for i in range(p.train_identities)],
            mean=tuple(x.mean(dim=(0, 2, 3)).tolist()),
            std=tuple(x.std(dim=(0, 2, 3)).tolist()),
        )

    def images(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(self._tensors()[split]["images"])

    def identities(self, split: str) -> Tensor:
        self.check_split(split)
        return self._tensors()[split]["identities"]

    def attributes(self, split: str) -> Tensor:
        self.check_split(split)
        return self._tensors()[split]["attributes"]

    def counterfactuals(self, split: str, index: Tensor, attrs: Tensor) -> Tensor:
        """The images ``index`` of ``split`` redrawn with attributes ``attrs`` (same identity, pose, lighting,
        noise): the exact attribute edit, used as paired supervision for the generator."""
        self.check_split(split)
        return render(self._tensors()[split]["params"], attrs.cpu().float(), index.cpu())
