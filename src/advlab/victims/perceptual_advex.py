"""Checkpoints as the PAT authors save them (Laidlaw et al. 2021, cassidylaidlaw/perceptual-advex), mapped to
advlab victims: their wrapper dicts, key prefixes and input normalisation.

Three layouts occur (read from their ``adv_train.py``, ``perceptual_advex/utilities.py::get_dataset_model``
and ``perceptual_attacks.py::get_lpips_model``, and the robustness library they build on):

* **trainer** (``adv_train.py``; the released ``perceptual-advex-checkpoints.zip`` models):
  ``{'model': <bare network state_dict>, 'optimizer': ..., 'iteration': int, 'arch': 'resnet50'}``.
* **robustness** (MadryLab's ``make_and_restore_model``): ``{'model' | 'state_dict': {...}, 'optimizer',
  'schedule', 'epoch'}`` with every key under ``module.`` and the ``AttackerModel`` wrapper:
  ``normalizer.new_mean/new_std`` ([3, 1, 1]), ``model.*``, and the same again under ``attacker.normalize.*``
  / ``attacker.model.*``.
* **feature model** (``alexnet_cifar.pt``, loaded into ``AlexNetFeatureModel(CifarAlexNet())``):
  ``{'model': {'model.features.*', 'model.classifier.*', 'layer1.0.0.*', 'layer2.0.3.*', ...}}`` -- the
  ``layerK`` entries are the same trunk modules registered a second time by the feature wrapper.

Networks: the CIFAR-10 ResNet-50 is the robustness library's ``cifar_models.resnet.ResNet50`` (a torchvision
Bottleneck ResNet-50 with a 3x3 stride-1 stem, no max-pool, ``shortcut`` for ``downsample`` and ``linear``
for ``fc``); the ImageNet-100 ResNet-50 is torchvision's (100 outputs); ``alexnet_cifar`` is ``CifarAlexNet``.
Normalisation, when the file holds none (the trainer layout): what the authors' ``AttackerModel`` applies --
robustness's CIFAR mean/std (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010) for the CIFAR ResNet, its
``CustomImageNet`` mean/std (0.4717, 0.4499, 0.3837) / (0.2600, 0.2516, 0.2575) for the ImageNet-100 ResNet --
and the ImageNet mean/std for AlexNet (the authors' ``ImageNetNormalizer``).

Every key is consumed or dropped for a stated reason (:data:`IGNORED_TOP_LEVEL`, duplicates checked equal).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from advlab.errors import CheckpointError
from advlab.victims.base import load_weights_only

logger = logging.getLogger(__name__)

ROBUSTNESS_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
ROBUSTNESS_CIFAR_STD = (0.2023, 0.1994, 0.2010)
ROBUSTNESS_CUSTOM_IMAGENET_MEAN = (0.4717, 0.4499, 0.3837)  # robustness CustomImageNet (their ImageNet100)
ROBUSTNESS_CUSTOM_IMAGENET_STD = (0.2600, 0.2516, 0.2575)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURES = {  # architecture -> (names the 'arch' entry may carry, default mean, default std)
    "cifar_resnet50": (("resnet50", "rob-resnet50"), ROBUSTNESS_CIFAR_MEAN, ROBUSTNESS_CIFAR_STD),
    "imagenet_resnet50": (
        ("resnet50", "rob-resnet50"),
        ROBUSTNESS_CUSTOM_IMAGENET_MEAN,
        ROBUSTNESS_CUSTOM_IMAGENET_STD,
    ),
    "alexnet_cifar": (("alexnet",), IMAGENET_MEAN, IMAGENET_STD),
}
WEIGHT_ENTRIES = ("model", "state_dict")
#: top-level entries that carry no weights, and why they are not needed to evaluate the model
IGNORED_TOP_LEVEL = {
    "optimizer": "optimiser state (only for resuming training)",
    "schedule": "learning-rate scheduler state (only for resuming training)",
    "amp": "mixed-precision loss-scaler state (only for resuming training)",
    "iteration": "training step counter (metadata)",
    "epoch": "epoch counter (metadata)",
}
CHECKPOINTS_URL = "https://perceptual-advex.s3.us-east-2.amazonaws.com/perceptual-advex-checkpoints.zip"
ALEXNET_CIFAR_URL = "https://perceptual-advex.s3.us-east-2.amazonaws.com/alexnet_cifar.pt"


def read_checkpoint(path: str | os.PathLike, key: str) -> dict:
    where = f" (the PAT authors' models: {CHECKPOINTS_URL}; their CIFAR-10 AlexNet: {ALEXNET_CIFAR_URL})"
    obj = load_weights_only(path, key, where)
    file = Path(os.path.expanduser(str(path)))
    if not isinstance(obj, dict):
        raise CheckpointError(f"{key}: '{file}' holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _pop_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _drop_duplicates(state: dict[str, Tensor], copies: dict[str, str], source: str, key: str) -> None:
    """Remove ``copy`` keys that re-register module ``original`` (``{copy: original}``), checking they are equal."""
    for copy, original in copies.items():
        if original not in state:
            raise CheckpointError(
                f"{key}: '{source}' has '{copy}' but not the module it duplicates ('{original}')"
            )
        if not torch.equal(state[copy], state[original]):
            raise CheckpointError(
                f"{key}: '{source}': '{copy}' differs from '{original}' (they must be one module)"
            )
        del state[copy]


def _alexnet_aliases(state: dict[str, Tensor]) -> dict[str, str]:
    """``layerK.0.<i>.<p>`` -> ``features.<i>.<p>`` (the feature wrapper's slices keep the trunk's indices)."""
    out = {}
    for k in state:
        parts = k.split(".")
        if len(parts) == 4 and parts[0] in {f"layer{i}" for i in range(1, 7)} and parts[1] == "0":
            out[k] = f"features.{parts[2]}.{parts[3]}"
    return out


def _torchvision_resnet_name(k: str) -> str:
    """robustness ``cifar_models`` ResNet key -> torchvision ResNet key (``shortcut`` -> ``downsample``,
    ``linear`` -> ``fc``; every other name is the same)."""
    if k.startswith("linear."):
        return "fc." + k[len("linear.") :]
    return k.replace(".shortcut.", ".downsample.")


def convert(obj: dict, architecture: str, source: str, key: str) -> dict[str, Tensor]:
    """An advlab :class:`~advlab.victims.base.Victim` state_dict (``net.*``, ``mean``, ``std``) from a checkpoint
    object in any of the authors' layouts."""
    arch_names, mean, std = ARCHITECTURES[architecture]
    weights = [k for k in WEIGHT_ENTRIES if isinstance(obj.get(k), dict)]
    if len(weights) != 1:
        raise CheckpointError(
            f"{key}: '{source}' is not in the PAT authors' layout: expected one of {WEIGHT_ENTRIES} holding the "
            f"weights, found top-level entries {sorted(obj)[:8]}"
        )
    unknown = sorted(set(obj) - {weights[0], "arch", *IGNORED_TOP_LEVEL})
    if unknown:
        raise CheckpointError(f"{key}: '{source}' has unexpected top-level entries {unknown}")
    if "arch" in obj and obj["arch"] not in arch_names:
        raise CheckpointError(
            f"{key}: '{source}' holds a '{obj['arch']}' (its 'arch' entry) but the victim is {architecture}"
        )
    state = dict(obj[weights[0]])
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{key}: '{source}': '{weights[0]}' is not a state_dict of tensors")
    if state and all(k.startswith("module.") for k in state):  # DataParallel / robustness resume files
        state = _pop_prefix(state, "module.")
    if any(k.startswith("attacker.") for k in state):  # robustness AttackerModel: the same modules twice
        copies = {k: "model." + k[len("attacker.model.") :] for k in state if k.startswith("attacker.model.")}
        copies.update(
            {
                k: "normalizer." + k[len("attacker.normalize.") :]
                for k in state
                if k.startswith("attacker.normalize.")
            }
        )
        stray = [k for k in state if k.startswith("attacker.") and k not in copies]
        if stray:
            raise CheckpointError(f"{key}: '{source}' has unexpected attacker entries {stray[:4]}")
        _drop_duplicates(state, copies, source, key)
    normalizer = _pop_prefix(state, "normalizer.")
    if normalizer:
        if set(normalizer) != {"new_mean", "new_std"}:
            raise CheckpointError(f"{key}: '{source}': unexpected normaliser entries {sorted(normalizer)}")
        mean_t, std_t = normalizer["new_mean"].flatten(), normalizer["new_std"].flatten()
        state = {k: v for k, v in state.items() if not k.startswith("normalizer.")}
    else:
        mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    wrapped = _pop_prefix(state, "model.")
    if wrapped:  # AttackerModel / FeatureModel: the network under 'model.', LPIPS aliases beside it
        rest = {k: v for k, v in state.items() if not k.startswith("model.")}
        state = {**wrapped, **rest}
    if architecture == "alexnet_cifar":
        _drop_duplicates(state, _alexnet_aliases(state), source, key)
    elif architecture == "cifar_resnet50":  # robustness CIFAR ResNet names -> torchvision's
        state = {_torchvision_resnet_name(k): v for k, v in state.items()}
    for name, value in IGNORED_TOP_LEVEL.items():
        if name in obj:
            logger.debug(f"{source}: ignoring '{name}' ({value})")
    out = {f"net.{k}": v for k, v in state.items()}
    out["mean"] = mean_t.float().view(1, -1, 1, 1)
    out["std"] = std_t.float().view(1, -1, 1, 1)
    return out


def load(path: str | os.PathLike, architecture: str, key: str = "victim.checkpoint") -> dict[str, Tensor]:
    """Read ``path`` (any of the authors' layouts) as an advlab victim state_dict for ``architecture``."""
    return convert(read_checkpoint(path, key), architecture, str(path), key)


def load_alexnet_cifar(path: str | os.PathLike, key: str) -> dict[str, Tensor]:
    """An ``alexnet_cifar`` victim state_dict from the authors' ``alexnet_cifar.pt`` or an advlab victim file
    (``net.*`` keys, as advlab caches a trained victim)."""
    obj = read_checkpoint(path, key)
    if all(isinstance(v, Tensor) for v in obj.values()) and any(k.startswith("net.") for k in obj):
        return obj
    return convert(obj, "alexnet_cifar", str(path), key)
