from advlab.pipelines import standard, transfer  # noqa: F401  (registers)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
