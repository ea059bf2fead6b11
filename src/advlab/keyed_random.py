"""Random numbers keyed on each image, so an attack's random draws for an image do not depend on the batch it
came in (which other images, in which order, how many): the evaluate loop draws them this way, which makes a
sharded or distributed evaluation (``eval.shard``/``eval.num_shards``, torchrun) attack every image exactly as
the unsharded run does.

Inside :func:`keyed_by_image` (entered by the evaluate loop around each attack call) the helpers below return
values that are a pure function of (the image's pixels, the run's seed, the ordinal of the draw in that attack
call, the element's position), computed by an integer hash in batched tensor ops on the image's device;
outside it they are torch's own generator (``uniform_``, ``randn_like``, ``rand``), as training-time attacks
use. The image key is an exact integer (8-bit pixel values at up to 4096 fixed positions, weighted by hashed
integers, summed in float64 below 2^53), so it is the same whatever the batch and summation order.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_KEY_PIXELS = 4096  # pixels (at fixed, evenly spaced positions) an image's key is computed from
_active: list[list[int]] = []  # stack of [seed, draws so far] of the enclosing keyed_by_image contexts


def _mix(h: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values in [0, 2^32), batched."""
    h = ((h >> 16) ^ h) * 0x45D9F3B & _M32
    h = ((h >> 16) ^ h) * 0x45D9F3B & _M32
    return (h >> 16) ^ h


@contextlib.contextmanager
def keyed_by_image(seed: int) -> Iterator[None]:
    """Draws inside are keyed on each image and ``seed`` (see the module docstring)."""
    _active.append([int(seed) & _M32, 0])
    try:
        yield
    finally:
        _active.pop()


def active() -> bool:
    return bool(_active)


def image_keys(x: Tensor) -> Tensor:
    """One int64 in [0, 2^32) per image of ``x`` ``[B, ...]``, an exact function of its pixel values."""
    flat = x.detach().reshape(x.shape[0], -1)
    n = flat.shape[1]
    pos = torch.linspace(0, n - 1, min(n, _KEY_PIXELS), device=x.device).round().long()
    q = (flat[:, pos].double().clamp(0, 1) * 255).round()  # integers 0..255
    w = (_mix(torch.arange(pos.numel(), device=x.device, dtype=torch.int64)) % 65521 + 1).double()
    key = (q @ w).long()  # < 256 * 65521 * 4096 < 2^37: exact in float64 in any order
    return _mix((key & _M32) ^ _mix((key >> 32) + 0x9E3779B))


def _uniform(x: Tensor, per_image: tuple[int, ...]) -> Tensor:
    """Keyed uniforms in [0, 1) of shape ``[B, *per_image]`` (float32, on x's device); one draw."""
    state = _active[-1]
    seed, draw = state
    state[1] += 1
    salt = int(_mix(torch.tensor((seed * 0x2545F49 + draw * 0x27D4EB2D + 1) & _M32)))
    keys = _mix(image_keys(x) ^ salt)
    count = math.prod(per_image)
    j = torch.arange(count, device=x.device, dtype=torch.int64)
    h = _mix(_mix(j ^ 0x5BD1E995) ^ keys[:, None])
    return ((h >> 8).float() * 2.0**-24).reshape(x.shape[0], *per_image)


def uniform_like(x: Tensor, low: float, high: float) -> Tensor:
    """Uniform in ``[low, high)`` with x's shape, dtype and device."""
    if not _active:
        return torch.empty_like(x).uniform_(low, high)
    return (low + (high - low) * _uniform(x, tuple(x.shape[1:]))).to(x.dtype)


def randn_like(x: Tensor) -> Tensor:
    """Standard normal with x's shape, dtype and device (keyed: Box-Muller on two keyed uniforms)."""
    if not _active:
        return torch.randn_like(x)
    u1, u2 = _uniform(x, tuple(x.shape[1:])), _uniform(x, tuple(x.shape[1:]))
    return (torch.sqrt(-2 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)).to(x.dtype)


def rand_per_image(x: Tensor) -> Tensor:
    """One uniform in [0, 1) per image of ``x`` (``[B]``, x's dtype and device)."""
    if not _active:
        return torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
    return _uniform(x, (1,)).reshape(-1).to(x.dtype)
