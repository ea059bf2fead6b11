"""ECOC attack (Zhang, Tondi, Lv & Barni 2020, the JMA paper's reference [20]): a C&W-style white-box attack
specialised for networks with ECOC output encoding. It puts the decoding into the objective through the
worst bit of the target codeword,

    min_w ||x' - x||_2^2 - lambda * min( min_i c_ti s_i(x'), eta ),     x' = (tanh(w) + 1) / 2,

(the JMA paper's Eq. 5), where ``c_t`` is the target codeword (``task.output_code``), ``s`` the task's decision
scores (ECOC: the logits, or ``tanh`` of them with ``task.decode=tanh``) and ``eta`` the confidence threshold:
once every bit agrees with the target codeword by ``eta`` the term is flat and only the distortion is
minimised. It is implemented as the equivalent non-negative penalty ``lambda * max(0, eta - min_i c_ti s_i)``
(the same minimiser: the two differ by the constant ``lambda * eta``) in ML-C&W's machinery: Adam on ``w``, a
per-example binary search on ``lambda`` (x10 until the first success, then bisection), per-example early
abort, success by the task's rule (the decoded class), the successful image of smallest L2 returned.

``iters``: updates of the binary-search step that produced the returned image (as the JMA paper reports for
the C&W family); ``iters_total``: all updates. Defaults: the JMA paper's strongest setting
``(lambda, n_bs, n_it,max) = (0.1, 10, 2000)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import ECOCAttackConfig  # noqa: F401
from advlab.attacks.ml_cw import MLCW


@ATTACKS.register("ecoc_attack")
class ECOCAttack(MLCW):
    paper = "Zhang, Tondi, Lv & Barni, Challenging the adversarial robustness of DNNs based on error-correcting output codes, Security and Communication Networks 2020"
    url = "https://arxiv.org/abs/2003.11855"
    Config = ECOCAttackConfig
    norm = "l2"

    def penalty(self, outputs: Tensor, code: Tensor) -> Tensor:
        """``max(0, eta - min_i c_ti s_i)``: only the worst-agreeing bit of the target codeword is pushed."""
        scores = self.task.decision_features(outputs)
        return torch.relu(self.params.eta - (code * scores).amin(dim=1))
