"""JMA issue, stretch goal: the authors' Keras ``.hdf5`` VGG16 models read into ``vgg16_ecoc``. Fixtures are
written with h5py in Keras' layout (``layer_names`` / ``weight_names`` attributes, ``<layer>/<layer>/kernel:0``,
HWIO convolution kernels, (in, out) dense kernels; ``model_weights/`` for a whole-model save) and the victim
is compared with a NumPy forward pass of the Keras network in NHWC (Conv2D "same", 2x2 max-pools, Flatten in
H, W, C order, fc1 / fc2 ReLU, the output layer's pre-activation), at 64x64 where the flatten order matters."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import parse_config
from advlab.victims.base import VICTIMS, load_victim_weights

BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
CONVS = [f"block{b}_conv{i}" for b, n in BLOCKS for i in range(1, n + 1)]


def keras_layers(rng, channels: int, width: int, fc: int, side: int, units: int) -> dict[str, tuple]:
    """Weights of Keras' VGG16(include_top=False) + fc1 + fc2 + output, at a small width."""
    layers, cin = {}, channels
    for (b, n), mult in zip(BLOCKS, (1, 2, 4, 8, 8)):
        for i in range(1, n + 1):
            cout = mult * width
            layers[f"block{b}_conv{i}"] = (rng.normal(0, 0.5, (3, 3, cin, cout)), rng.normal(0, 0.1, cout))
            cin = cout
    layers["fc1"] = (rng.normal(0, 0.3, (side * side * cin, fc)), rng.normal(0, 0.1, fc))
    layers["fc2"] = (rng.normal(0, 0.3, (fc, fc)), rng.normal(0, 0.1, fc))
    layers["output"] = (rng.normal(0, 0.3, (fc, units)), rng.normal(0, 0.1, units))
    return layers


def write_keras_h5(path: Path, layers: dict[str, tuple], whole_model: bool) -> None:
    """The layout of Keras' ``model.save_weights`` (``whole_model``: ``model.save``, under ``model_weights``)."""
    order = ["input_1"]
    for b, n in BLOCKS:
        order += [f"block{b}_conv{i}" for i in range(1, n + 1)] + [f"block{b}_pool"]
    order += ["flatten", "fc1", "fc2", "output"]
    order += [name for name in layers if name not in order]  # layers the official models do not have
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        group = f.create_group("model_weights") if whole_model else f
        if whole_model:
            f.attrs["model_config"] = '{"class_name": "Model"}'
            f.create_group("optimizer_weights").create_dataset("Adam/iterations:0", data=np.array(7))
        group.attrs["layer_names"] = np.array([n.encode() for n in order])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.3.1"
        for name in order:
            g = group.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"] if name in layers else []
            g.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for n, value in zip(names, layers.get(name, ())):
                g.create_dataset(n, data=value.astype(np.float32))


def keras_forward(
    x: np.ndarray, layers: dict[str, tuple], shared_from: dict[str, tuple] | None = None
) -> np.ndarray:
    """The Keras network on NHWC images: its output layer's pre-activation. ``shared_from``: the layers the
    first 4 convolutions come from (the official ensemble's shared bottom, bit 1's file)."""
    for k, name in enumerate(CONVS):
        kernel, bias = (shared_from or layers)[name] if k < 4 else layers[name]
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = sum(padded[:, i : i + h, j : j + w, :] @ kernel[i, j] for i in range(3) for j in range(3)) + bias
        x = np.maximum(x, 0)
        if name.endswith(("block1_conv2", "block2_conv2", "conv3")):
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    x = x.reshape(x.shape[0], -1)  # Keras' Flatten of NHWC
    x = np.maximum(x @ layers["fc1"][0] + layers["fc1"][1], 0)
    x = np.maximum(x @ layers["fc2"][0] + layers["fc2"][1], 0)
    return x @ layers["output"][0] + layers["output"][1]


def victim(size: int, outputs: int, channels: int = 3, **params):
    cls = VICTIMS.get("vgg16_ecoc")
    info = DataInfo(
        outputs, (channels, size, size), [str(i) for i in range(outputs)], (0.5,) * 3, (0.25,) * 3
    )
    builder = cls(parse_config(cls.Config, {"name": "vgg16_ecoc", **params}, "victim"))
    return builder, builder.build(info, outputs).eval()


def load(builder, model, path: Path):
    load_victim_weights(model, builder.load_checkpoint(str(path)), str(path))  # as prepare_victim does
    return model


def test_ecoc_ensemble_matches_the_keras_networks(tmp_path):
    """Four per-bit files (bit_1 .. bit_4, also bit_10 ordering), freeze6: the victim's logits are the Keras
    networks' pre-tanh outputs, with the shared bottom from bit 1's file as the official model builds it."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "Model" / "gtsrb" / "model_weight"
    bits = [keras_layers(rng, 3, 2, 6, 2, 1) for _ in range(10)]
    for i, layers in enumerate(bits, start=1):
        path = folder / f"Hadamard32_surrogate_weights_freeze6_bit_{i}" / "final_trained_weights.hdf5"
        write_keras_h5(path, layers, whole_model=i % 2 == 0)
    first = folder / "Hadamard32_surrogate_weights_freeze6_bit_1" / "final_trained_weights.hdf5"
    builder, model = victim(64, 10, shared_convs=4, width=2, fc=6)
    load(builder, model, first)
    assert torch.equal(model.mean, torch.zeros(1, 3, 1, 1)) and torch.equal(model.std, torch.ones(1, 3, 1, 1))
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    nhwc = x.permute(0, 2, 3, 1).double().numpy()
    expected = np.concatenate([keras_forward(nhwc, b, shared_from=bits[0]) for b in bits], axis=1)
    with torch.no_grad():
        got = model(x).double().numpy()
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)  # bit 10 in 10th place, not after bit 1

    with pytest.raises(CheckpointError, match="victim.shared_convs=6 \\(the files: 4\\)"):
        load(*victim(64, 10, width=2, fc=6), first)
    with pytest.raises(CheckpointError, match="victim.branches=5 \\(the files: 10"):
        load(*victim(64, 10, shared_convs=4, width=2, fc=6, branches=5), first)
    (folder / "Hadamard32_surrogate_weights_freeze6_bit_3" / "final_trained_weights.hdf5").unlink()
    with pytest.raises(CheckpointError, match="numbered \\[1, 2, 4, 5"):
        load(*victim(64, 9, shared_convs=4, width=2, fc=6), first)


def test_one_hot_model_and_layout_errors(tmp_path):
    """The one-hot GTSRB model (one file, an output unit per class) as a one-branch victim; missing and
    unexpected layers, a non-Keras HDF5 file and a missing file are errors that say what to fix."""
    rng = np.random.default_rng(2)
    layers = keras_layers(rng, 3, 2, 6, 2, 5)
    path = tmp_path / "Model" / "gtsrb" / "final_trained_weights.hdf5"
    write_keras_h5(path, layers, whole_model=True)
    builder, model = victim(64, 5, branches=1, width=2, fc=6)
    load(builder, model, path)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model(x).double().numpy()
    assert np.allclose(
        got, keras_forward(x.permute(0, 2, 3, 1).double().numpy(), layers), rtol=1e-4, atol=1e-5
    )

    extra = dict(layers, batch_normalization=(np.zeros((1, 1)), np.zeros(1)))
    write_keras_h5(tmp_path / "extra.hdf5", extra, whole_model=False)
    with pytest.raises(CheckpointError, match="batch_normalization"):
        load(*victim(64, 5, branches=1, width=2, fc=6), tmp_path / "extra.hdf5")
    write_keras_h5(
        tmp_path / "nofc2.hdf5", {k: v for k, v in layers.items() if k != "fc2"}, whole_model=False
    )
    with pytest.raises(CheckpointError, match="no Keras layer 'fc2'"):
        load(*victim(64, 5, branches=1, width=2, fc=6), tmp_path / "nofc2.hdf5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="layer_names"):
        load(*victim(64, 5, branches=1, width=2, fc=6), tmp_path / "plain.h5")
    with pytest.raises(CheckpointError, match="does not exist.*download_info"):
        load(*victim(64, 5, branches=1, width=2, fc=6), tmp_path / "missing.hdf5")
    with pytest.raises(CheckpointError, match="victim.width=4 \\(the files: 2\\)"):
        load(*victim(64, 5, branches=1, width=4, fc=6), path)
