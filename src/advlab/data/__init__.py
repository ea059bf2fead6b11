from advlab.data import (  # noqa: F401  (registers)
    celeba,
    cifar10,
    cifar10c,
    cityscapes,
    coco,
    digits,
    digits_multilabel,
    digits_seg,
    gtsrb,
    imagenet100,
    mnist,
    nuswide,
    par_pickle,
    synthfaces,
    synthpar,
    voc,
)
from advlab.data.base import DATASETS, DataModule, DatasetConfig, require_root

__all__ = ["DATASETS", "DataModule", "DatasetConfig", "require_root"]
