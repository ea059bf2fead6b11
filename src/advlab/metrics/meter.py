"""The metric accumulator every task's meter builds on."""

from __future__ import annotations

import torch
from torch import Tensor


class Meter:
    """Accumulates batch statistics on the device; :meth:`compute` returns ``{name: float}``."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}
        self.maxes: dict[str, Tensor] = {}

    def add(self, name: str, values: Tensor, mask: Tensor | None = None) -> None:
        """Add per-sample ``values`` (optionally only where ``mask``) to the running mean of ``name``."""
        values = values.detach().float()
        if mask is not None:
            mask = mask.detach()
            values = values[mask]
        total, count = values.sum(), torch.tensor(values.numel(), device=values.device)
        if name in self.sums:
            self.sums[name] += total
            self.counts[name] += count
        else:
            self.sums[name], self.counts[name] = total, count

    def add_max(self, name: str, values: Tensor) -> None:
        """Track the running maximum of ``name``."""
        if values.numel() == 0:
            return
        m = values.detach().float().max()
        self.maxes[name] = torch.maximum(self.maxes[name], m) if name in self.maxes else m

    def to(self, device: torch.device | str) -> Meter:
        """Move the accumulated state (e.g. after loading a checkpoint on the CPU); subclasses with more
        state extend this."""
        for store in (self.sums, self.counts, self.maxes):
            for name in store:
                store[name] = store[name].to(device)
        return self

    def compute(self) -> dict[str, float]:
        out = {name: float(m.item()) for name, m in self.maxes.items()}
        for name, total in self.sums.items():
            n = int(self.counts[name].item())
            if n > 0:
                out[name] = float(total.item()) / n
        return out
