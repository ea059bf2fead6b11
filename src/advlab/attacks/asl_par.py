"""``attack=asl_par``: ASL-PAR (adversarial semantic and label perturbation) universal noise for pedestrian
attribute recognition.

One noise tensor for the whole dataset (global: the full image, or a ``patch_size`` square at the image
centre, 30x30 at 224 in the paper), ``||noise||_inf <= eps`` (10/255; ``eps: null`` = unconstrained, then
only the image box limits it), added to every image and clipped to [0, 1]. It is optimised over the training
split against the frozen victim (eval mode) to make the victim predict *shifted labels*:

- **label perturbation**: within each part group of the dataset the positives move to other attributes of
  the same group by a derangement drawn once from ``label_seed`` (saved with the noise as ``shift_map_<g>``
  tensors, so the run's targets can be recomputed); groups of one attribute are flipped;
- **semantic perturbation**: the victim's global-local similarity scores (PromptPAR's auxiliary output,
  ``L_GL``) are pushed towards the same shifted labels, misaligning image features with their attribute
  texts, with weight ``semantic_weight`` (0.5).

``objective`` selects the paper's ablation: ``label`` (L_cls to shifted labels), ``semantic`` (L_GL to
shifted labels) or ``both`` (``L_cls + 0.5 L_GL``). The optimiser is SGD with momentum and a cosine schedule
with linear warm-up (paper: lr 3e-3, momentum 0.9, batch 48, 40 epochs). A saved noise can be applied to
another dataset (bilinearly resized to its image size) or another victim via ``perturbation_path``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import ASLPARConfig  # noqa: F401
from advlab.attacks.universal import UniversalAttack
from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.tasks.par import keyed_cycles, keyed_uniforms, random_group_labels, shift_labels, shift_maps


def centre_patch_mask(shape: tuple[int, ...], patch_size: int, reference: int = 224) -> Tensor:
    """``[1, H, W]`` mask of a square patch at the image centre; ``patch_size`` is in pixels of a
    ``reference``-sized image (30 at 224: offset 97) and scales with the image."""
    _, h, w = shape
    side_h = max(1, round(patch_size * h / reference))
    side_w = max(1, round(patch_size * w / reference))
    top, left = (h - side_h) // 2, (w - side_w) // 2
    mask = torch.zeros(1, h, w)
    mask[:, top : top + side_h, left : left + side_w] = 1
    return mask


@ATTACKS.register("asl_par")
class ASLPAR(UniversalAttack):
    paper = (
        "Adversarial Semantic and Label Perturbation Attack for Pedestrian Attribute Recognition, arXiv 2025"
    )
    url = "https://arxiv.org/abs/2505.23313"
    Config = ASLPARConfig
    norm = "linf"

    def __init__(self, params: Any, task: Any):
        super().__init__(params, task)
        self.mask: Tensor | None = None

    # ---- label perturbation --------------------------------------------------------------------------
    @property
    def groups(self) -> list[tuple[int, int]]:
        groups = getattr(self.task, "groups", None)
        if not groups:
            raise ConfigError(
                "attack=asl_par needs a PAR dataset with part groups (task=par: synthpar, peta, pa100k, rapv2, "
                "msp60k)"
            )
        return groups

    def shifted(self, y: Tensor) -> Tensor:
        maps = [self.perturbation[f"shift_map_{g}"].long() for g in range(len(self.groups))]
        return shift_labels(y.float(), self.groups, maps)

    def image_keys(self, x: Tensor) -> Tensor:
        """One float per (clean) image: a projection of its pixels on a random direction drawn from
        ``label_seed``, so per-image label draws need no sample index."""
        gen = torch.Generator().manual_seed(self.params.label_seed)
        proj = torch.randn(x[0].numel(), generator=gen, dtype=torch.float64).to(x.device)
        return x.flatten(1).double() @ proj

    def shifted_per_image(self, x: Tensor, y: Tensor) -> Tensor:
        """Each image's shifted labels, a pure function of the (clean) image and ``label_seed``: the image's key
        (:meth:`image_keys`) seeds a hash-based derangement per group."""
        seed, keys = self.params.label_seed, self.image_keys(x)
        maps = [keyed_cycles(keys, end - start, seed + g) for g, (start, end) in enumerate(self.groups)]
        return shift_labels(y.float(), self.groups, maps)

    def random_per_image(self, x: Tensor, y: Tensor) -> Tensor:
        """The random-label baseline: per group the image's positive count, at random positions keyed on the
        image and ``label_seed`` (:func:`advlab.tasks.par.random_group_labels`)."""
        seed, keys = self.params.label_seed, self.image_keys(x)
        uniforms = [keyed_uniforms(keys, end - start, seed + g) for g, (start, end) in enumerate(self.groups)]
        return random_group_labels(y.float(), self.groups, uniforms)

    # ---- the universal-attack interface --------------------------------------------------------------
    def init_perturbation(self, info: DataInfo, device: torch.device, generator: torch.Generator) -> None:
        eps = self.params.eps if self.params.eps is not None else 1.0
        if self.params.init == "uniform":
            noise = (torch.rand(info.image_shape, generator=generator) * 2 - 1) * eps
        else:
            noise = torch.zeros(info.image_shape)
        label_gen = torch.Generator().manual_seed(self.params.label_seed)
        maps = shift_maps(self.groups, 1, label_gen)
        self.perturbation = {"noise": noise.to(device).requires_grad_(True)}
        for g, m in enumerate(maps):  # fixed, saved with the run (not optimised)
            self.perturbation[f"shift_map_{g}"] = m[0].to(device).float()
        self._set_mask(info.image_shape, device)

    def _set_mask(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.mask = None
        if self.params.mode == "patch":
            self.mask = centre_patch_mask(tuple(shape), self.params.patch_size).to(device)

    def load_state_dict(self, state: dict[str, Tensor], device: torch.device) -> None:
        """Load the noise (and the label shift it was fitted with). Applied to a dataset with other part groups
        (transfer), the noise is kept and this dataset's own label shift stays."""
        if "noise" not in state:
            raise CheckpointError(
                f"perturbation file holds {sorted(state)} but attack 'asl_par' needs 'noise'"
            )
        maps = {k: v for k, v in state.items() if k.startswith("shift_map_")}
        own = {k: v for k, v in self.perturbation.items() if k.startswith("shift_map_")}
        if own and (set(maps) != set(own) or any(maps[k].shape != own[k].shape for k in own)):
            maps = own
        self.perturbation = {"noise": state["noise"].detach().to(device).requires_grad_(True)}
        self.perturbation.update({k: v.detach().to(device).float() for k, v in maps.items()})

    def noise_for(self, shape: tuple[int, ...]) -> Tensor:
        """The noise (masked in patch mode) at the image size ``shape`` (resized when it was fitted at another
        size, e.g. transferred from PETA to PA100K)."""
        noise = self.perturbation["noise"]
        if tuple(noise.shape[-2:]) != tuple(shape[-2:]):
            noise = F.interpolate(noise[None], size=tuple(shape[-2:]), mode="bilinear", align_corners=False)[
                0
            ]
        mask = self.mask
        if self.params.mode == "patch":
            if mask is None or mask.shape[-2:] != noise.shape[-2:]:
                self._set_mask(tuple(noise.shape), noise.device)
            noise = noise * self.mask
        return noise

    def apply(self, x: Tensor, y: Tensor | None = None, generator: Any = None) -> Tensor:
        return (x + self.noise_for(tuple(x.shape[1:]))).clamp(0, 1)

    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        outputs = model(self.apply(x))
        if self.params.label_shift == "per_sample":
            target = shift_labels(y.float(), self.groups, shift_maps(self.groups, y.shape[0], generator))
        elif self.params.label_shift == "per_image":
            target = self.shifted_per_image(x, y)
        elif self.params.label_shift == "random":
            target = self.random_per_image(x, y)
        else:
            target = self.shifted(y)
        logits, aux = self.task.split_outputs(outputs)
        obj = self.params.objective
        if obj in ("semantic", "both") and aux is None:
            raise ConfigError(
                f"attack.objective={obj} needs the victim's global-local similarity output (victim=promptpar); "
                "use attack.objective=label for other victims"
            )
        loss = torch.zeros((), device=x.device)
        if obj in ("label", "both"):
            loss = loss + self.task.bce(logits, target).mean()
        if obj in ("semantic", "both"):
            weight = self.params.semantic_weight if obj == "both" else 1.0
            loss = loss + weight * self.task.bce(aux, target).mean()
        return loss

    def project(self) -> None:
        with torch.no_grad():
            noise = self.perturbation["noise"]
            if self.params.eps is not None:
                noise.clamp_(-self.params.eps, self.params.eps)
            else:
                noise.clamp_(-1, 1)

    def make_optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        p = self.params
        opt = torch.optim.SGD([self.perturbation["noise"]], lr=p.lr, momentum=p.momentum)
        steps_per_epoch = max(1, total_steps // p.epochs)
        warmup = int(round(p.warmup_epochs * steps_per_epoch))

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def save_artifacts(self, run_dir: Path) -> dict[str, Path]:
        import torchvision

        noise = self.noise_for(tuple(self.perturbation["noise"].shape)).detach().cpu()
        scale = noise.abs().max().clamp(min=1e-12)
        path = run_dir / "perturbation.png"
        torchvision.utils.save_image(0.5 + 0.5 * noise / scale, path)  # amplified, mid-grey = 0
        groups = self.groups
        lines = [
            f"group {groups[g]}: index i -> {groups[g][0]} + map[i]: "
            f"{self.perturbation[f'shift_map_{g}'].long().tolist()}"
            for g in range(len(groups))
        ]
        mode = self.params.label_shift
        note = {
            "fixed": "one shift for every image:",
            "per_image": "a shift per image, keyed on the image and the seed (shifted_per_image); the shared "
            "map below applies only with label_shift=fixed:",
            "per_sample": "a shift redrawn per image and step; the shared map below applies only with "
            "label_shift=fixed:",
            "random": "the random-label baseline: per image and group the same number of positives at random "
            "positions, keyed on the image and the seed (random_per_image); the shared map below applies only with "
            "label_shift=fixed:",
        }[mode]
        (run_dir / "label_shift.txt").write_text(
            f"label perturbation: attack.label_shift={mode}, attack.label_seed={self.params.label_seed}: {note}\n"
            + "\n".join(lines)
            + "\n"
        )
        return {"perturbation": path}
