from advlab.defenses import adv_training, asl_par_defense  # noqa: F401  (registers)
from advlab.defenses.base import DEFENSES, Defense

__all__ = ["DEFENSES", "Defense"]
