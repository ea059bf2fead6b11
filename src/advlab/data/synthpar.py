"""Embedded dataset ``synthpar``: procedurally drawn pedestrians with PETA-like part-grouped attributes.

advlab draws every image itself (no download): a standing figure on a random background, with head wear,
hair, upper clothing (sleeve length, colour, logo), lower clothing (type, colour), footwear, carried objects,
age (child size / grey hair) and body build. The attributes, their part groups and one sentence per attribute
follow PETA's organisation (head, upper body, lower body, foot, carrying, age, then single attributes that the
label perturbation flips). Drawing is batched tensor work (masks from coordinate grids, painted back to
front), so a few thousand 64x64 images take about a second; images and labels are a pure function of
``dataset.data_seed`` and the split.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import SynthPARConfig  # noqa: F401
from advlab.tasks.par import PARInfo

# (attribute name, sentence); groups below index this list
ATTRIBUTES: list[tuple[str, str]] = [
    ("hat", "A pedestrian wearing a hat"),
    ("hair_long", "A pedestrian with long hair"),
    ("sunglasses", "A pedestrian wearing sunglasses"),
    ("muffler", "A pedestrian wearing a muffler"),
    ("head_nothing", "A pedestrian with nothing on the head"),
    ("upper_long_sleeve", "A pedestrian wearing long sleeves"),
    ("upper_short_sleeve", "A pedestrian wearing short sleeves"),
    ("upper_black", "A pedestrian in a black upper garment"),
    ("upper_white", "A pedestrian in a white upper garment"),
    ("upper_red", "A pedestrian in a red upper garment"),
    ("upper_blue", "A pedestrian in a blue upper garment"),
    ("upper_logo", "A pedestrian with a logo on the upper garment"),
    ("lower_trousers", "A pedestrian wearing trousers"),
    ("lower_shorts", "A pedestrian wearing shorts"),
    ("lower_skirt", "A pedestrian wearing a skirt"),
    ("lower_black", "A pedestrian in black lower clothing"),
    ("lower_blue", "A pedestrian in blue lower clothing"),
    ("shoes_dark", "A pedestrian wearing dark shoes"),
    ("shoes_white", "A pedestrian wearing white shoes"),
    ("boots", "A pedestrian wearing boots"),
    ("backpack", "A pedestrian carrying a backpack"),
    ("handbag", "A pedestrian carrying a handbag"),
    ("plastic_bag", "A pedestrian carrying a plastic bag"),
    ("carrying_nothing", "A pedestrian carrying nothing"),
    ("age_child", "A pedestrian who is a child"),
    ("age_adult", "A pedestrian who is an adult"),
    ("age_senior", "A pedestrian who is elderly"),
    ("build_heavy", "A pedestrian with a heavy build"),
    ("male", "A male pedestrian"),
]
# head, upper body, lower body, foot, carrying, age, body build (flipped), gender (flipped)
GROUPS: list[tuple[int, int]] = [(0, 5), (5, 12), (12, 17), (17, 20), (20, 24), (24, 27), (27, 28), (28, 29)]
NAMES = [a for a, _ in ATTRIBUTES]
IDX = {a: i for i, a in enumerate(NAMES)}

_COLOURS = {
    "black": (0.08, 0.08, 0.1),
    "white": (0.93, 0.93, 0.9),
    "red": (0.85, 0.12, 0.1),
    "blue": (0.12, 0.22, 0.85),
    "green": (0.15, 0.6, 0.2),
    "yellow": (0.9, 0.8, 0.15),
    "grey": (0.5, 0.5, 0.52),
    "brown": (0.45, 0.28, 0.12),
    "skin": (0.87, 0.68, 0.55),
    "hair": (0.2, 0.13, 0.07),
    "grey_hair": (0.78, 0.78, 0.78),
}


def _palette(names: list[str]) -> Tensor:
    return torch.tensor([_COLOURS[n] for n in names])


def sample_attributes(n: int, gen: torch.Generator) -> dict[str, Tensor]:
    """Latent drawing choices for ``n`` pedestrians (integer categories and booleans)."""

    def bern(p: float) -> Tensor:
        return torch.rand(n, generator=gen) < p

    def cat(probs: list[float]) -> Tensor:
        return torch.multinomial(torch.tensor(probs).expand(n, -1), 1, generator=gen).squeeze(1)

    age = cat([0.2, 0.6, 0.2])  # child, adult, senior
    male = bern(0.5)
    lower_type = cat([0.5, 0.25, 0.25])  # trousers, shorts, skirt
    lower_type = torch.where(male & (lower_type == 2), torch.zeros_like(lower_type), lower_type)
    return {
        "age": age,
        "male": male,
        "heavy": bern(0.3) & (age != 0),
        "hat": bern(0.3),
        "hair_long": bern(0.3) | (~male & bern(0.5)),
        "sunglasses": bern(0.25),
        "muffler": bern(0.25),
        "long_sleeve": bern(0.5),
        "upper_colour": cat([0.2, 0.2, 0.2, 0.2, 0.1, 0.1]),  # black white red blue green yellow
        "logo": bern(0.3),
        "lower_type": lower_type,
        "lower_colour": cat([0.35, 0.35, 0.15, 0.15]),  # black blue grey brown
        "shoe_colour": cat([0.4, 0.35, 0.25]),  # dark white brown
        "boots": bern(0.25),
        "backpack": bern(0.3),
        "handbag": bern(0.3),
        "plastic_bag": bern(0.2),
        "bag_colour": cat([0.25, 0.25, 0.25, 0.25]),  # red blue green yellow
        "hat_colour": cat([0.25, 0.25, 0.25, 0.25]),  # black red blue white
        "muffler_colour": cat([0.34, 0.33, 0.33]),  # red yellow green
    }


def labels_of(z: dict[str, Tensor]) -> Tensor:
    """Multi-hot ``[n, 29]`` labels of the latent choices (order of :data:`ATTRIBUTES`)."""
    n = z["age"].shape[0]
    y = torch.zeros(n, len(ATTRIBUTES))
    cols = {
        "hat": z["hat"],
        "hair_long": z["hair_long"],
        "sunglasses": z["sunglasses"],
        "muffler": z["muffler"],
        "head_nothing": ~(z["hat"] | z["sunglasses"] | z["muffler"]),
        "upper_long_sleeve": z["long_sleeve"],
        "upper_short_sleeve": ~z["long_sleeve"],
        "upper_black": z["upper_colour"] == 0,
        "upper_white": z["upper_colour"] == 1,
        "upper_red": z["upper_colour"] == 2,
        "upper_blue": z["upper_colour"] == 3,
        "upper_logo": z["logo"],
        "lower_trousers": z["lower_type"] == 0,
        "lower_shorts": z["lower_type"] == 1,
        "lower_skirt": z["lower_type"] == 2,
        "lower_black": z["lower_colour"] == 0,
        "lower_blue": z["lower_colour"] == 1,
        "shoes_dark": z["shoe_colour"] == 0,
        "shoes_white": z["shoe_colour"] == 1,
        "boots": z["boots"],
        "backpack": z["backpack"],
        "handbag": z["handbag"],
        "plastic_bag": z["plastic_bag"],
        "carrying_nothing": ~(z["backpack"] | z["handbag"] | z["plastic_bag"]),
        "age_child": z["age"] == 0,
        "age_adult": z["age"] == 1,
        "age_senior": z["age"] == 2,
        "build_heavy": z["heavy"],
        "male": z["male"],
    }
    for name, v in cols.items():
        y[:, IDX[name]] = v.float()
    return y


def draw(z: dict[str, Tensor], size: int, gen: torch.Generator, pixel_noise: float) -> Tensor:
    """Render the pedestrians of ``z`` as ``[n, 3, size, size]`` images in [0, 1] (batched, no pixel loops)."""
    n = z["age"].shape[0]
    s = float(size)
    yy = torch.arange(size).float().view(1, size, 1) + 0.5
    xx = torch.arange(size).float().view(1, 1, size) + 0.5

    def u(lo: float, hi: float) -> Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=gen)).view(n, 1, 1)

    # background: vertical gradient between two random colours
    top, bottom = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
    t = (yy / s).view(1, 1, size, 1)
    img = (top * (1 - t) + bottom * t).expand(n, 3, size, size).clone() * 0.6 + 0.2

    scale = torch.where(z["age"] == 0, 0.72, 1.0).view(n, 1, 1) * u(0.93, 1.03)
    h = 0.86 * s * scale  # person height in pixels
    foot = u(0.93, 0.97) * s
    head_top = foot - h
    cx = s / 2 + u(-0.06, 0.06) * s

    def row(frac: float | Tensor) -> Tensor:  # y coordinate at a fraction of the height from the top
        return head_top + frac * h

    def rect(t0, t1, x0, x1) -> Tensor:  # fractions of height; x offsets in units of h from the centre
        return (yy >= row(t0)) & (yy < row(t1)) & (xx >= cx + x0 * h) & (xx < cx + x1 * h)

    # painting writes a layer index per pixel (back to front); colours are gathered once at the end
    layers = torch.zeros(n, size, size, dtype=torch.long)
    colours = [torch.zeros(n, 3)]  # layer 0 = background

    def paint(mask: Tensor, colour: Tensor) -> None:
        colours.append(colour.expand(n, 3))
        layers.masked_fill_(mask.expand(n, size, size), len(colours) - 1)

    def colour_of(index: Tensor, names: list[str], jitter: float = 0.06) -> Tensor:
        c = _palette(names)[index]
        return (c + jitter * (torch.rand(n, 3, generator=gen) - 0.5)).clamp(0, 1)

    skin = colour_of(torch.zeros(n, dtype=torch.long), ["skin"], 0.12)
    hair_c = colour_of((z["age"] == 2).long(), ["hair", "grey_hair"], 0.06)
    upper_c = colour_of(z["upper_colour"], ["black", "white", "red", "blue", "green", "yellow"])
    lower_c = colour_of(z["lower_colour"], ["black", "blue", "grey", "brown"])
    shoe_c = colour_of(z["shoe_colour"], ["black", "white", "brown"])
    bag_c = colour_of(z["bag_colour"], ["red", "blue", "green", "yellow"])

    def b(name: str) -> Tensor:
        return z[name].view(n, 1, 1)

    shoulder = 0.14 + 0.035 * b("male").float() + 0.04 * b("heavy").float()
    hip = 0.12 + 0.015 * (~b("male")).float() + 0.04 * b("heavy").float()

    # backpack body sticks out behind one shoulder (drawn first, the torso covers its inside edge)
    paint(b("backpack") & rect(0.2, 0.47, 0.0, 1.0) & (xx >= cx + (shoulder - 0.01) * h) &
          (xx < cx + (shoulder + 0.08) * h), bag_c * 0.8)  # fmt: skip
    # long hair hangs behind the head and shoulders
    paint(b("hair_long") & rect(0.03, 0.33, -0.1, 0.1), hair_c)
    # legs: skin, then clothing over them
    lower_t = z["lower_type"].view(n, 1, 1)
    for side in (-1, 1):
        leg = (yy >= row(0.55)) & (yy < row(0.95)) & ((xx - (cx + side * 0.055 * h)).abs() < 0.045 * h)
        paint(leg, skin)
        cloth_end = torch.where(lower_t == 0, 0.93, 0.71)
        paint(leg & (yy < row(cloth_end)) & (lower_t != 2), lower_c)
    # skirt: a trapezoid widening downwards
    tt = ((yy - row(0.54)) / (0.22 * h)).clamp(0, 1)
    skirt = (lower_t == 2) & (yy >= row(0.54)) & (yy < row(0.76)) & ((xx - cx).abs() < (hip + 0.07 * tt) * h)
    paint(skirt, lower_c)
    # footwear (boots reach up the shin)
    shoe_top = torch.where(b("boots"), 0.8, 0.92)
    for side in (-1, 1):
        foot_mask = (
            (yy >= row(shoe_top)) & (yy < row(1.0)) & ((xx - (cx + side * 0.06 * h)).abs() < 0.055 * h)
        )
        paint(foot_mask, shoe_c)
    # torso: trapezoid from shoulders to hips
    tt = ((yy - row(0.2)) / (0.36 * h)).clamp(0, 1)
    half = shoulder * (1 - tt) + hip * tt
    torso = (yy >= row(0.2)) & (yy < row(0.56)) & ((xx - cx).abs() < half * h)
    paint(torso, upper_c)
    # arms: sleeve to the wrist or to the upper arm, skin below
    for side in (-1, 1):
        arm = (
            (yy >= row(0.21))
            & (yy < row(0.55))
            & ((xx - (cx + side * (shoulder + 0.03) * h)).abs() < 0.028 * h)
        )
        paint(arm, skin)
        sleeve_end = torch.where(b("long_sleeve"), 0.53, 0.31)
        paint(arm & (yy < row(sleeve_end)), upper_c)
    # logo: a yellow/black square on the chest
    logo_c = torch.where(z["upper_colour"].view(n, 1) == 5, _palette(["black"]), _palette(["yellow"]))
    paint(b("logo") & rect(0.27, 0.37, -0.045, 0.045), logo_c)
    # backpack straps over the shoulders
    straps = (
        b("backpack")
        & (yy >= row(0.2))
        & (yy < row(0.42))
        & (((xx - cx).abs() - 0.075 * h).abs() < 0.014 * h)
    )
    paint(straps, bag_c * 0.6)
    # carried bags at the hands
    paint(b("handbag") & rect(0.47, 0.6, -(shoulder + 0.1), -(shoulder - 0.01)), bag_c)
    paint(b("plastic_bag") & rect(0.5, 0.66, shoulder - 0.01, shoulder + 0.09), colour_of(
        torch.zeros(n, dtype=torch.long), ["white"], 0.04) * 0.9 + 0.05)  # fmt: skip
    # neck and head
    paint(rect(0.15, 0.21, -0.03, 0.03), skin)
    head = ((yy - row(0.095)) / (0.085 * h)) ** 2 + ((xx - cx) / (0.068 * h)) ** 2 < 1
    paint(head, skin)
    paint(head & (yy < row(0.055)), hair_c)  # hairline
    paint(b("muffler") & rect(0.165, 0.225, -0.085, 0.085),
          colour_of(z["muffler_colour"], ["red", "yellow", "green"]))  # fmt: skip
    paint(b("sunglasses") & rect(0.075, 0.11, -0.065, 0.065), _palette(["black"]).expand(n, 3))
    hat_c = colour_of(z["hat_colour"], ["black", "red", "blue", "white"])
    paint(b("hat") & (rect(0.035, 0.06, -0.11, 0.11) | rect(-0.03, 0.04, -0.07, 0.07)), hat_c)

    palette = torch.stack(colours, 1)  # [n, L, 3]
    person = (
        palette.gather(1, layers.view(n, -1, 1).expand(-1, -1, 3)).permute(0, 2, 1).view(n, 3, size, size)
    )
    img = torch.where((layers > 0)[:, None], person, img)
    img = img * u(0.85, 1.1)[:, None]  # global illumination
    if pixel_noise > 0:
        img = img + pixel_noise * torch.randn(img.shape, generator=gen)
    return img.clamp(0, 1)


@functools.lru_cache(maxsize=4)
def make_synthpar(
    size: int, num_train: int, num_test: int, data_seed: int, pixel_noise: float
) -> dict[str, tuple[Tensor, Tensor]]:
    """``{split: (images [N,3,size,size], labels [N,29])}``; the test split has its own seed stream."""
    out = {}
    for k, (split, n) in enumerate((("train", num_train), ("test", num_test))):
        gen = torch.Generator().manual_seed(data_seed * 1000 + k)
        xs, ys = [], []
        for start in range(0, n, 1024):  # chunks bound the memory of the batched drawing
            z = sample_attributes(min(1024, n - start), gen)
            xs.append(draw(z, size, gen, pixel_noise))
            ys.append(labels_of(z))
        out[split] = (torch.cat(xs), torch.cat(ys))
    return out


@DATASETS.register("synthpar")
class SynthPAR(DataModule):
    Config = SynthPARConfig

    def _tensors(self) -> dict[str, tuple[Tensor, Tensor]]:
        p = self.params
        return make_synthpar(p.size, p.num_train, p.num_test, p.data_seed, p.pixel_noise)

    @functools.cached_property
    def info(self) -> PARInfo:
        _, y = self._tensors()["train"]
        return PARInfo(
            num_classes=len(ATTRIBUTES),
            image_shape=(3, self.params.size, self.params.size),
            class_names=list(NAMES),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            groups=list(GROUPS),
            sentences=[s for _, s in ATTRIBUTES],
            positive_rates=tuple(y.mean(0).tolist()),
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(*self._tensors()[split])
