"""Pictures of a run's examples: the :class:`Examples` record the evaluate loop keeps and its clean / adversarial grid."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def save_image_rows(
    rows: list[tuple[str, Tensor]],
    titles: list[tuple[str, str]],
    path: Path,
    decorate: Callable[[Any, int, int], None] | None = None,
    cell: tuple[float, float] = (1.6, 1.7),
    dpi: int = 110,
) -> Path:
    """A grid of images, one labelled row per ``(label, images [k, C, H, W])``, the columns titled by
    ``(text, colour)`` (e.g. SemanticAdv's source / edited / adversarial rows, successes in green);
    ``decorate(ax, row, column)`` draws on each image (landmarks, boxes); ``cell`` is one image's size in inches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), k, figsize=(cell[0] * k, cell[1] * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            ax.imshow(imgs[j].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            if decorate is not None:
                decorate(ax, r, j)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == 0:
                text, colour = titles[j]
                ax.set_title(text, fontsize=5.5, color=colour)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def save_patch_pictures(patch: Tensor, run_dir: Path) -> dict[str, Path]:
    """A universal patch's pictures: ``patch.png`` and, from the run's ``metrics.jsonl``, ``patch_curve.png``
    (the validation metric per epoch, clean and patched: the learning curve of the EOT patch paper's Fig. 2)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Path] = {}
    path = Path(run_dir) / "patch.png"
    plt.imsave(path, patch.detach().clamp(0, 1).cpu().permute(1, 2, 0).squeeze(-1).numpy(), vmin=0, vmax=1)
    out["patch"] = path
    metrics = Path(run_dir) / "metrics.jsonl"
    rows = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if metrics.is_file()
        else []
    )
    curve = {}
    for r in rows:  # the last value per epoch (a resumed run may have logged an epoch twice)
        vals = {k: v for k, v in r.items() if k.startswith("universal/val_")}
        if "universal/epoch" in r and vals:
            curve[int(r["universal/epoch"])] = vals
    if curve:
        epochs = sorted(curve)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for key in sorted(curve[epochs[0]]):
            ax.plot(epochs, [curve[e].get(key) for e in epochs], marker="o", label=key.split("/")[1])
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.split("_")[-1])
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(run_dir) / "patch_curve.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out["patch_curve"] = path
    return out
