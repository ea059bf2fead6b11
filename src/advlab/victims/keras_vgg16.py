"""The JMA authors' Keras models (``.hdf5``) read into ``vgg16_ecoc``: ``victim.checkpoint=<.hdf5 file>``.

The official repository builds every model from Keras' ``VGG16(include_top=False)`` (13 convolutions
``block<b>_conv<i>``, 3x3 "same", five 2x2 max-pools) + ``Flatten`` + ``fc1`` / ``fc2`` (Dense 4096, ReLU) +
``output`` (Dense; tanh for an ECOC bit, softmax for the one-hot GTSRB model), fed ``x / 255`` with no
normalisation (``ECOC/<task>/models.py``, ``OneHot/models.py``):

- ECOC (Tables III-V): one network per bit, ``Model/<task>/model_weight/Hadamard<n>_surrogate_weights_freeze6_
  bit_<i>/final_trained_weights.hdf5`` (``i`` = 1..n), each ``output`` a single unit; ``victim.checkpoint``
  names bit 1's file and the other bits are read from the sibling ``..._bit_<i>`` folders. ``ECOC_Hadamard_Model``
  shares the first 6 Keras layers after the input (``freeze6``: input, 4 convolutions, 2 pools) taken from
  bit 1's file, and runs the rest of every file's network on top: ``vgg16_ecoc`` with ``shared_convs`` = the
  convolutions among those layers (4) and one branch per file, in the bit order of the ``bit_<i>`` numbers.
- One-hot (Table I): ``Model/gtsrb/final_trained_weights.hdf5``, one network whose ``output`` has a unit per
  class: ``vgg16_ecoc`` with one branch.

The files are read as Keras writes them (``save_weights`` or a whole-model ``save``, whose weights sit under
``model_weights/``): the ``layer_names`` attribute lists the layers, each layer group's ``weight_names``
its datasets (``<layer>/<layer>/kernel:0``, ``bias:0``). Keras keeps a convolution kernel as HWIO and a
dense kernel as (in, out): convolutions become OIHW, dense kernels are transposed, and ``fc1``'s input axis
is reordered from Keras' flatten order (H, W, C of the last pool's NHWC output) to PyTorch's (C, H, W). The
returned state_dict is the whole victim's, with ``mean`` 0 and ``std`` 1 (the models read ``x`` in [0, 1]).
Every weight of every file is consumed, except the shared layers of bits 2..n (ignored: the official model
takes them from bit 1's file; they were frozen ImageNet weights during training, so every file holds the
same) and Keras' optimizer state (``optimizer_weights``, training state only).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from advlab.errors import CheckpointError

SOURCE = (
    "the JMA repository (github.com/guowei-cn/JMA--A-General-Close-to-Optimal-Targeted-Adversarial-Attack-with-"
    "Improved-Efficiency), Model/download_info.txt: its Google Drive archive holds Model/<task>/model_weight/"
    "Hadamard<n>_surrogate_weights_freeze6_bit_<i>/final_trained_weights.hdf5 (ECOC) and "
    "Model/gtsrb/final_trained_weights.hdf5 (one-hot)"
)
#: Keras VGG16's convolutions, in network order, and the Keras layer index of each (after the input layer;
#: pools at 3, 6, 10, 14, 18)
KERAS_CONVS = [
    f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)
]
KERAS_CONV_LAYER = [1, 2, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17]
DENSES = ("fc1", "fc2", "output")
KERAS_SUFFIXES = (".hdf5", ".h5")


def is_keras_file(path: str) -> bool:
    return str(path).lower().endswith(KERAS_SUFFIXES)


def keras_files(path: str) -> list[Path]:
    """The files of ``victim.checkpoint``: that file, and where it sits in an official per-bit folder
    (``..._bit_<i>/<name>``), the same file of every ``..._bit_*`` sibling folder, in the order of the bit
    numbers (as the official scripts sort them: bit_10 after bit_9)."""
    file = Path(os.path.expanduser(str(path)))
    if not file.is_file():
        raise CheckpointError(
            f"victim.checkpoint: Keras weights file '{file}' does not exist. Download the models from {SOURCE} and "
            "set victim.checkpoint=<file> (for the per-bit ECOC networks: bit 1's file; the other bits are read "
            "from the sibling ..._bit_<i> folders)"
        )
    folder = re.fullmatch(r"(.*bit_)(\d+)", file.parent.name)
    if not folder:
        return [file]
    siblings = file.parent.parent.glob(f"{glob.escape(folder.group(1))}*/{glob.escape(file.name)}")
    numbered = []
    for f in siblings:
        m = re.fullmatch(re.escape(folder.group(1)) + r"(\d+)", f.parent.name)
        if m and f.is_file():
            numbered.append((int(m.group(1)), f))
    numbers = sorted(n for n, _ in numbered)
    if numbers != list(range(1, len(numbers) + 1)):
        raise CheckpointError(
            f"victim.checkpoint: the per-bit folders next to '{file}' are numbered {numbers}; the official "
            f"models have bit_1 .. bit_<n> with no gap (download the whole Model/ archive: {SOURCE})"
        )
    return [f for _, f in sorted(numbered)]


def read_keras_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {"kernel": array, "bias": array}}`` for every layer with weights, as Keras stored it."""
    import h5py

    def text(v: Any) -> str:
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise CheckpointError(
                    f"victim.checkpoint: '{path}' is an HDF5 file without Keras' 'layer_names' attribute (not a "
                    f"Keras save_weights / save file); expected the models published at {SOURCE}"
                )
            out: dict[str, dict[str, np.ndarray]] = {}
            for layer in map(text, group.attrs["layer_names"]):
                names = [text(w) for w in group[layer].attrs.get("weight_names", [])]
                if names:
                    # "block1_conv1/kernel:0" -> "kernel"
                    out[layer] = {w.split("/")[-1].split(":")[0]: np.asarray(group[layer][w]) for w in names}
            return out
    except OSError as exc:
        raise CheckpointError(f"victim.checkpoint: cannot read '{path}' as an HDF5 file ({exc})") from None


def _layer(weights: dict[str, dict[str, np.ndarray]], name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if name not in weights or set(weights[name]) != {"kernel", "bias"}:
        raise CheckpointError(
            f"victim.checkpoint: '{path}' has no Keras layer '{name}' with a kernel and a bias (layers: "
            f"{sorted(weights)[:8]}); expected Keras' VGG16 + fc1/fc2/output as published at {SOURCE}"
        )
    return weights[name]["kernel"], weights[name]["bias"]


def keras_state_dict(
    path: str, params: Any, make_net: Callable[[int, int, int, Any], nn.Module]
) -> dict[str, Tensor]:
    """The ``vgg16_ecoc`` victim's state_dict (``net.*``, ``mean``, ``std``) from the official Keras files;
    ``make_net(channels, size, bits, params)`` builds the victim's network (on the meta device here, for its
    module names)."""
    files = keras_files(path)
    weights = [read_keras_weights(f) for f in files]
    for f, w in zip(files, weights):
        unexpected = sorted(set(w) - set(KERAS_CONVS) - set(DENSES))
        if unexpected:
            raise CheckpointError(
                f"victim.checkpoint: '{f}' has Keras layers {unexpected[:5]} that the official VGG16 models do "
                f"not have (expected {KERAS_CONVS[0]}..{KERAS_CONVS[-1]}, fc1, fc2, output; {SOURCE})"
            )
    first = _layer(weights[0], KERAS_CONVS[0], files[0])[0]
    channels, width = first.shape[2], first.shape[3]
    fc1 = _layer(weights[0], "fc1", files[0])[0]
    side = math.isqrt(fc1.shape[0] // (8 * width))
    bits = [_layer(w, "output", f)[0].shape[1] for f, w in zip(files, weights)]
    freeze = re.search(r"freeze(\d+)", str(files[0]))
    shared = sum(1 for i in KERAS_CONV_LAYER if i <= int(freeze.group(1))) if freeze else params.shared_convs
    expected = {"shared_convs": shared, "width": width, "fc": fc1.shape[1]}
    wrong = [
        f"victim.{k}={getattr(params, k)} (the files: {v})"
        for k, v in expected.items()
        if getattr(params, k) != v
    ]
    if (params.branches or sum(bits)) != len(files):  # null: one branch per output bit
        wrong.append(f"victim.branches={params.branches} (the files: {len(files)}, one branch per file)")
    if len(files) > 1 and any(b != bits[0] for b in bits):
        wrong.append(f"output units per file {bits} (one network per bit expected)")
    if wrong:
        raise CheckpointError(
            f"victim.checkpoint: the Keras models in '{path}' do not fit this vgg16_ecoc victim: {'; '.join(wrong)}. "
            f"Set those victim options (the official ECOC models: victim.shared_convs=4 victim.branches=null)"
        )
    with torch.device("meta"):
        layout = dataclasses.replace(params, branches=len(files))
        net = make_net(channels, 32 * side, sum(bits), layout)
    names = {id(m): name for name, m in net.named_modules()}
    shared_convs = [m for m in net.get_submodule("bottom") if isinstance(m, nn.Conv2d)]
    state: dict[str, Tensor] = {}

    def put(module: nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
        name = names[id(module)]
        if tuple(weight.shape) != tuple(module.weight.shape) or bias.shape[0] != module.bias.shape[0]:
            raise CheckpointError(
                f"victim.checkpoint: a Keras layer of '{path}' is {weight.shape} but the victim's {name} needs "
                f"{tuple(module.weight.shape)} (image size / channels / code length differ from the model's)"
            )
        state[f"net.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        state[f"net.{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))

    for conv, keras in zip(shared_convs, KERAS_CONVS):  # the shared bottom: bit 1's file
        kernel, bias = _layer(weights[0], keras, files[0])
        put(conv, kernel.transpose(3, 2, 0, 1), bias)
    for branch, f, w in zip(net.get_submodule("branches"), files, weights):
        convs = [m for m in branch if isinstance(m, nn.Conv2d)]
        for conv, keras in zip(convs, KERAS_CONVS[len(shared_convs) :]):
            kernel, bias = _layer(w, keras, f)
            put(conv, kernel.transpose(3, 2, 0, 1), bias)
        dense = [m for m in branch if isinstance(m, nn.Linear)]
        kernel, bias = _layer(w, "fc1", f)  # rows in Keras' (H, W, C) flatten order -> PyTorch's (C, H, W)
        hwc = kernel.reshape(side, side, 8 * width, kernel.shape[1])
        put(dense[0], hwc.transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1), bias)
        for module, keras in zip(dense[1:], DENSES[1:]):
            kernel, bias = _layer(w, keras, f)
            put(module, kernel.T, bias)
    state["mean"] = torch.zeros(1, channels, 1, 1)
    state["std"] = torch.ones(1, channels, 1, 1)
    return state
