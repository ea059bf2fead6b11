"""SemanticAdv (Qiu et al., ECCV 2020): semantic adversarial examples by interpolating, inside an
attribute-conditional generator G (StarGAN), between an image and its attribute-edited version.

For a source image ``x`` with attributes ``c`` and an edited attribute vector ``c_new`` (one attribute flipped):

1. reconstruction pre-step: ``x' = argmin MSE(G(x', c), x) + recon_image_weight * MSE(x', x)`` (Adam,
   ``recon_steps`` at ``recon_lr``, ``x'`` clamped to [0, 1]), so that the generator reproduces the source
   before any edit; the official code uses ``recon_image_weight = 1`` (it keeps ``x'`` near the source), advlab's
   default 0 optimises the generator term alone;
2. interpolation, parameterised by ``alpha`` (0 = no edit, 1 = the full edit):
   - ``interpolation=feature``: a tensor ``alpha`` of the feature map's shape at ``feature_layer``,
     ``x_adv = G_dec((1 - alpha) * G_enc(x', c) + alpha * G_enc(x', c_new))``;
   - ``interpolation=attribute``: a scalar ``alpha`` per image, ``x_adv = G(x', (1 - alpha) c + alpha c_new)``;
3. optimise ``alpha`` (Adam, ``lr``, ``steps``; init ``alpha_init``, clamped to ``[alpha_min, alpha_max]`` after
   every step) on ``L_adv + tv_weight * L_smooth(alpha)``. ``L_adv`` is the task's margin hinge:
   for verification ``max(d(x_adv, x_tgt), kappa)`` up to a constant, kappa the distance threshold at the
   generating FPR (``task.threshold``); ``L_smooth`` is the total variation of ``alpha`` (squared differences of
   spatial neighbours, averaged as in the authors' ``TVLoss``). Each (image, attribute) stops once it succeeds (``early_stop``); its image
   at that step is kept.

Batched over images and over the chosen attributes: the ``B`` images x ``K`` attributes run as ``B*K`` rows of
one optimisation. ``attack.attributes`` chooses the attributes (default: all of the generator's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import SemanticAdvConfig  # noqa: F401
from advlab.errors import AdvlabError, ConfigError
from advlab.generators.stargan import AttributeGenerator
from advlab.utils import frozen

logger = logging.getLogger(__name__)


def tv_loss(alpha: Tensor) -> Tensor:
    """Per-row total variation of ``alpha`` [N, C, H, W] (SemanticAdv Eq. 3's ``L_smooth``), normalised as the
    authors' ``TVLoss(L=2)`` (``size_average=True``): ``2 * (mean_v + mean_h)``, the mean squared difference
    between vertically and between horizontally adjacent entries. A sum instead of the means would weigh the
    term by the size of the feature map (x 7168 for a 64x8x8 map) and hold alpha near its initial value.
    Scalars (``[N, 1]``) have none."""
    if alpha.dim() < 4:
        return alpha.new_zeros(alpha.shape[0])
    dh = (alpha[:, :, 1:, :] - alpha[:, :, :-1, :]).pow(2).flatten(1).mean(1)
    dw = (alpha[:, :, :, 1:] - alpha[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return 2 * (dh + dw)


def flip_attributes(c: Tensor, attr_idx: Tensor) -> Tensor:
    """``[B, A]`` -> ``[B*K, A]``: row ``b*K + k`` is ``c[b]`` with attribute ``attr_idx[k]`` flipped."""
    k = attr_idx.numel()
    c_new = c.repeat_interleave(k, dim=0).clone()
    rows = torch.arange(c_new.shape[0], device=c.device)
    cols = attr_idx.to(c.device).repeat(c.shape[0])
    c_new[rows, cols] = 1 - c_new[rows, cols]
    return c_new


@dataclasses.dataclass
class InterpolationResult:
    """Per row of one interpolation optimisation."""

    x_adv: Tensor  # the image at the step the row first succeeded (else after the last step)
    success: Tensor  # bool
    iters: Tensor  # steps used (float)
    alpha: Tensor  # the final interpolation parameters


def optimise_interpolation(
    params: SemanticAdvConfig,
    alpha: Tensor,
    synthesize: Callable[[Tensor], Tensor],
    model: nn.Module,
    adv_loss: Callable[[Tensor], Tensor],
    success: Callable[[Tensor], Tensor],
    label: str = "semantic_adv",
    unit: str = "attacks",
) -> InterpolationResult:
    """SemanticAdv's step 3, shared by every task: Adam (``lr``, ``steps``) on ``alpha`` (rows first, as
    initialised by the caller) minimising ``adv_loss(model(x_adv)) + tv_weight * L_smooth(alpha)`` per row, with
    ``x_adv = synthesize(alpha)``; ``alpha`` is clamped to ``[alpha_min, alpha_max]`` after every step. A row
    stops once ``success(model(x_adv))`` holds (``early_stop`` ends the loop when all have) and keeps its image
    of that step."""
    p = params
    alpha = alpha.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=p.lr)
    n = alpha.shape[0]
    done = torch.zeros(n, dtype=torch.bool, device=alpha.device)
    best: Tensor | None = None
    iters = torch.full((n,), p.steps, dtype=torch.float32, device=alpha.device)
    with torch.enable_grad():
        for it in range(p.steps):
            x_adv = synthesize(alpha)
            if best is None:
                best = torch.zeros_like(x_adv.detach())
            out = model(x_adv)
            loss = adv_loss(out) + p.tv_weight * tv_loss(alpha)
            with torch.no_grad():
                ok = success(out) & ~done
                best[ok] = x_adv.detach()[ok]
                iters[ok] = it
                done |= ok
            if p.early_stop and bool(done.all()):
                break
            if (it + 1) % 50 == 0:
                logger.info(f"{label} step {it + 1}/{p.steps}: {int(done.sum())}/{n} {unit} succeeded")
            opt.zero_grad(set_to_none=True)
            (loss * (~done).float()).sum().backward()
            opt.step()
            with torch.no_grad():
                alpha.clamp_(p.alpha_min, p.alpha_max)
    with torch.no_grad():
        if not bool(done.all()):
            last = synthesize(alpha)
            best = torch.zeros_like(last) if best is None else best
            best[~done] = last[~done]
    assert best is not None
    return InterpolationResult(best.detach(), done, iters, alpha.detach())


@dataclasses.dataclass
class SemanticAdvResult:
    """Per source image ``b`` and edited attribute ``k`` (tensors ``[B, K, ...]``)."""

    x_recon: Tensor  # G(x', c): the generator's reconstruction of the source after the pre-step [B, C, H, W]
    x_edit: Tensor  # G(x', c_new): the full attribute edit
    x_adv: Tensor  # the adversarial image
    success: Tensor  # bool, the task's success rule at the generating threshold
    iters: Tensor  # optimisation steps used
    alpha: Tensor  # the final interpolation parameters ([B, K, *feature map] or [B, K, 1])


@ATTACKS.register("semantic_adv")
class SemanticAdv(Attack):
    paper = "Qiu, Xiao, Yang, Yan, Lee & Li, SemanticAdv: Generating Adversarial Examples via Attribute-conditioned Image Editing, ECCV 2020"
    url = "https://arxiv.org/abs/1906.07927"
    Config = SemanticAdvConfig
    paper = (
        "Qiu, Xiao, Yang, Yan, Lee, Li, SemanticAdv: Generating Adversarial Examples via Attribute-conditioned "
        "Image Editing, ECCV 2020"
    )
    url = "https://arxiv.org/abs/1906.07927"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        raise AdvlabError(
            "attack=semantic_adv edits images with an attribute-conditional generator and needs the source "
            "attributes: run it with pipeline=semantic_adv (see docs/papers/semanticadv.md)"
        )

    def attribute_indices(self, names: list[str]) -> list[int]:
        """Indices of ``attack.attributes`` in the generator's attribute list ``names`` (all by default)."""
        if self.params.attributes is None:
            return list(range(len(names)))
        unknown = [a for a in self.params.attributes if a not in names]
        if unknown:
            raise ConfigError(
                f"attack.attributes: {unknown} are not generator attributes ({', '.join(names)})"
            )
        return [names.index(a) for a in self.params.attributes]

    def reconstruct(self, generator: AttributeGenerator, x: Tensor, c: Tensor) -> Tensor:
        """The pre-step: ``x'`` with ``G(x', c) ~ x`` (mean squared error, plus ``recon_image_weight`` times
        ``MSE(x', x)``; Adam, per-image losses summed so that images do not interact)."""
        w = self.params.recon_image_weight
        x_in = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x_in], lr=self.params.recon_lr)
        with torch.enable_grad():
            for _ in range(self.params.recon_steps):
                loss = (generator(x_in, c) - x).pow(2).flatten(1).mean(1).sum()
                if w:
                    loss = loss + w * (x_in - x).pow(2).flatten(1).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x_in.clamp_(0, 1)
        return x_in.detach()

    def synthesize(
        self,
        generator: AttributeGenerator,
        alpha: Tensor,
        x_in: Tensor,
        c: Tensor,
        c_new: Tensor,
        f0: Tensor | None = None,
        f1: Tensor | None = None,
    ) -> Tensor:
        """``T_G(alpha; x', c, c_new)`` for rows of ``x_in``/``c``/``c_new``; ``f0``/``f1`` are the precomputed
        feature maps ``G_enc(x', c)``/``G_enc(x', c_new)`` (feature interpolation)."""
        if self.params.interpolation == "attribute":
            a = alpha.view(-1, 1)
            return generator(x_in, (1 - a) * c + a * c_new)
        if f0 is None or f1 is None:
            f0, f1 = generator.encode(x_in, c), generator.encode(x_in, c_new)
        return generator.decode((1 - alpha) * f0 + alpha * f1)

    def run(
        self,
        model: nn.Module,
        generator: AttributeGenerator,
        x: Tensor,
        c: Tensor,
        y: Tensor,
        target: Tensor | None,
        attr_idx: list[int],
    ) -> SemanticAdvResult:
        """Attack ``B`` source images ``x`` with attributes ``c`` towards ``target`` (task format, e.g. target
        embeddings; ``y`` the source's own reference), editing each attribute of ``attr_idx``."""
        p, task = self.params, self.task
        if c.shape[1] != generator.c_dim:
            raise ConfigError(
                f"the data has {c.shape[1]} attributes but the generator was built for {generator.c_dim}; "
                "dataset.attributes and the generator must list the same attributes"
            )
        if generator.feature_layer != p.feature_layer:
            raise ConfigError(
                f"attack.feature_layer '{p.feature_layer}' differs from the generator's split "
                f"'{generator.feature_layer}'"
            )
        b, k = x.shape[0], len(attr_idx)
        idx = torch.tensor(attr_idx, device=x.device)
        with frozen(model), frozen(generator), contextlib.ExitStack():
            x_in = self.reconstruct(generator, x, c) if p.recon_steps else x
            rep = lambda t: None if t is None else t.repeat_interleave(k, dim=0)  # noqa: E731
            c_new = flip_attributes(c, idx)
            x_rows, c_rows, y_rows, t_rows = rep(x_in), rep(c), rep(y), rep(target)
            with torch.no_grad():
                x_recon = generator(x_in, c)
                f0 = f1 = None
                if p.interpolation == "feature":
                    f0 = rep(generator.encode(x_in, c))
                    f1 = generator.encode(x_rows, c_new)
                    x_edit = generator.decode(f1)
                    alpha = torch.full_like(f1, p.alpha_init)
                else:
                    x_edit = generator(x_rows, c_new)
                    alpha = torch.full((b * k, 1), p.alpha_init, device=x.device)
            synth = lambda a: self.synthesize(generator, a, x_rows, c_rows, c_new, f0, f1)  # noqa: E731
            res = optimise_interpolation(
                p,
                alpha,
                synth,
                model,
                adv_loss=lambda out: task.margin(out, y_rows, t_rows).clamp(min=0),
                success=lambda out: task.success(out, y_rows, t_rows),
                label=f"semantic_adv ({p.interpolation})",
                unit="(image, attribute) attacks",
            )
        shape = (b, k, *x.shape[1:])
        return SemanticAdvResult(
            x_recon=x_recon.detach(),
            x_edit=x_edit.detach().view(shape),
            x_adv=res.x_adv.view(shape),
            success=res.success.view(b, k),
            iters=res.iters.view(b, k),
            alpha=res.alpha.view(b, k, *res.alpha.shape[1:]),
        )
