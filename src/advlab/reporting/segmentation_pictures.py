"""Pictures for segmentation runs: images with their label / predicted maps (clean and attacked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: the Cityscapes palette of the 19 train classes (the published colours)
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip


def palette(num_classes: int) -> np.ndarray:
    """``[num_classes + 1, 3]`` uint8 colours; the last row (black) is for ignored pixels."""
    if num_classes == len(CITYSCAPES_PALETTE):
        colours = np.array(CITYSCAPES_PALETTE, dtype=np.uint8)
    else:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        colours = np.array([cmap(i % 20)[:3] for i in range(num_classes)]) * 255
        colours[0] = (40, 40, 40) if num_classes <= 20 else colours[0]
        colours = colours.astype(np.uint8)
    return np.concatenate([colours, np.zeros((1, 3), np.uint8)])


def colourise(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``[H, W]`` class map -> ``[H, W, 3]`` uint8 image (ignored pixels black)."""
    lab = labels.detach().cpu().long().numpy()
    lab = np.where((lab < 0) | (lab >= num_classes) | (lab == ignore_index), num_classes, lab)
    return palette(num_classes)[lab]


def save_segmentation_grid(examples, class_names: list[str], path: Path, ignore_index: int = 255) -> Path:
    """Columns: examples. Rows: clean image, ground truth, clean prediction, and with an attack the attacked
    image and its prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = examples.x.shape[0]
    rows = [
        ("image", examples.x, None),
        ("label", None, examples.y),
        ("clean pred", None, examples.clean_pred),
    ]
    if examples.x_adv is not None:
        rows += [("attacked", examples.x_adv, None), ("attacked pred", None, examples.adv_pred)]
    h, w = examples.x.shape[-2:]
    fig, axes = plt.subplots(
        len(rows), k, figsize=(2.2 * k * w / max(h, w) + 0.5, 2.2 * len(rows)), squeeze=False
    )
    n = len(class_names)
    for r, (title, images, maps) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            if images is not None:
                img = images[j].detach().float().clamp(0, 1).permute(1, 2, 0).squeeze(-1).cpu().numpy()
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            else:
                ax.imshow(colourise(maps[j], n, ignore_index))
            ax.axis("off")
            if j == 0:
                ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
