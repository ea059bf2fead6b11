from advlab.pipelines import robustness_suite, standard  # noqa: F401  (registers)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
