"""Loading published backbone weights from local files (no hub access): a clear error naming the file, the
expected content and where the weights are published."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from advlab.errors import CheckpointError
from advlab.victims.base import load_state_dict_file


def load_backbone_weights(
    net: nn.Module,
    path: str,
    what: str,
    source: str,
    skip_prefixes: tuple[str, ...],
    convert=None,
) -> None:
    """Load a backbone state_dict into ``net``, ignoring keys that start with ``skip_prefixes`` (the classifier
    head, which the victim replaces, and parts the victim does not build) on both sides, and BatchNorm's
    ``num_batches_tracked`` step counters where a file lacks them (older torchvision files; unused in eval and
    reset by training). ``convert`` maps the file's state_dict to ``net``'s key names first (e.g. timm ->
    torchvision)."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise CheckpointError(
            f"victim.pretrained: {what} weights file '{file}' does not exist. Download it from {source} "
            "and set victim.pretrained=<path> (or victim.pretrained=null to start from random weights)."
        )
    state = load_state_dict_file(file)
    if convert is not None:
        state = convert(state)
    state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    own = {k for k in net.state_dict() if not k.startswith(skip_prefixes)}
    if not any(k.endswith("num_batches_tracked") for k in state):
        own = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise CheckpointError(
            f"victim.pretrained: '{file}' does not hold {what} weights (missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}); expected the state_dict published at {source}"
        )
    own_state = net.state_dict()
    shape = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own_state[k].shape)}"
        for k, v in state.items()
        if v.shape != own_state[k].shape
    ]
    if shape:
        raise CheckpointError(
            f"victim.pretrained: '{file}' holds {what} weights of other sizes ({shape[:3]}); expected the "
            f"state_dict published at {source} and the victim's default sizes"
        )
    net.load_state_dict(state, strict=False)
