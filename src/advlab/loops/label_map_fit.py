"""Training of the label-map-conditioned generator (generators/label_map_manipulation.py) on a dataset with
instance maps (``digits_street``, Cityscapes with ``*_gtFine_instanceIds.png``).

Per iteration, a batch of training images ``x`` with label maps ``L`` and instance maps: one object instance per
image is drawn (a random object pixel's instance, so larger instances more often), its bounding box grown by
``box_margin`` is erased from the image, and the generator reconstructs the whole image from the context, the
label map and the box: ``L1(G(x_ctx, L, box), x) + box_weight * L1`` inside the box (the part it must synthesise
from the label map alone, as when an object is inserted). Adam. Batches are a function of the iteration
(seeded permutations); the state (network, optimiser, iteration, RNG) is saved every ``checkpoint_every``
iterations to ``resume_path`` and a restarted run continues from it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advlab.errors import AdvlabError
from advlab.generators.label_map_manipulation import LabelMapGenerator, box_of, erase_box
from advlab.loops.configs import LabelMapTrainConfig  # noqa: F401
from advlab.loops.stargan_fit import _batch_index
from advlab.progress import Progress
from advlab.resume import LoopState

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LabelMapFitState(LoopState):
    g: dict
    opt: dict
    iter: int
    generator: torch.Tensor


def load_split(data: Any, split: str, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Images ``[n, 3, H, W]``, label maps and instance maps ``[n, H, W]`` of ``index`` in ``split``."""
    ds = data.dataset(split)
    items = [ds[int(i)] for i in index]
    x = torch.stack([it[0] for it in items])
    y = torch.stack([it[1] for it in items])
    return x, y, data.load_instances(split, index)


def random_instance_masks(ids: Tensor, generator: torch.Generator) -> Tensor:
    """One object instance per image ``[B, H, W]`` bool: the instance of a uniformly drawn object pixel (ids >=
    1000); all False for an image without objects."""
    thing = (ids >= 1000).flatten(1).float()
    weights = thing + (thing.sum(1, keepdim=True) == 0).float()  # no object: any pixel (masked out below)
    pick = torch.multinomial(weights.cpu(), 1, generator=generator).to(ids.device)
    chosen = ids.flatten(1).gather(1, pick)
    return (ids == chosen.view(-1, 1, 1)) & (chosen.view(-1, 1, 1) >= 1000)


def fit_label_map_generator(
    g: LabelMapGenerator,
    data: Any,
    params: LabelMapTrainConfig,
    device: torch.device | str,
    seed: int,
    resume_path: Path | None = None,
    log: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> None:
    g.to(device).train()
    opt = torch.optim.Adam(g.parameters(), params.lr, betas=(params.beta1, params.beta2))
    gen = torch.Generator().manual_seed(seed)
    start = 0
    state = LabelMapFitState.load(resume_path)
    if state is not None:
        g.load_state_dict(state.g)
        opt.load_state_dict(state.opt)
        gen.set_state(state.generator)
        start = state.iter
        logger.info(f"label-map generator training resumes at iteration {start}/{params.iters}")
    n_train = len(data.dataset("train"))
    if n_train < params.batch_size:
        raise AdvlabError(
            f"generator training: {n_train} training images, fewer than one batch ({params.batch_size})"
        )
    t0 = time.perf_counter()
    bar = Progress(params.iters, "label-map generator", enabled=progress, unit="iteration", initial=start)
    for it in range(start, params.iters):
        x, y, ids = (
            t.to(device)
            for t in load_split(data, "train", _batch_index(n_train, params.batch_size, seed, it))
        )
        box = box_of(random_instance_masks(ids, gen), params.box_margin)
        out = g(erase_box(x, box), y, box)
        err = (out - x).abs().mean(1)  # [B, H, W]
        boxf = box.float()
        in_box = (err * boxf).flatten(1).sum(1) / boxf.flatten(1).sum(1).clamp(min=1)
        loss = err.mean() + params.box_weight * in_box.mean()
        if not torch.isfinite(loss):
            raise AdvlabError(f"generator training: loss is {loss.item()} at iteration {it + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = it + 1
        bar.update()
        if resume_path is not None and (done % params.checkpoint_every == 0 or done == params.iters):
            LabelMapFitState(g.state_dict(), opt.state_dict(), done, gen.get_state()).save(resume_path)
        if done % params.log_every == 0 or done == params.iters:
            stats = {
                "gen/l1": float(err.detach().mean()),
                "gen/l1_box": float(in_box.detach().mean()),
                "gen/iter": done,
                "gen/time_s": time.perf_counter() - t0,
            }
            if log is not None:
                log(stats)
            logger.info(
                f"label-map generator {done}/{params.iters}: l1={stats['gen/l1']:.4f} "
                f"l1_box={stats['gen/l1_box']:.4f}"
            )
    bar.close()
    g.eval()
