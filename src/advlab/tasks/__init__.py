from advlab.tasks import classification, par  # noqa: F401  (registers)
from advlab.tasks.base import TASKS, DataInfo, Meter, Task

__all__ = ["TASKS", "DataInfo", "Meter", "Task"]
