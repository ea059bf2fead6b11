"""The metric accumulator every task's meter builds on.

A meter keeps every per-sample value it was given (on the device, in order) and :meth:`Meter.compute` takes
their exactly rounded sum (``math.fsum``), so a mean does not depend on how the samples were batched or split:
the meters of the shards of one evaluation, combined with :meth:`Meter.merge` in shard order, give bit for bit
the metrics of the unsharded evaluation (``advlab-merge``, DDP evaluation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Meter:
    """Accumulates batch statistics on the device; :meth:`compute` returns ``{name: float}``."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {}
        self.maxes: dict[str, Tensor] = {}

    def add(self, name: str, values: Tensor, mask: Tensor | None = None) -> None:
        """Add per-sample ``values`` (optionally only where ``mask``) to the running mean of ``name``."""
        values = values.detach().float().reshape(-1)
        if mask is not None:
            values = values[mask.detach().reshape(-1)]
        self.values.setdefault(name, []).append(values)

    def add_max(self, name: str, values: Tensor) -> None:
        """Track the running maximum of ``name``."""
        if values.numel() == 0:
            return
        m = values.detach().float().max()
        self.maxes[name] = torch.maximum(self.maxes[name], m) if name in self.maxes else m

    def to(self, device: torch.device | str) -> Meter:
        """Move the accumulated state (e.g. after loading a checkpoint on the CPU); subclasses with more
        state extend this."""
        self.values = {name: [v.to(device) for v in vs] for name, vs in self.values.items()}
        self.maxes = {name: m.to(device) for name, m in self.maxes.items()}
        return self

    def merge(self, other: Meter) -> Meter:
        """Append ``other``'s samples after this meter's (the next shard of the same evaluation) and take
        the maxima of both, in place; subclasses with more state extend this. Returns ``self``."""
        for name, vs in other.values.items():
            self.values.setdefault(name, []).extend(v.to(self._device(vs)) for v in vs)
        for name, m in other.maxes.items():
            m = m.to(self.maxes[name].device) if name in self.maxes else m
            self.maxes[name] = torch.maximum(self.maxes[name], m) if name in self.maxes else m
        return self

    def _device(self, fallback: list[Tensor]) -> torch.device:
        for vs in self.values.values():
            if vs:
                return vs[0].device
        return fallback[0].device if fallback else torch.device("cpu")

    def count(self, name: str) -> int:
        """How many samples ``name``'s mean is over."""
        return sum(v.numel() for v in self.values.get(name, []))

    def compute(self) -> dict[str, float]:
        out = {name: float(m.item()) for name, m in self.maxes.items()}
        for name, vs in self.values.items():
            flat = torch.cat(vs).double().cpu() if vs else torch.zeros(0, dtype=torch.float64)
            if flat.numel() > 0:
                try:
                    total = math.fsum(flat.tolist())
                except (ValueError, OverflowError):  # inf - inf, or a sum beyond float range
                    total = float(flat.sum())
                out[name] = total / flat.numel()
        return out
