from advlab.victims import (  # noqa: F401  (registers)
    alexnet_cifar,
    clip_mlp,
    face_resnet,
    mmseg,
    par_baseline,
    promptpar,
    resnet,
    resnet50,
    smallcnn,
    vit,
)
from advlab.victims.base import (
    VICTIMS,
    Victim,
    VictimBuilder,
    VictimConfig,
    load_state_dict_file,
    load_victim_weights,
)

__all__ = [
    "VICTIMS",
    "Victim",
    "VictimBuilder",
    "VictimConfig",
    "load_state_dict_file",
    "load_victim_weights",
]
