"""Victim models. Every victim is a :class:`Victim`: a wrapper that takes images in [0, 1] (NCHW RGB) and owns
the input normalisation, so attacks and Lp bounds always live in pixel space. Architectures register a
builder that returns the bare network for a given input shape and output size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.victims.configs import VICTIMS, VictimConfig  # noqa: F401


class Victim(nn.Module):
    """``forward(x in [0,1], **kw) = net((x - mean) / std, **kw)`` (keyword arguments go to the network, e.g. a
    defense's text prompts for PromptPAR).

    Calling a victim runs its ``forward`` as configured by the run's ``precision`` / ``channels_last`` /
    ``compile`` (:mod:`advlab.victims.acceleration`); by default it is nn.Module's call, unchanged."""

    #: set by :func:`advlab.victims.acceleration.accelerate`; None: the plain nn.Module call
    _acceleration: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._acceleration is None:
            return super().__call__(*args, **kwargs)
        return self._acceleration(self, super().__call__, args, kwargs)

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor, **net_kwargs: Any) -> Tensor:
        return self.net((x - self.mean) / self.std, **net_kwargs)


class VictimBuilder:
    """Registered per architecture: ``build_net(params, info, num_outputs) -> nn.Module``."""

    Config = VictimConfig
    registered_name = "victim"
    #: True when advlab can train this architecture itself on the configured data (no checkpoint needed)
    trainable = True

    def __init__(self, params: Any):
        self.params = params

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        raise NotImplementedError

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), info.mean, info.std)

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """The state_dict in ``victim.checkpoint`` (architectures with their own file format override this)."""
        return load_state_dict_file(path)


def load_weights_only(path: str | os.PathLike, key: str, where: str = "", fix: str = "") -> Any:
    """The object in a checkpoint file, read safely (``torch.load(weights_only=True)``, on the CPU). A missing
    file names ``key`` and ``where`` to get it (e.g. ``" (download it from ...)"``); an unreadable one names the
    error and ``fix``."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise CheckpointError(f"{key}: file '{path}' does not exist{where}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, unsafe globals
        raise CheckpointError(
            f"{key}: cannot read '{path}' as a weights-only file (torch.load weights_only=True; {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}){fix}"
        ) from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load a state_dict safely (``weights_only=True``); accept ``{'state_dict': ...}`` / ``{'model': ...}``
    wrappers as written by common training scripts."""
    obj = load_weights_only(
        path, "victim.checkpoint", fix=". Save it with torch.save(model.state_dict(), path)."
    )
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"victim.checkpoint: '{path}' does not contain a state_dict of tensors")
    return obj


def published_layout_mismatch(
    own: dict[str, Tensor], state: dict[str, Tensor]
) -> tuple[dict[str, Tensor], str]:
    """``state`` with absent batch-norm ``num_batches_tracked`` counters filled with 0 (files written before
    torch had them lack them; unused in eval), and ``""`` when its keys and shapes are exactly ``own``'s, else
    ``"missing [...], unexpected [...], shapes [...]"`` for the loader's error (every file key must be used)."""
    counters = {k: torch.zeros((), dtype=torch.long) for k in own if k.endswith("num_batches_tracked")}
    state = {**counters, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]  # fmt: skip
    if not (missing or unexpected or shape):
        return state, ""
    return state, f"missing {missing[:3]}, unexpected {unexpected[:3]}, shapes {shape[:2]}"


def load_victim_weights(victim: Victim, state: dict[str, Tensor], source: str) -> None:
    """Load a state_dict of the wrapper (``net.*`` keys) or of the bare network; explain any mismatch."""
    if not any(k.startswith("net.") for k in state):
        state = {**{f"net.{k}": v for k, v in state.items()}, "mean": victim.mean, "std": victim.std}
    own = victim.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shape:
            parts.append(f"shape mismatch {shape[:3]}")
        raise CheckpointError(
            f"victim.checkpoint: '{source}' does not fit this victim ({'; '.join(parts)}). Check victim.name "
            "and the dataset's number of classes / channels."
        )
    victim.load_state_dict(state)


class _Ignored:
    """Stand-in for a pickled non-tensor object (e.g. OpenPAR's ``result`` metrics EasyDict): nothing of it
    runs, nothing of it is kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _tensor_only_pickle() -> Any:
    """A ``pickle_module`` for :func:`torch.load` that resolves only torch's tensor/storage rebuilders,
    ``collections.OrderedDict`` and numpy arrays; every other class becomes :class:`_Ignored` (no code runs)."""
    import pickle
    import types

    allowed = {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch", "Size"),
        ("torch", "device"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed or (module == "torch" and name.endswith(("Storage", "dtype"))):
                return super().find_class(module, name)
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.layout):
                return getattr(torch, name)
            return _Ignored

    return types.SimpleNamespace(Unpickler=Unpickler, load=pickle.load, __name__="tensor_only_pickle")


def read_checkpoint(path: str | os.PathLike, key: str) -> dict[str, Any]:
    """The dict in a checkpoint file, read without running pickled code: a TorchScript archive (OpenAI's CLIP
    ``ViT-L-14.pt``) by ``torch.jit.load`` -> its state_dict; a plain file weights-only, or, when it also pickles
    non-tensor objects (OpenPAR's ``result``), with an unpickler that keeps only tensors (see
    :func:`_tensor_only_pickle`)."""
    import zipfile

    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise CheckpointError(f"{key}: file '{path}' does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(n.endswith("constants.pkl") for n in archive.namelist()):
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            obj = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_tensor_only_pickle()
            )
        except Exception as exc:
            raise CheckpointError(
                f"{key}: cannot read '{path}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{key}: '{path}' does not hold a dict of weights (got {type(obj).__name__})")
    return obj
