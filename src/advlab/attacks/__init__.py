from advlab.attacks import (  # noqa: F401  (registers)
    apgd,
    asl_par,
    cw,
    di_fgsm,
    ecoc_attack,
    eot_patch,
    fgsm,
    jma,
    jpeg_linf,
    lots,
    lpa,
    mi_fgsm,
    ml_cw,
    mla_lp,
    pgd,
    ppgd,
    recoloradv,
    sema_ml,
    semantic_adv,
    stadv,
    universal_noise,
)
from advlab.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig"]
