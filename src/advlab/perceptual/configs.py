"""The perceptual distance configs: every parameter dataclass of ``advlab.perceptual``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from advlab.errors import CheckpointError
from advlab.registry import check

MODELS = ("self", "alexnet", "alexnet_random")


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``,
    else ``~/.cache/torch/hub``."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub"


ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"


def alexnet_weights_path(weights: str | None, key: str = "lpips.weights") -> Path:
    if weights:
        path = Path(os.path.expanduser(weights))
    else:
        path = torch_hub_dir() / "checkpoints" / ALEXNET_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{key}: AlexNet weights '{path}' not found. Download {ALEXNET_URL} into "
            f"$TORCH_HOME/hub/checkpoints/ (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}) or "
            f"set {key}=<file>."
        )
    return path


@dataclasses.dataclass
class LPIPSConfig:
    """Which perceptual distance an attack or defense uses."""

    model: str = "self"  # self | alexnet | alexnet_random (untrained trunk: tests only)
    layers: list[str] | None = None  # self: module names inside the victim (None = automatic)
    weights: str | None = None  # alexnet: a state_dict path (None = torchvision's cache under TORCH_HOME)

    def validate(self, key: str) -> None:
        check(self.model in MODELS, f"{key}.model", f"must be one of {MODELS} (got '{self.model}')")
        if self.model == "alexnet":
            alexnet_weights_path(self.weights, key=f"{key}.weights")  # fails early when absent
