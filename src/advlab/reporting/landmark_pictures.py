"""Pictures for landmark runs: images with predicted landmarks (dots), the attacker's targets (crosses) and the
Out of Region box."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from advlab.reporting.pictures import save_image_rows

#: one row of a landmark grid: label, images [k, C, H, W], predicted points [k, N, 2] or None, targets or None
LandmarkRow = tuple[str, Tensor, Tensor | None, Tensor | None]


def save_landmark_rows(
    rows: list[LandmarkRow],
    titles: list[tuple[str, str]],
    path: Path,
    box: tuple[float, float, float, float] | None = None,
) -> Path:
    """A grid, one labelled row per :data:`LandmarkRow`; columns titled by ``(text, colour)``; ``box``
    ``(x0, y0, x1, y1)`` drawn on every image. Points are in pixel coordinates (pixel ``i`` covers
    ``[i, i + 1)``; matplotlib centres pixel ``i`` at ``i``, hence the 0.5 shift)."""
    from matplotlib.patches import Rectangle

    def decorate(ax: Any, r: int, j: int) -> None:
        _, _, points, targets = rows[r]
        if box is not None:
            ax.add_patch(
                Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                          edgecolor="yellow", linewidth=0.6, linestyle="--")
            )  # fmt: skip
        if targets is not None:
            t = targets[j].detach().cpu() - 0.5
            ax.scatter(t[:, 0], t[:, 1], s=4, marker="x", c="red", linewidths=0.5)
        if points is not None:
            p = points[j].detach().cpu() - 0.5
            ax.scatter(p[:, 0], p[:, 1], s=2, c="cyan")

    images = [(label, imgs) for label, imgs, _, _ in rows]
    return save_image_rows(images, titles, path, decorate=decorate, cell=(1.8, 1.9), dpi=120)


def save_landmark_examples(examples: Any, task: Any, path: Path) -> Path:
    """The evaluate loop's examples (clean / adversarial) with their predicted landmarks and targets."""
    rows: list[LandmarkRow] = [("clean", examples.x, examples.clean_pred, examples.y)]
    if examples.x_adv is not None:
        rows.append(("adversarial", examples.x_adv, examples.adv_pred, examples.target))
    titles = [("", "black")] * examples.x.shape[0]
    return save_landmark_rows(rows, titles, path, task.box)
