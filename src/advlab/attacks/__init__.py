from advlab.attacks import cw, eot_patch, fgsm, pgd, universal_noise  # noqa: F401  (registers)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
