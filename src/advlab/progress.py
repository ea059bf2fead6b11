"""Progress of every loop (fit, universal, evaluate, generator training, pipelines' stages), on a TTY and off it.

On a terminal (stderr is a TTY) a tqdm bar; otherwise (SLURM logs, nohup, ``advlab ... > log``, pipes) one log
line at most every ``progress_interval_s`` seconds (the top-level config key, default 30) with done/total, rate
and ETA, through the ``advlab.progress`` logger (Hydra's console and the job's log file)::

    attack cw_l2 0/8 batches (0%), ? batches/s, elapsed 0:00:00, ETA ?
    attack cw_l2 3/8 batches (38%), 2.33 s/batch, elapsed 0:00:07, ETA 0:00:12

Use :func:`track` to wrap an iterable, or :class:`Progress` with :meth:`Progress.update` for a loop that is not
one (e.g. iterations of generator training).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from advlab.errors import ConfigError

logger = logging.getLogger("advlab.progress")
T = TypeVar("T")
DEFAULT_INTERVAL_S = 30.0
_settings: dict[str, Any] = {"interval_s": DEFAULT_INTERVAL_S, "enabled": False}


def configure(interval_s: Any = DEFAULT_INTERVAL_S, enabled: bool = False) -> None:
    """Set the seconds between two progress lines off a TTY (the config's ``progress_interval_s``) and whether
    loops that are not told (``enabled=None``, e.g. an attack's own iterations) report: the run's ``progress``
    on its main process."""
    _settings["interval_s"] = check_interval(interval_s)
    _settings["enabled"] = bool(enabled)


def check_interval(interval_s: Any) -> float:
    """``progress_interval_s`` as seconds, or a ConfigError naming it."""
    if (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, int | float)
        or not math.isfinite(interval_s)
    ):
        raise ConfigError(f"progress_interval_s: must be a number of seconds >= 0 (got {interval_s!r})")
    if interval_s < 0:
        raise ConfigError(f"progress_interval_s: must be >= 0 seconds (got {interval_s})")
    return float(interval_s)


def interval_s() -> float:
    return _settings["interval_s"]


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of one loop of ``total`` steps (None: unknown). Disabled: does nothing."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        enabled: bool | None = True,
        unit: str = "batch",
        tty: bool | None = None,
        interval: float | None = None,
        initial: int = 0,
    ):
        enabled = _settings["enabled"] if enabled is None else enabled
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.interval = interval_s() if interval is None else interval
        self.done = self.start_done = initial
        self.t0 = self.last_line = time.perf_counter()
        self.bar = None
        if enabled and self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, unit=unit, initial=initial)
        elif enabled:
            logger.info(
                self.line(self.t0)
            )  # the stage has begun (one batch of a slow attack may take minutes)

    def update(self, n: int = 1) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last_line >= self.interval:
            self.last_line = now
            logger.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The off-TTY progress line."""
        elapsed = (time.perf_counter() if now is None else now) - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else float("nan")
        units = (
            self.unit if self.unit.endswith("s") else f"{self.unit}{'es' if self.unit.endswith('h') else 's'}"
        )
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            head = f"{self.done}/{self.total} {units} ({100 * self.done / self.total:.0f}%)"
            tail = f", ETA {format_duration(eta)}"
        else:
            head, tail = f"{self.done} {units}", ""
        if not math.isfinite(rate) or rate <= 0:
            speed = f"? {units}/s"
        elif rate >= 1:
            speed = f"{rate:.3g} {units}/s"
        else:  # slow loops (a C&W binary-search step, a StarGAN iteration on CPU): seconds per step reads better
            speed = f"{1 / rate:.3g} s/{self.unit}"
        return f"{self.desc} {head}, {speed}, elapsed {format_duration(elapsed)}{tail}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    enabled: bool | None = True,
    unit: str = "batch",
    **kwargs: Any,
) -> Iterator[T]:
    """Iterate ``iterable`` reporting progress (see the module docstring); ``total`` defaults to its len().
    ``enabled=None``: as :func:`configure` set it for the run (for loops inside components, e.g. attacks)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, enabled=enabled, unit=unit, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update()
