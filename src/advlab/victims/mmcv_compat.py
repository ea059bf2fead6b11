"""Make mmsegmentation importable with ``mmcv-lite`` (no compiled ops).

Full mmcv does not compile against recent torch, and ``mmcv-lite`` ships the ``mmcv.ops`` sources without
their compiled extension, so ``import mmcv.ops`` fails and mmseg (which imports it at import time) with it.
:func:`ensure_mmcv_ops` does nothing when the real ``mmcv.ops`` imports (a user with full mmcv gets the real
ops). Otherwise it registers a stand-in ``mmcv.ops`` module that exposes

* ``point_sample`` -- pure PyTorch in mmcv, loaded from ``mmcv/ops/point_sample.py`` by file;
* ``sigmoid_focal_loss`` -- imported by mmseg at import time; raises a clear error if ever called;
* any other name -> ``ModuleNotFoundError`` (mmseg's optional imports catch exactly that), dunder names ->
  ``AttributeError`` (what ``hasattr``/pickle/inspect expect).

The real-time victims (PIDNet, BiSeNetV1/V2, ICNet, SegFormer, DDRNet, STDC) need no compiled op.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

_STANDIN = "advlab-mmcv-ops-standin"


def _missing_op(name: str):
    def op(*args, **kwargs):
        raise RuntimeError(
            f"mmcv.ops.{name} needs mmcv's compiled ops, which mmcv-lite does not have. Install full mmcv "
            "(built for your torch) to use a model that needs it."
        )

    return op


def ensure_mmcv_ops() -> bool:
    """Import ``mmcv.ops``; when its compiled extension is missing, install the stand-in. Returns True when the
    real ops are in use."""
    existing = sys.modules.get("mmcv.ops")
    if existing is not None:
        return getattr(existing, "__advlab__", None) != _STANDIN
    import mmcv

    try:
        importlib.import_module("mmcv.ops")
        return True
    except (ModuleNotFoundError, ImportError, OSError):
        for name in [n for n in sys.modules if n == "mmcv.ops" or n.startswith("mmcv.ops.")]:
            del sys.modules[name]
    ops = types.ModuleType("mmcv.ops", "advlab stand-in for mmcv.ops (mmcv-lite: no compiled ops)")
    ops.__advlab__ = _STANDIN
    ops.__path__ = []  # a package with no submodules: `from mmcv.ops.x import y` raises ModuleNotFoundError
    source = Path(mmcv.__file__).parent / "ops" / "point_sample.py"
    spec = importlib.util.spec_from_file_location("mmcv.ops.point_sample", source)
    point_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample)
    ops.point_sample = point_sample.point_sample
    ops.sigmoid_focal_loss = _missing_op("sigmoid_focal_loss")

    def __getattr__(name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name} is not available: mmcv-lite has no compiled ops")

    ops.__getattr__ = __getattr__
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    return False
