from advlab.pipelines import asl_par, standard  # noqa: F401  (registers)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
