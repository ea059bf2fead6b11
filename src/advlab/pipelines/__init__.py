from advlab.pipelines import robustness_suite, semantic_adv, standard, transfer  # noqa: F401  (registers)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
