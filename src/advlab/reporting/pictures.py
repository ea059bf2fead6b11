"""Pictures of a run's examples: the :class:`Examples` record the evaluate loop keeps and its clean / adversarial grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor


@dataclasses.dataclass
class Examples:
    """The first few test images with their clean/adversarial versions and outputs, for the example grid."""

    x: Tensor
    y: Tensor
    x_adv: Tensor | None = None
    clean_pred: Tensor | None = None
    adv_pred: Tensor | None = None
    target: Tensor | None = None


def _to_hwc(img: torch.Tensor):
    img = img.detach().float().clamp(0, 1)
    return img.permute(1, 2, 0).squeeze(-1).numpy()


def save_example_grid(examples: Examples, class_names: list[str], path: Path) -> Path:
    """Rows: clean image (label, prediction), adversarial image (prediction, target), perturbation
    (amplified to the full range, mid-grey = 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = examples.x.shape[0]
    rows = 1 if examples.x_adv is None else 3
    fig, axes = plt.subplots(rows, k, figsize=(1.6 * k, 1.8 * rows), squeeze=False)
    cmap = "gray" if examples.x.shape[1] == 1 else None

    def name(i) -> str:
        if getattr(i, "dim", lambda: 0)() >= 1:  # multi-hot label vector: the names of the labels that are on
            return ",".join(name(j) for j in i.nonzero().flatten().tolist()) or "-"
        i = int(i)
        return class_names[i] if 0 <= i < len(class_names) else str(i)

    for j in range(k):
        axes[0, j].imshow(_to_hwc(examples.x[j]), cmap=cmap, vmin=0, vmax=1)
        axes[0, j].set_title(f"y={name(examples.y[j])} p={name(examples.clean_pred[j])}", fontsize=7)
        if examples.x_adv is not None:
            axes[1, j].imshow(_to_hwc(examples.x_adv[j]), cmap=cmap, vmin=0, vmax=1)
            title = f"adv p={name(examples.adv_pred[j])}"
            if examples.target is not None:
                title += f" t={name(examples.target[j])}"
            axes[1, j].set_title(title, fontsize=7)
            delta = examples.x_adv[j] - examples.x[j]
            scale = delta.abs().max().clamp(min=1e-12)
            axes[2, j].imshow(_to_hwc(0.5 + 0.5 * delta / scale), cmap=cmap, vmin=0, vmax=1)
            axes[2, j].set_title(f"|d|inf={delta.abs().max():.3f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
