from advlab.attacks import (  # noqa: F401  (registers)
    apgd,
    cw,
    fgsm,
    jpeg_linf,
    lpa,
    pgd,
    ppgd,
    recoloradv,
    stadv,
    universal_noise,
)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
