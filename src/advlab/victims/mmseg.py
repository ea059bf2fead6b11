"""mmsegmentation victims, built from the configs that ship inside the mmsegmentation package
(``mmseg/.mim/configs``): PIDNet-S/M/L, BiSeNetV1/V2, ICNet, SegFormer-B0..B5, DDRNet-23, STDC1/2.

The wrapper owns mmseg's input conventions, so everything outside it sees float RGB images in [0, 1]:
the config's ``data_preprocessor`` mean/std (0-255 scale) become the wrapper's normalisation, and a model that
expects BGR input (``bgr_to_rgb=False``) gets its channels flipped inside. The output is the main decode
head's logits resized (bilinear, the head's ``align_corners``) to the input resolution; PIDNet's training-time
(P, I, D) outputs are reduced to the main (I) branch. In eval mode (attacks, evaluation) the config's
``model.test_cfg`` decides how an image is run, as mmseg's ``predict`` does: ``whole``, or ``slide`` with its
``crop_size`` / ``stride`` (SegFormer's Cityscapes configs: 1024x1024 windows every 768 pixels, logits averaged
where windows overlap; ``victims/inference.py``), differentiable so attacks see the model as it is evaluated.
In training mode (the fit loop) the whole input goes through, as in mmseg's ``loss``.

``SyncBN`` becomes ``victim.norm`` (``BN``) for single-device runs; ``Pretrained`` init entries (downloads)
are dropped. Checkpoints (the mmseg model-zoo ``.pth`` files) are read from local paths with
``torch.load(weights_only=True)`` plus an explicit allow-list of the numpy/mmengine types those files carry
in their ``meta``; anything else needs the explicit opt-in ``victim.trusted_checkpoint=true``.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_state_dict_file
from advlab.victims.configs import MMSEG_MODELS, MMSegConfig  # noqa: F401
from advlab.victims.inference import InferenceMode, slide_inference

logger = logging.getLogger(__name__)


ZOO = "https://github.com/open-mmlab/mmsegmentation/tree/main/configs (model zoo tables, 'model' links)"


def mmseg_config_dir() -> Path:
    import mmseg

    return Path(mmseg.__file__).parent / ".mim" / "configs"


def _import_mmseg() -> None:
    from advlab.victims.mmcv_compat import ensure_mmcv_ops

    ensure_mmcv_ops()
    try:
        import mmseg  # noqa: F401
        from mmseg.utils import register_all_modules
    except ImportError as exc:  # pragma: no cover - the install brings it
        raise ConfigError(
            f"victim: mmsegmentation is not importable ({exc}). Run `make install` (it installs "
            "mmsegmentation, mmengine and mmcv-lite==2.1.0)."
        ) from None
    register_all_modules(init_default_scope=True)


def _replace_norm(node: Any, norm: str) -> Any:
    """SyncBN -> ``norm`` everywhere; drop ``Pretrained`` init entries (they would download)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "init_cfg" and isinstance(v, dict) and v.get("type") == "Pretrained":
                continue
            out[k] = _replace_norm(v, norm)
        if out.get("type") == "SyncBN":
            out["type"] = norm
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(_replace_norm(v, norm) for v in node)
    return node


def _set_num_classes(model_cfg: dict, num_classes: int) -> None:
    for key in ("decode_head", "auxiliary_head"):
        heads = model_cfg.get(key)
        if heads is None:
            continue
        for head in heads if isinstance(heads, list) else [heads]:
            head["num_classes"] = num_classes


def zoo_weights(config: str) -> str | None:
    """The model-zoo checkpoint URL of a shipped config (from its folder's ``metafile.yaml``), if listed."""
    import yaml

    path = mmseg_config_dir() / config
    meta = path.parent / "metafile.yaml"
    if not meta.is_file():
        return None
    for model in (yaml.safe_load(meta.read_text()) or {}).get("Models", []):
        if model.get("Name") == path.stem:
            return model.get("Weights")
    return None


def load_mmseg_config(config: str, cfg_options: dict[str, Any] | None = None):
    """The shipped (or user) config as an mmengine Config with ``cfg_options`` (dotted keys) merged in."""
    from mmengine.config import Config

    path = Path(os.path.expanduser(config))
    if not path.is_absolute():
        path = mmseg_config_dir() / config
    if not path.is_file():
        raise ConfigError(
            f"victim.config: '{config}' is neither a file nor a config shipped in {mmseg_config_dir()}"
        )
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


class MMSegVictim(Victim):
    """``forward(x RGB in [0,1]) -> logits [B, K, H, W]`` at the input resolution."""

    def __init__(
        self,
        net: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        bgr_input: bool,
        main_output: int,
        inference: InferenceMode | None = None,
        window_batch: int | None = None,
    ):
        super().__init__(net, mean, std)
        self.bgr_input = bgr_input
        self.main_output = main_output
        self.inference = inference or InferenceMode()
        self.window_batch = window_batch

    def logits(self, z: Tensor) -> Tensor:
        """The main decode head's logits of normalised inputs ``z``, at ``z``'s resolution (``encode_decode``)."""
        out = self.net.decode_head(self.net.extract_feat(z))
        if isinstance(out, (tuple, list)):
            out = out[self.main_output]
        if out.shape[-2:] != z.shape[-2:]:
            out = F.interpolate(
                out, size=z.shape[-2:], mode="bilinear", align_corners=self.net.decode_head.align_corners
            )
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.bgr_input:
            x = x.flip(1)
        z = (x - self.mean) / self.std
        mode = self.inference
        if mode.mode == "slide" and not self.training:
            return slide_inference(self.logits, z, mode.crop, mode.stride, self.window_batch)
        return self.logits(z)


class _InertMeta:
    """Stand-in for training-state objects pickled in a checkpoint's ``message_hub`` (mmengine's
    ``HistoryBuffer``): built and filled with plain data, never executes anything."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _inert_getattr(obj: Any, name: str, *default: Any) -> None:
    """Stand-in for ``builtins.getattr``, which pickles use to reference ``HistoryBuffer``'s methods."""
    return None


def _checkpoint_allow_list() -> list[Any]:
    """What ``weights_only=True`` may build from an mmseg model-zoo checkpoint besides tensors: numpy arrays,
    scalars and dtypes (``meta``), and inert stand-ins for the message hub's ``HistoryBuffer`` objects and the
    ``getattr`` references to their methods (neither the real class nor the real ``getattr`` is allowed)."""
    import numpy as np

    allowed: list[Any] = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    allowed += [_reconstruct, scalar]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    allowed += [
        (_InertMeta, "mmengine.logging.history_buffer.HistoryBuffer"),
        (_inert_getattr, "builtins.getattr"),
    ]
    return allowed


def _allowed_names() -> set[str]:
    names = set()
    for g in _checkpoint_allow_list():
        names.add(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}")
    return names


def load_mmseg_checkpoint(
    path: str | os.PathLike, trusted: bool = False, published: str | None = None
) -> dict[str, Tensor]:
    """The ``state_dict`` of an mmseg checkpoint, loaded safely (``weights_only=True`` with an explicit
    allow-list); ``trusted=True`` unpickles anything (only for files you trust)."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise CheckpointError(
            f"victim.checkpoint: file '{path}' does not exist. Download it from {published or ZOO} and point "
            "victim.checkpoint at the local file."
        )
    if trusted:
        logger.warning(f"loading '{path}' as a full pickle (victim.trusted_checkpoint=true)")
        obj = torch.load(path, map_location="cpu", weights_only=False)
    else:
        try:
            with torch.serialization.safe_globals(_checkpoint_allow_list()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except Exception:
                unsafe = []
            allowed = _allowed_names()
            unsafe = [g for g in unsafe if g not in allowed]
            what = f"it needs the non-allow-listed globals {unsafe}" if unsafe else f"{type(exc).__name__}"
            raise CheckpointError(
                f"victim.checkpoint: cannot load '{path}' safely (weights_only=True): {what}. If you trust "
                "this file, set victim.trusted_checkpoint=true to unpickle it fully."
            ) from None
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"victim.checkpoint: '{path}' does not contain a state_dict of tensors")
    return obj


def _quiet_init_weights(net: nn.Module) -> None:
    """mmseg's initialisation, without mmengine's per-parameter log lines."""
    from mmengine.logging import MMLogger

    mm_logger = MMLogger.get_current_instance()
    level = mm_logger.level
    mm_logger.setLevel(logging.WARNING)
    try:
        net.init_weights()
    finally:
        mm_logger.setLevel(level)


class MMSegBuilder(VictimBuilder):
    Config = MMSegConfig
    #: the index of the main output when the decode head returns several in training mode
    main_output = 0

    def model_config(self, num_classes: int) -> dict:
        cfg = load_mmseg_config(self.params.config, self.params.cfg_options)
        model = _replace_norm(copy.deepcopy(cfg.to_dict()["model"]), self.params.norm)
        _set_num_classes(model, num_classes)
        return model

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        # mmseg/mmcv warn at import and build about things advlab does not use (deformable attention of
        # mmcv-lite, its own loss modules); keep the run log readable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self._build_net(info, num_outputs)

    def _build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        _import_mmseg()
        from mmseg.registry import MODELS

        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        model = self.model_config(num_outputs)
        self._preproc = model.pop("data_preprocessor", None) or {}
        self._inference = InferenceMode.from_mmseg(model.get("test_cfg"), "victim.cfg_options")
        model["data_preprocessor"] = None
        net = MODELS.build(model)
        if self.params.init_weights and not self.params.checkpoint:
            _quiet_init_weights(net)
        return net

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        net = self.build_net(info, num_outputs)
        pre = self._preproc
        mean = [m / 255.0 for m in pre.get("mean", [123.675, 116.28, 103.53])]
        std = [s / 255.0 for s in pre.get("std", [58.395, 57.12, 57.375])]
        bgr_input = not pre.get("bgr_to_rgb", False)
        return MMSegVictim(
            net,
            tuple(mean),
            tuple(std),
            bgr_input,
            self.main_output,
            self._inference,
            self.params.window_batch,
        )

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return load_mmseg_checkpoint(path, self.params.trusted_checkpoint, zoo_weights(self.params.config))


class PIDNetBuilder(MMSegBuilder):
    main_output = 1  # (P, I, D) in training mode; I is the segmentation output


def _register(name: str, base: type[MMSegBuilder]) -> type[MMSegBuilder]:
    config = VICTIMS.config(name)  # declared in victims/configs.py, with the model's config file as default
    cls = type(f"{name.title().replace('_', '')}Victim", (base,), {"Config": config})
    return VICTIMS.register(name)(cls)


for _name in MMSEG_MODELS:
    _register(_name, PIDNetBuilder if _name.startswith("pidnet") else MMSegBuilder)

__all__ = ["MMSEG_MODELS", "MMSegBuilder", "MMSegVictim", "load_mmseg_checkpoint", "load_state_dict_file"]
