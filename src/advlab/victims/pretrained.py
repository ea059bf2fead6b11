"""Loading published backbone weights from local files (no hub access): a clear error naming the file, the
expected content and where the weights are published."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from advlab.errors import CheckpointError
from advlab.victims.base import load_state_dict_file


def load_backbone_weights(
    net: nn.Module, path: str, what: str, source: str, skip_prefixes: tuple[str, ...]
) -> None:
    """Load a backbone state_dict into ``net``, ignoring keys that start with ``skip_prefixes`` (the classifier
    head, which the victim replaces) on both sides."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise CheckpointError(
            f"victim.pretrained: {what} weights file '{file}' does not exist. Download it from {source} "
            "and set victim.pretrained=<path> (or victim.pretrained=null to start from random weights)."
        )
    state = {k: v for k, v in load_state_dict_file(file).items() if not k.startswith(skip_prefixes)}
    own = {k for k in net.state_dict() if not k.startswith(skip_prefixes)}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise CheckpointError(
            f"victim.pretrained: '{file}' does not hold {what} weights (missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}); expected the state_dict published at {source}"
        )
    net.load_state_dict(state, strict=False)
