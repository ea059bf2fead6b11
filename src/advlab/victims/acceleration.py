"""How a victim's forward runs on the accelerator: ``precision`` (autocast), ``channels_last`` and ``compile``.

One mechanism for every loop and attack: :func:`accelerate` sets a :class:`~advlab.victims.configs.Acceleration`
on a :class:`~advlab.victims.base.Victim`, whose ``__call__`` then

- converts its 4-D image input to ``torch.channels_last`` (the weights were converted once by
  :func:`accelerate`), so every convolution runs in the NHWC layout the GPU kernels prefer;
- runs the victim's forward (normalisation and network, whatever the subclass's ``forward`` does) under
  ``torch.autocast(dtype=bfloat16 | float16)`` on the input's device type;
- returns every floating output in float32 (tensors inside tuples / lists / dicts too).

Under a ``torch.func`` transform (JMA's vectorised Jacobian) the forward runs in fp32 (see
:func:`under_func_transform`).

Nothing else changes: the attacks' iterates, steps, projections and bounds are computed on float32 inputs
outside the autocast region (the gradient with respect to the input arrives in float32), so an Lp bound is
exactly as tight as in fp32; the evaluate loop decides clean and adversarial outcomes (accuracy, success,
metrics) with the victim in full precision (:func:`full_precision`), so a low-precision forward can make an
attack weaker, never a reported success false. The fit and universal loops scale the loss with a
``GradScaler`` under fp16 (:func:`grad_scaler`).

``compile``: the victim is compiled once (``nn.Module.compile``: the module is unchanged, its state_dict keys
too) after its weights are loaded or trained; the attacks are unchanged. Where compiling fails (no compiler on
the platform, an operator dynamo cannot trace) the first call falls back to the eager forward with a warning.
With the default (fp32, contiguous, eager) the victim's call is nn.Module's call, untouched.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from advlab.victims.configs import Acceleration

logger = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def to_float32(out: Any) -> Any:
    """``out`` with every floating tensor (also inside tuples, lists and dicts) in float32."""
    if isinstance(out, Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, tuple | list):
        return type(out)(to_float32(o) for o in out)
    if isinstance(out, dict):
        return type(out)((k, to_float32(v)) for k, v in out.items())
    return out


def under_func_transform(x: Tensor) -> bool:
    """Whether ``x`` is traced by a ``torch.func`` transform (vjp, vmap, jacrev: JMA's vectorised Jacobian).
    The victim then runs in fp32: autocast is not supported by every functorch batching rule (a convolution
    followed by batch norm fails in the batched backward with "expected scalar type BFloat16 but found
    Float", torch 2.15)."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(wrapped is not None and wrapped(x))


class AcceleratedCall:
    """The per-victim state behind :meth:`Victim.__call__` (not a module: nothing of it is in a state_dict)."""

    def __init__(self, acceleration: Acceleration):
        self.acceleration = acceleration
        self.full_precision = 0  # > 0 inside full_precision(): the forward runs in fp32
        self.compile_checked = acceleration.compile is None

    def __call__(self, victim: nn.Module, call: Any, args: tuple, kwargs: dict) -> Any:
        acc = self.acceleration
        x = args[0] if args else None
        if acc.channels_last and isinstance(x, Tensor) and x.dim() == 4:
            args = (x.contiguous(memory_format=torch.channels_last), *args[1:])
        dtype = AUTOCAST_DTYPES.get(acc.precision) if not self.full_precision else None
        if dtype is None or not isinstance(x, Tensor) or under_func_transform(x):
            return self.checked(victim, call, args, kwargs)
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            out = self.checked(victim, call, args, kwargs)
        return to_float32(out)

    def checked(self, victim: nn.Module, call: Any, args: tuple, kwargs: dict) -> Any:
        """The call; the first compiled call that fails falls back to the eager forward for good."""
        if self.compile_checked:
            return call(*args, **kwargs)
        try:
            out = call(*args, **kwargs)
        except Exception as exc:  # dynamo / inductor failures (no compiler, untraceable operators)
            victim._compiled_call_impl = None
            out = call(*args, **kwargs)  # an error of the forward itself raises here, as without compile
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            warnings.warn(
                f"compile={self.acceleration.compile}: torch.compile of the victim failed on this platform "
                f"({type(exc).__name__}: {first[:200]}); the victim runs eagerly (set compile=false to skip)",
                RuntimeWarning,
                stacklevel=4,
            )
        self.compile_checked = True
        return out


def accelerate(victim: nn.Module, acceleration: Acceleration) -> nn.Module:
    """Set ``acceleration``'s precision and memory format on ``victim`` (a Victim); returns it. Compile later,
    once the weights are final, with :func:`compile_victim`. The default leaves the victim untouched."""
    if acceleration.precision == "fp32" and not acceleration.channels_last and acceleration.compile is None:
        victim._acceleration = None
        return victim
    victim._acceleration = AcceleratedCall(acceleration)
    if acceleration.channels_last:
        victim.to(memory_format=torch.channels_last)
    return victim


def compile_victim(victim: nn.Module) -> nn.Module:
    """Compile ``victim`` in place (once) with its ``compile`` mode; a platform without torch.compile keeps
    the eager forward, with a warning."""
    state: AcceleratedCall | None = getattr(victim, "_acceleration", None)
    mode = state.acceleration.compile if state is not None else None
    if mode is None or getattr(victim, "_compiled_call_impl", None) is not None:
        return victim
    if not hasattr(torch, "compile") or not hasattr(victim, "compile"):
        warnings.warn(
            f"compile={mode}: torch.compile is not available in torch {torch.__version__}; the victim runs "
            "eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        state.compile_checked = True
        return victim
    victim.compile(mode=mode)
    state.compile_checked = False  # the first call checks that compiling works here
    return victim


def accelerated_victims(model: nn.Module) -> list[AcceleratedCall]:
    """The acceleration states of every accelerated victim inside ``model`` (a victim or a defended wrapper)."""
    return [m._acceleration for m in model.modules() if getattr(m, "_acceleration", None) is not None]


@contextlib.contextmanager
def full_precision(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, every victim in ``model`` runs its forward in float32 (no autocast): the final checks (clean and
    adversarial outcomes, metrics) are decided at full precision."""
    states = accelerated_victims(model)
    for state in states:
        state.full_precision += 1
    try:
        yield model
    finally:
        for state in states:
            state.full_precision -= 1


def precision_of(model: nn.Module) -> str:
    """The autocast precision the victims in ``model`` run in (``fp32`` when none is accelerated)."""
    precisions = {s.acceleration.precision for s in accelerated_victims(model)}
    return next((p for p in ("fp16", "bf16") if p in precisions), "fp32")


def grad_scaler(model: nn.Module, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler for training through ``model``: active under fp16 (gradients that would underflow in
    float16 are scaled up, steps with inf/NaN gradients skipped), a no-op otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision_of(model) == "fp16")


__all__ = [
    "AUTOCAST_DTYPES",
    "accelerate",
    "compile_victim",
    "full_precision",
    "grad_scaler",
    "precision_of",
    "to_float32",
]
