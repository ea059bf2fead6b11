from advlab.data.info import DataInfo
from advlab.metrics.meter import Meter
from advlab.tasks import (  # noqa: F401  (registers)
    classification,
    ecoc,
    multilabel,
    par,
    segmentation,
    verification,
)
from advlab.tasks.base import TASKS, Task

__all__ = ["TASKS", "DataInfo", "Meter", "Task"]
