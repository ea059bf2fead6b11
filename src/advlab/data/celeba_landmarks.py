"""``celeba_landmarks``: CelebA (:mod:`advlab.data.celeba`, same files and crops) for SemanticAdv's landmark
attack. CelebA annotates five landmarks, not the 68 of the 300-W layout FAN predicts, so :meth:`landmarks` is
``None`` and the landmark pipeline takes the victim's predictions on the source images as the reference (the
ground-truth box of the NME and the points the targets are built from)."""

from __future__ import annotations

from torch import Tensor

from advlab.data.base import DATASETS
from advlab.data.celeba import CelebA
from advlab.data.configs import CelebALandmarksConfig  # noqa: F401


@DATASETS.register("celeba_landmarks")
class CelebALandmarks(CelebA):
    Config = CelebALandmarksConfig

    def landmarks(self, split: str) -> Tensor | None:
        """No 68-point annotations: the reference is the victim's prediction."""
        self.check_split(split)
        return None
