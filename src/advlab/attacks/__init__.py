from advlab.attacks import (  # noqa: F401  (registers)
    apgd,
    asl_par,
    autoattack,
    cw,
    ecoc_attack,
    eot_patch,
    fab,
    fgsm,
    jma,
    jpeg_linf,
    lots,
    lpa,
    ml_cw,
    mla_lp,
    pgd,
    ppgd,
    recoloradv,
    sema_ml,
    semantic_adv,
    square,
    stadv,
    universal_noise,
)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
