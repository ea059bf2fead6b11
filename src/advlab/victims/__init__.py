from advlab.victims import (  # noqa: F401  (registers)
    bisenet_v1,
    bisenet_v2,
    clip_mlp,
    face_resnet,
    icnet_r50,
    mmseg,
    par_baseline,
    pidnet,
    promptpar,
    resnet,
    resnet50,
    segformer_hf,
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
