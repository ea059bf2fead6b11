from advlab.attacks import cw, fgsm, jma, lots, ml_cw, pgd  # noqa: F401  (registers)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
