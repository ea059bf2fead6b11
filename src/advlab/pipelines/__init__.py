from advlab.pipelines import (  # noqa: F401  (registers)
    asl_par,
    robustness_suite,
    semantic_adv,
    standard,
    transfer,
)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
