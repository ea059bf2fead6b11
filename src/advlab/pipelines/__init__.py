from advlab.pipelines import standard  # noqa: F401  (registers)
from advlab.pipelines.base import PIPELINES, Pipeline

__all__ = ["PIPELINES", "Pipeline"]
