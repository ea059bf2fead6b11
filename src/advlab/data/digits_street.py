"""Embedded street-like scenes with object instances (a CPU stand-in for Cityscapes in SemanticAdv's street-view
experiment): per image a label map, an instance map and the rendered picture. No download.

Classes: ``background`` (sky / buildings above a random horizon), ``road`` (below it), ``person`` (a tall
ellipse), ``car`` (a wide rounded box) and ``cyclist`` (a small ellipse over a wide wheel ellipse).
``min_objects``..``max_objects`` objects per scene stand on the road (their bottom edge below the horizon), drawn
far to near, so nearer ones occlude; their size scales with ``dataset.size``. Each class has its own colour
(jittered per object) and the scene gets Gaussian noise, so the picture is a function of the label map up to
the jitter: a label-map-conditioned generator can learn to render an inserted object.

Instance ids follow Cityscapes' ``*_gtFine_instanceIds.png`` convention: ``class * 1000 + k`` (``k`` = 1, 2, ...
per scene) on the pixels of an object instance, the class index on the "stuff" pixels (background, road).
Everything is seeded by ``dataset.split_seed``; train and test scenes come from different seeds.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import DigitsStreetConfig, content_key  # noqa: F401
from advlab.data.info import DataInfo

CLASS_NAMES = ["background", "road", "person", "car", "cyclist"]
THING_CLASSES = (2, 3, 4)
#: mean colour of each class (RGB in [0, 1]); objects jitter it by +-colour_jitter
COLOURS = {2: (0.85, 0.25, 0.3), 3: (0.15, 0.3, 0.8), 4: (0.95, 0.65, 0.1)}
#: (height, width) ranges of each object class at size 64 (pixels), scaled by size / 64
SHAPES = {2: ((18, 26), (9, 12)), 3: ((10, 14), (18, 26)), 4: ((16, 22), (12, 16))}


def object_mask(cls: int, h: int, w: int) -> np.ndarray:
    """The ``[h, w]`` bool silhouette of an object of class ``cls`` (person, car or cyclist)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    if cls == 2:  # person: an ellipse
        return ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1.0
    if cls == 3:  # car: a box with rounded (cut) corners
        r = max(1, min(h, w) // 4)
        inner_y = np.clip(yy, r, h - 1 - r)
        inner_x = np.clip(xx, r, w - 1 - r)
        return (yy - inner_y) ** 2 + (xx - inner_x) ** 2 <= r * r
    if cls == 4:  # cyclist: a rider (upper ellipse) over a wheel ellipse
        top = h * 0.6
        rider = ((yy - top / 2) / (top / 2)) ** 2 + ((xx - cx) / (w / 4)) ** 2 <= 1.0
        wy = h - h * 0.25
        wheel = ((yy - wy) / (h * 0.25)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1.0
        return rider | wheel
    raise ValueError(f"object_mask: class {cls} is not an object class {THING_CLASSES}")


def render_scenes(
    n: int, p: DigitsStreetConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` scenes: images ``[n, 3, S, S]`` in [0, 1], label maps and instance maps ``[n, S, S]`` (int64)."""
    rng = np.random.default_rng(seed)
    s = p.size
    scale = s / 64
    images = np.zeros((n, 3, s, s), np.float32)
    labels = np.zeros((n, s, s), np.int64)
    instances = np.zeros((n, s, s), np.int64)
    rows = np.arange(s)[:, None]
    for i in range(n):
        horizon = int(rng.uniform(0.3, 0.45) * s)
        sky = rng.uniform(0.45, 0.75, 3)
        road = rng.uniform(0.2, 0.35) * np.ones(3) + rng.uniform(-0.03, 0.03, 3)
        below = rows >= horizon
        lab = np.where(below, 1, 0).repeat(s, 1)
        grad = (1 - 0.3 * rows / s)[None]  # darker towards the horizon
        img = np.where(below[None], road[:, None, None], sky[:, None, None] * grad).astype(np.float32)
        img = np.broadcast_to(img, (3, s, s)).copy()
        inst = lab.copy()
        k = int(rng.integers(p.min_objects, p.max_objects + 1))
        objects = []
        for _ in range(k):
            cls = int(rng.choice(THING_CLASSES))
            (h0, h1), (w0, w1) = SHAPES[cls]
            h = max(3, int(round(rng.uniform(h0, h1) * scale)))
            w = max(3, int(round(rng.uniform(w0, w1) * scale)))
            bottom = int(rng.integers(min(horizon + h // 2, s - 1), s))
            left = int(rng.integers(0, s - w + 1))
            objects.append((bottom, cls, h, w, left))
        for j, (bottom, cls, h, w, left) in enumerate(sorted(objects)):  # far (high) to near (low)
            top = bottom - h + 1
            m = object_mask(cls, h, w)
            if top < 0:
                m, top = m[-top:], 0
            sl = (slice(top, top + m.shape[0]), slice(left, left + w))
            colour = np.clip(np.array(COLOURS[cls]) + rng.uniform(-p.colour_jitter, p.colour_jitter, 3), 0, 1)
            shade = np.linspace(1.0, 0.75, m.shape[0])[:, None]  # lit from above
            for c in range(3):
                img[c][sl] = np.where(m, colour[c] * shade, img[c][sl])
            lab[sl] = np.where(m, cls, lab[sl])
            inst[sl] = np.where(m, cls * 1000 + j + 1, inst[sl])
        images[i] = img + p.noise * rng.standard_normal((3, s, s)).astype(np.float32)
        labels[i] = lab
        instances[i] = inst
    return (
        torch.from_numpy(images).clamp(0, 1),
        torch.from_numpy(labels),
        torch.from_numpy(instances),
    )


@functools.lru_cache(maxsize=4)
def _load_cached(key: tuple) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    p = DigitsStreetConfig(**dict(key))
    return {
        split: render_scenes(n, p, seed=1000 * p.split_seed + j)
        for j, (split, n) in enumerate((("train", p.num_train), ("test", p.num_test)))
    }


@DATASETS.register("digits_street")
class DigitsStreet(DataModule):
    Config = DigitsStreetConfig

    def _tensors(self):
        return _load_cached(tuple(sorted(content_key(self.params).items())))

    @functools.cached_property
    def info(self) -> DataInfo:
        x = self._tensors()["train"][0]
        return DataInfo(
            num_classes=len(CLASS_NAMES),
            image_shape=(3, self.params.size, self.params.size),
            class_names=list(CLASS_NAMES),
            mean=tuple(x.mean(dim=(0, 2, 3)).tolist()),
            std=tuple(x.std(dim=(0, 2, 3)).tolist()),
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        x, y, _ = self._tensors()[split]
        return TensorDataset(x, y)

    def load_instances(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """Instance maps ``[n, H, W]`` (``class * 1000 + k`` on object pixels) of the scenes ``index``."""
        self.check_split(split)
        return self._tensors()[split][2][index]

    def instance_classes(self, ids: torch.Tensor) -> torch.Tensor:
        """The class index of every instance id (-1 where the id is not an object instance)."""
        return torch.where(ids >= 1000, ids // 1000, torch.full_like(ids, -1))

    def object_shape(self, cls: int, h: int, w: int) -> torch.Tensor:
        """The silhouette ``[h, w]`` (bool) this dataset draws for class ``cls`` (objects inserted into label maps)."""
        return torch.from_numpy(object_mask(cls, h, w))

    def train_transform(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x  # geometric augmentation would misalign the label maps
