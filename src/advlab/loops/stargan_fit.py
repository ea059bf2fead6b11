"""The StarGAN training loop: Wasserstein adversarial loss with gradient penalty, attribute (domain)
classification by the discriminator, and cycle reconstruction.

Per iteration, with real images ``x`` (in [-1, 1]), their attributes ``c`` and target attributes ``c'`` (the
batch's attributes shuffled, as in StarGAN):

- discriminator: ``-D_src(x) + D_src(G(x, c')) + lambda_gp * (||grad D_src(x_hat)||_2 - 1)^2
  + lambda_cls * BCE(D_cls(x), c)``, ``x_hat`` a random mix of real and fake;
- generator, every ``n_critic`` iterations: ``-D_src(G(x, c')) + lambda_cls * BCE(D_cls(G(x, c')), c')
  + lambda_rec * |x - G(G(x, c'), c)|_1``.

The adversarial terms are weighted by ``lambda_adv`` (1 in StarGAN). When the dataset can render the exact
attribute edit of an image (``synthfaces``), ``lambda_paired`` adds ``|G(x, c') - x(c')|_1``: paired supervision
that makes a usable editor in ~1k iterations on a CPU; with ``lambda_adv = lambda_cls = 0`` the discriminator
is not trained at all. Adam (lr 1e-4, betas 0.5/0.999), learning rates decayed linearly to 0 over the last
``decay_iters``. Batches are a function of the iteration (seeded per-epoch permutations).
Resumable: the whole state (both networks, both optimisers, the iteration, RNG) is saved atomically every
``checkpoint_every`` iterations to ``resume_path`` and a restarted run continues from it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data.faces import FaceAttributeData
from advlab.errors import AdvlabError
from advlab.generators.stargan import StarGANDiscriminator, StarGANGenerator
from advlab.loops.configs import GANTrainConfig  # noqa: F401
from advlab.progress import Progress
from advlab.resume import LoopState

logger = logging.getLogger(__name__)


def gradient_penalty(d_out: Tensor, x: Tensor) -> Tensor:
    """``mean((||d d_out / d x||_2 - 1)^2)`` over the batch."""
    grad = torch.autograd.grad(d_out.sum(), x, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def classification_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Multi-label BCE summed over attributes, averaged over the batch (StarGAN's CelebA setting)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]


def _batch_index(n: int, batch_size: int, seed: int, it: int) -> Tensor:
    """Training-image indices of iteration ``it``: epochs of seeded permutations, last partial batch dropped
    (a function of the iteration, so a resumed run reads the same batches)."""
    per_epoch = n // batch_size
    epoch, pos = divmod(it, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    return perm[pos * batch_size : (pos + 1) * batch_size]


@dataclasses.dataclass
class StarGANState(LoopState):
    """The StarGAN loop's progress after ``iter`` iterations."""

    g: dict
    d: dict
    g_opt: dict
    d_opt: dict
    iter: int
    generator: torch.Tensor


def fit_stargan(
    g: StarGANGenerator,
    d: StarGANDiscriminator,
    data: FaceAttributeData,
    params: GANTrainConfig,
    device: torch.device,
    seed: int,
    resume_path: Path | None = None,
    log: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> None:
    g.to(device).train()
    d.to(device).train()
    g_opt = torch.optim.Adam(g.parameters(), params.g_lr, betas=(params.beta1, params.beta2))
    d_opt = torch.optim.Adam(d.parameters(), params.d_lr, betas=(params.beta1, params.beta2))
    gen = torch.Generator().manual_seed(seed)
    start = 0
    state = StarGANState.load(resume_path)
    if state is not None:
        g.load_state_dict(state.g)
        d.load_state_dict(state.d)
        g_opt.load_state_dict(state.g_opt)
        d_opt.load_state_dict(state.d_opt)
        gen.set_state(state.generator)
        start = state.iter
        logger.info(f"StarGAN training resumes at iteration {start}/{params.iters}")
    n_train = len(data.identities("train"))
    if n_train < params.batch_size:
        raise AdvlabError(
            f"generator training: {n_train} training images, fewer than one batch ({params.batch_size})"
        )
    paired = params.lambda_paired > 0
    if paired and not hasattr(data, "counterfactuals"):
        raise AdvlabError(
            "pipeline.gan_train.lambda_paired > 0 needs a dataset that renders exact attribute edits "
            "(synthfaces); set it to 0 for real data"
        )
    train_d = params.lambda_adv > 0 or params.lambda_cls > 0
    all_attrs = data.attributes("train")
    stats: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = Progress(params.iters, "StarGAN training", enabled=progress, unit="iteration", initial=start)
    for it in range(start, params.iters):
        idx = _batch_index(n_train, params.batch_size, seed, it)
        x = data.load_images("train", idx).to(device) * 2 - 1
        c = all_attrs[idx].to(device)
        c_trg = c[torch.randperm(c.shape[0], generator=gen).to(device)]
        decay_start = params.iters - params.decay_iters
        factor = 1.0 if it < decay_start else max(0.0, (params.iters - it) / max(params.decay_iters, 1))
        for opt, lr in ((g_opt, params.g_lr), (d_opt, params.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * factor
        stats = {}
        # ---- discriminator
        if train_d:
            src_real, cls_real = d(x)
            with torch.no_grad():
                fake = g(x, c_trg)
            src_fake, _ = d(fake)
            mix = torch.rand(x.shape[0], 1, 1, 1, generator=gen).to(device)
            x_hat = (mix * x + (1 - mix) * fake).requires_grad_(True)
            gp = gradient_penalty(d(x_hat)[0], x_hat)
            d_cls = classification_loss(cls_real, c)
            d_adv = -src_real.mean() + src_fake.mean() + params.lambda_gp * gp
            d_loss = params.lambda_adv * d_adv + params.lambda_cls * d_cls
            if not torch.isfinite(d_loss):
                raise AdvlabError(
                    f"generator training: discriminator loss is {d_loss.item()} at iteration {it + 1}"
                )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            stats = {"gan/d_loss": d_loss.item(), "gan/d_cls": d_cls.item(), "gan/gp": gp.item()}
        # ---- generator
        if (it + 1) % params.n_critic == 0:
            fake = g(x, c_trg)
            g_loss = fake.new_zeros(())
            if (
                params.lambda_rec > 0
            ):  # the cycle costs a second generator pass; skipped when it has no weight
                g_rec = (x - g(fake, c)).abs().mean()
                g_loss = g_loss + params.lambda_rec * g_rec
                stats["gan/g_rec"] = g_rec.item()
            if train_d:
                src_fake, cls_fake = d(fake)
                g_cls = classification_loss(cls_fake, c_trg)
                g_loss = g_loss - params.lambda_adv * src_fake.mean() + params.lambda_cls * g_cls
                stats["gan/g_cls"] = g_cls.item()
            if paired:
                target = data.counterfactuals("train", idx, c_trg).to(device) * 2 - 1
                g_paired = (fake - target).abs().mean()
                g_loss = g_loss + params.lambda_paired * g_paired
                stats["gan/g_paired"] = g_paired.item()
            if not torch.isfinite(g_loss):
                raise AdvlabError(
                    f"generator training: generator loss is {g_loss.item()} at iteration {it + 1}"
                )
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            stats["gan/g_loss"] = g_loss.item()
        done = it + 1
        bar.update()
        if resume_path is not None and (done % params.checkpoint_every == 0 or done == params.iters):
            StarGANState(
                g.state_dict(), d.state_dict(), g_opt.state_dict(), d_opt.state_dict(), done, gen.get_state()
            ).save(resume_path)
        if done % params.log_every == 0 or done == params.iters:
            stats["gan/iter"] = done
            stats["gan/time_s"] = time.perf_counter() - t0
            if log is not None:
                log(stats)
            logger.info(
                f"StarGAN {done}/{params.iters}: " + ", ".join(f"{k[4:]}={v:.4g}" for k, v in stats.items())
            )
    bar.close()
    g.eval()
    d.eval()
