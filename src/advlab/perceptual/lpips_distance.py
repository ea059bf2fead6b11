"""LPIPS-style perceptual distances (Zhang et al. 2018) as used by perceptual attacks and PAT.

``d(x1, x2) = || phi(x1) - phi(x2) ||_2`` where ``phi`` concatenates the activations of several layers of a
feature network, each normalised to unit L2 norm over channels at every spatial position and divided by
``sqrt(H*W)`` (so every layer contributes on the same scale, whatever its resolution). No learned linear
weights: this is the distance the perceptual attacks bound. Feature networks:

* ``self``: the victim's own intermediate activations (ResNet ``layer1..layer4``; for a ``nn.Sequential``
  CNN the activation after every convolution stage; or any list of module names). No external weights.
* ``alexnet``: torchvision's ImageNet AlexNet, the five ReLU outputs of its convolutional trunk. Weights come
  from ``TORCH_HOME`` (``hub/checkpoints/alexnet-owt-7be5be79.pth``, torchvision's cache) or a path.

:class:`CalibratedLPIPS` wraps the ``lpips`` package's *calibrated* LPIPS (learned linear weights) for
measuring the distortion of any attack (``attack/lpips`` in the evaluate loop).

Linearised LPIPS: :meth:`LPIPSDistance.jtj` returns ``J^T J v`` (``J`` the Jacobian of ``phi``), which the
PPGD attack uses to take steepest-ascent steps of fixed size in the LPIPS metric.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from advlab.errors import CheckpointError, ConfigError
from advlab.perceptual.configs import ALEXNET_FILE, ALEXNET_URL, MODELS, LPIPSConfig, alexnet_weights_path  # noqa: F401

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_flatten(features: list[Tensor]) -> Tensor:
    """Per layer: unit channel norm at every position, divided by sqrt(H*W); flattened and concatenated."""
    parts = []
    for f in features:
        if f.dim() == 4:
            norm = f.pow(2).sum(dim=1, keepdim=True).add(1e-10).sqrt()
            f = f / norm / (f.shape[2] * f.shape[3]) ** 0.5
        else:  # a vector layer: unit norm
            f = f.flatten(1)
            f = f / f.pow(2).sum(dim=1, keepdim=True).add(1e-10).sqrt()
        parts.append(f.flatten(1))
    return torch.cat(parts, dim=1)


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def default_self_layers(model: nn.Module) -> list[str]:
    """Intermediate layers of a victim used by LPIPS-self: ResNet ``layer1..4``; for a sequential CNN the
    output of every non-linearity before the first Flatten/Linear (one per convolution stage)."""
    model = unwrap(model)
    names = dict(model.named_modules())
    prefix = "net." if "net" in names else ""
    net = names.get("net", model)
    if all(hasattr(net, f"layer{i}") for i in range(1, 5)):
        return [f"{prefix}layer{i}" for i in range(1, 5)]
    if isinstance(net, nn.Sequential):
        chosen = []
        for name, module in net.named_children():
            if isinstance(module, (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d)):
                break
            if isinstance(module, (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU)):
                chosen.append(f"{prefix}{name}")
        if chosen:
            return chosen
    raise ConfigError(
        f"lpips.layers: cannot pick intermediate layers of {type(net).__name__} automatically; list module "
        "names, e.g. lpips.layers=[net.layer1,net.layer2]"
    )


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[str]) -> Iterator[list[Tensor]]:
    """Record the outputs of the named modules during forwards inside the context."""
    model = unwrap(model)
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ConfigError(f"lpips.layers: no module named {missing} in {type(model).__name__}")
    store: list[Tensor] = []
    handles = [modules[n].register_forward_hook(lambda _m, _i, out: store.append(out)) for n in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


class AlexNetFeatures(nn.Module):
    """The five ReLU outputs of torchvision AlexNet's convolutional trunk (ImageNet normalisation inside)."""

    RELUS = (1, 4, 7, 9, 11)

    def __init__(self, weights: str | None = None, pretrained: bool = True):
        super().__init__()
        import torchvision

        net = torchvision.models.alexnet(weights=None)
        if pretrained:
            path = alexnet_weights_path(weights)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.features = net.features[: self.RELUS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.RELUS:
                out.append(h)
        return out


class LPIPSDistance:
    """``d(x1, x2)`` per sample, over a fixed feature network or the victim's own layers (``self``).

    For ``self`` the features come from the model passed to :meth:`bind` (the attacked model), so the distance
    follows the model as it trains (PAT)."""

    def __init__(self, params: LPIPSConfig, model: nn.Module | None = None):
        self.params = params
        self.model: nn.Module | None = None
        self.layers: list[str] = []
        self.extractor: nn.Module | None = None
        if params.model in ("alexnet", "alexnet_random"):
            self.extractor = AlexNetFeatures(params.weights, pretrained=params.model == "alexnet")
        if model is not None:
            self.bind(model)

    def bind(self, model: nn.Module) -> LPIPSDistance:
        """Use ``model``'s layers (``self``) and move a fixed extractor to its device."""
        if self.params.model == "self":
            if model is not self.model:
                self.layers = list(self.params.layers or default_self_layers(model))
            self.model = model
        elif self.extractor is not None:
            ref = next(unwrap(model).parameters(), None) or next(unwrap(model).buffers(), None)
            if ref is not None:
                self.extractor.to(ref.device)
        return self

    def features(self, x: Tensor) -> Tensor:
        """``phi(x)``: the normalised, flattened, concatenated features [B, D]."""
        if self.extractor is not None:
            return normalize_flatten(self.extractor(x))
        if self.model is None:
            raise RuntimeError("LPIPS-self: call bind(model) first")
        with capture(self.model, self.layers) as store:
            self.model(x)
            feats = list(store)
        return normalize_flatten(feats)

    def features_and_outputs(self, x: Tensor, model: nn.Module) -> tuple[Tensor, Tensor]:
        """``phi(x)`` and ``model(x)`` with one forward when the features are the model's own."""
        if self.params.model == "self" and model is self.model:
            with capture(model, self.layers) as store:
                out = model(x)
                feats = list(store)
            return normalize_flatten(feats), out
        return self.features(x), model(x)

    def __call__(self, x1: Tensor, x2: Tensor) -> Tensor:
        return (self.features(x1) - self.features(x2)).norm(dim=1)

    def distance_to(self, x: Tensor, ref_features: Tensor) -> Tensor:
        return (self.features(x) - ref_features).norm(dim=1)

    def jtj_operator(self, x: Tensor):
        """``v -> J(x)^T J(x) v`` per sample (``J`` the Jacobian of ``phi`` at ``x``): the Gauss-Newton metric of
        the linearised distance, ``||J v||^2 = v . J^T J v``. The backward graph is built once per ``x``."""
        x = x.detach()
        _, vjp = torch.func.vjp(self.features, x)

        def apply(v: Tensor) -> Tensor:
            _, jv = torch.func.jvp(self.features, (x,), (v.detach(),))
            return vjp(jv)[0]

        return apply

    def linearised_norm(self, x: Tensor, v: Tensor) -> Tensor:
        """``||J(x) v||`` per sample: the LPIPS size of a small step ``v`` at ``x``."""
        _, jv = torch.func.jvp(self.features, (x.detach(),), (v.detach(),))
        return jv.flatten(1).norm(dim=1)


class CalibratedLPIPS(nn.Module):
    """The ``lpips`` package's calibrated LPIPS (learned linear weights) on images in [0, 1].

    ``net``: alex | vgg | squeeze; the trunk's ImageNet weights come from torchvision's cache in TORCH_HOME
    (``random_trunk=True`` skips them: an uncalibrated distance, for tests only)."""

    TRUNK_FILES = {
        "alex": ALEXNET_FILE,
        "vgg": "vgg16-397923af.pth",
        "squeeze": "squeezenet1_1-b8a52dc0.pth",
    }

    def __init__(self, net: str = "alex", random_trunk: bool = False):
        super().__init__()
        if net not in self.TRUNK_FILES:
            raise ConfigError(f"eval.lpips: unknown LPIPS network '{net}' (alex, vgg, squeeze)")
        if not random_trunk:
            path = Path(torch.hub.get_dir()) / "checkpoints" / self.TRUNK_FILES[net]
            if not path.is_file():
                raise CheckpointError(
                    f"eval.lpips: the lpips package needs torchvision's ImageNet {net} weights at '{path}' "
                    f"(download https://download.pytorch.org/models/{self.TRUNK_FILES[net]} there, or set "
                    "TORCH_HOME)"
                )
        import lpips

        self.net = lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_trunk, verbose=False)
        self.net.eval().requires_grad_(False)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        if x1.shape[1] == 1:
            x1, x2 = x1.expand(-1, 3, -1, -1), x2.expand(-1, 3, -1, -1)
        return self.net(x1, x2, normalize=True).flatten()
