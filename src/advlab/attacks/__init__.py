from advlab.attacks import cw, eot_patch, fgsm, pgd, semantic_adv, universal_noise  # noqa: F401  (registers)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
