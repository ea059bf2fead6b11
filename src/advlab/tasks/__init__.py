from advlab.tasks import (  # noqa: F401  (registers)
    classification,
    ecoc,
    multilabel,
    par,
    segmentation,
    verification,
)
from advlab.tasks.base import TASKS, DataInfo, Meter, Task

__all__ = ["TASKS", "DataInfo", "Meter", "Task"]
