"""``defense=asl_par``: the ASL-PAR defense. A learnable convolutional noise filter
(``Conv2d(3, 3, k, padding='same')``, initialised to the identity) runs on the image before the victim, and
learnable text prompts re-align the attribute sentence features; both are fine-tuned by the fit loop on
*noisy* training images (the fitted universal noise added, then clipped) with the clean labels, while the
victim itself stays frozen in eval mode. Paper learning rates: filter 8e-4, text prompts 4e-4.

The official code's text prompts sit behind CLIP's causal mask (after the pooled end-of-text token) and never
receive gradient; here they are added to the token embeddings right after the start token, before the pooled
token, so they are effective (see :mod:`advlab.victims.promptpar`). For a victim without text (a CNN
baseline) only the filter trains.

The defense needs the noise it defends against, so it runs inside ``pipeline=asl_par`` (victim -> noise ->
attacked metrics -> defense fine-tuning -> ``defended/*`` metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import ASLPARDefenseConfig  # noqa: F401
from advlab.errors import ConfigError

if TYPE_CHECKING:  # loops.fit imports the defenses package: a top-level import here would be circular
    pass


class FilteredVictim(nn.Module):
    """``victim(filter(x))`` with only the filter and the victim's text prompts trainable; the victim stays
    in eval mode even while the fit loop trains this module."""

    def __init__(self, victim: nn.Module, kernel_size: int, text_prompts: int, prompt_lr_scale: float):
        super().__init__()
        self.filter = nn.Conv2d(3, 3, kernel_size, padding="same")
        with torch.no_grad():  # identity at the start: the defended model begins as the victim
            self.filter.weight.zero_()
            self.filter.weight[torch.arange(3), torch.arange(3), kernel_size // 2, kernel_size // 2] = 1
            self.filter.bias.zero_()
        self.victim = victim.requires_grad_(False).eval()
        self.prompt_lr_scale = prompt_lr_scale
        net = getattr(victim, "net", None)
        self.text_prompts: nn.Parameter | None = None
        if text_prompts and hasattr(net, "text_ctx"):
            # the defense's own prompts, passed to the victim per call: the victim module is not modified, so
            # the undefended victim evaluated after the fine-tuning is still the undefended victim
            width = net.text_ctx.shape[1]
            self.text_prompts = nn.Parameter(torch.zeros(text_prompts, width, device=net.text_ctx.device))

    def forward(self, x: Tensor) -> Tensor:
        if self.text_prompts is None:
            return self.victim(self.filter(x))
        return self.victim(self.filter(x), text_ctx=self.text_prompts)

    def train(self, mode: bool = True) -> FilteredVictim:
        super().train(mode)
        self.victim.eval()
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        groups = [{"params": list(self.filter.parameters()), "lr": lr}]
        if self.text_prompts is not None:
            groups.append({"params": [self.text_prompts], "lr": lr * self.prompt_lr_scale})
        return groups

    def defense_state(self) -> dict[str, Tensor]:
        state = {f"filter.{k}": v.detach().cpu() for k, v in self.filter.state_dict().items()}
        if self.text_prompts is not None:
            state["text_prompts"] = self.text_prompts.detach().cpu()
        return state


@DEFENSES.register("asl_par")
class ASLPARDefense(Defense):
    paper = (
        "Adversarial Semantic and Label Perturbation Attack for Pedestrian Attribute Recognition, arXiv 2025"
    )
    url = "https://arxiv.org/abs/2505.23313"
    Config = ASLPARDefenseConfig

    def __init__(self, params: Any, task: Any):
        super().__init__(params, task)
        self.attack: Any = None

    def set_attack(self, attack: Any) -> None:
        """The fitted universal attack whose noise the defense trains against."""
        self.attack = attack

    def wrap(self, victim: nn.Module) -> nn.Module:
        if self.attack is None:
            raise ConfigError(
                "defense=asl_par fine-tunes against a fitted ASL-PAR noise: run it with pipeline=asl_par "
                "(e.g. experiment=asl_par_synthpar)"
            )
        p = self.params
        return FilteredVictim(victim, p.kernel_size, p.text_prompts, p.prompt_lr / p.filter_lr)

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n_clean = int(round(self.params.clean_fraction * x.shape[0]))
        with torch.no_grad():
            noisy = self.attack.apply(x[n_clean:]).clamp(0, 1)
        return torch.cat([x[:n_clean], noisy]), y
