from advlab.defenses import (  # noqa: F401  (registers)
    adv_training,
    asl_par_defense,
    multi_adv_training,
    pat,
    trades,
)
from advlab.defenses.base import DEFENSES, Defense

__all__ = ["DEFENSES", "Defense"]
