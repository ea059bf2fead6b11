"""The perceptual distance configs: every parameter dataclass of ``advlab.perceptual``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from advlab.errors import CheckpointError
from advlab.registry import check

MODELS = ("self", "alexnet", "alexnet_cifar", "alexnet_random")


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

    model: str = "self"  # self | alexnet | alexnet_cifar | alexnet_random (untrained trunk: tests only)
    layers: list[str] | None = None  # self: module names inside the victim (None = automatic)
    # alexnet: a state_dict path (None = torchvision's cache under TORCH_HOME); alexnet_cifar: the PAT authors'
    # alexnet_cifar.pt or an advlab victim=alexnet_cifar file (required)
    weights: str | None = None

    def validate(self, key: str) -> None:
        check(self.model in MODELS, f"{key}.model", f"must be one of {MODELS} (got '{self.model}')")
        if self.model == "alexnet":
            alexnet_weights_path(self.weights, key=f"{key}.weights")  # fails early when absent
        if self.model == "alexnet_cifar":
            check(
                bool(self.weights) and Path(os.path.expanduser(str(self.weights))).is_file(),
                f"{key}.weights",
                f"lpips.model=alexnet_cifar needs its weights file (got {self.weights!r}): the authors' "
                "alexnet_cifar.pt (https://perceptual-advex.s3.us-east-2.amazonaws.com/alexnet_cifar.pt) or a "
                "victim=alexnet_cifar file trained by advlab",
            )
