from advlab.victims import par_baseline, promptpar, resnet, smallcnn  # noqa: F401  (registers)
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
