"""The run folder's own records: ``metrics.jsonl`` (every logged dict, in order), ``results.json`` (final
metrics + resolved config + what was run), pictures, mirrored to the tracker (W&B)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from advlab.loggers.base import Tracker
from advlab.utils import atomic_write_text


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunRecorder:
    def __init__(self, run_dir: Path, tracker: Tracker):
        self.run_dir = run_dir
        self.tracker = tracker
        self.metrics_path = run_dir / "metrics.jsonl"
        self.t0 = time.time()

    def log(self, metrics: dict[str, float]) -> None:
        row = {"time_s": round(time.time() - self.t0, 3), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.tracker.log(metrics)

    def image(self, key: str, path: Path, caption: str = "") -> None:
        self.tracker.log_image(key, path, caption)

    def results(self, metrics: dict[str, float], config: dict, **extra: Any) -> dict[str, Any]:
        """Write ``results.json`` (atomically) and the tracker's summary; return what was written."""
        payload = {
            "metrics": {k: _jsonable(v) for k, v in metrics.items()},
            "config": config,
            **extra,
            "elapsed_s": round(time.time() - self.t0, 3),
        }
        text = json.dumps(payload, indent=2, default=str)
        atomic_write_text(self.run_dir / "results.json", text)
        self.tracker.summary(metrics)
        return json.loads(text)
