from advlab.attacks import asl_par, cw, fgsm, pgd, universal_noise  # noqa: F401  (registers)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
