from advlab.defenses import adv_training, pat  # noqa: F401  (registers)
from advlab.defenses.base import DEFENSES, Defense

__all__ = ["DEFENSES", "Defense"]
