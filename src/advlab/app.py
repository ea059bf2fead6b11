"""The ``advlab`` entrypoint: one Hydra app composing dataset, victim, attack, defense and logger.

Failures meant for the user (an :class:`~advlab.errors.AdvlabError`, a Hydra composition error such as a typo'd
key, an OS error on the run folder or the cache) print ``advlab: error: <message>`` lines on stderr and exit 2,
without a traceback; ``HYDRA_FULL_ERROR=1`` or ``debug=true`` adds the traceback. Any other exception is a bug and
keeps its traceback (exit 1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from advlab.config_files import config_dir, register_defaults

EXIT_USER_ERROR = 2


class _JobState:
    """What the error handler needs to know about the job that failed."""

    started = False  # the task function was entered (composition succeeded)
    debug = False  # the composed config's ``debug``


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.types import RunMode

    from advlab.errors import AdvlabError
    from advlab.hydra_callbacks import AbortRun

    _JobState.started = True
    _JobState.debug = bool(cfg.get("debug", False))
    try:
        from advlab.validation import check_config

        check_config(cfg)  # every bad value at once, before torch and the models are imported
        from advlab.runner import run

        results = run(cfg, HydraConfig.get().runtime.output_dir)
    except (AdvlabError, OSError) as exc:
        if HydraConfig.get().mode == RunMode.RUN and user_error_lines(exc) is not None:
            raise AbortRun(exc) from exc  # past Hydra's "Error executing job" report (see AbortRun)
        raise  # a sweep's job: Hydra records the failure and the sweep reports it
    return sweep_objective(results)


def sweep_objective(results: dict) -> float | None:
    """The value a Hydra sweeper optimises: the task's headline metric (``Task.objective_metric``) under
    attack if the run has it, else on clean inputs (or the attack's, e.g. ``attack/asr`` for verification)."""
    from advlab.tasks.configs import TASKS

    name = TASKS.get(results["task"]).objective_metric
    metrics = results["metrics"]
    for phase in ("adv", "clean", "attack"):
        if f"{phase}/{name}" in metrics:
            return metrics[f"{phase}/{name}"]
    return None


def _hydra_message(exc: BaseException) -> list[str]:
    """A Hydra/OmegaConf composition error as one line: its message without the ``full_key:`` /
    ``object_type=`` detail lines."""
    parts: list[str] = []
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        text = str(error).split("Config search path:")[
            0
        ]  # MissingConfigException: the options, then the path
        for line in text.splitlines():
            line = line.strip()
            if (
                line
                and not line.startswith(("full_key:", "object_type=", "reference_type="))
                and line not in parts
            ):
                parts.append(line)
    options = [i for i, p in enumerate(parts) if p.startswith("Available options")]
    if (
        options
    ):  # "Available options in 'attack':" followed by one option per line -> one comma-separated list
        i = options[0]
        parts = [*parts[:i], f"{parts[i]} {', '.join(parts[i + 1 :])}"]
    return [" ".join(p if p.endswith((".", ":")) else p + "." for p in parts) or type(exc).__name__]


def user_error_lines(exc: BaseException) -> list[str] | None:
    """The ``advlab: error:`` messages for an error meant for the user; None for a bug."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from advlab.errors import AdvlabError
    from advlab.hydra_callbacks import LAST_CONFIG, describe_os_error

    if isinstance(exc, AdvlabError):
        return exc.messages
    if not _JobState.started and isinstance(exc, HydraException | OmegaConfBaseException):
        return _hydra_message(exc)  # composition (bad override, unknown group option or key)
    if isinstance(exc, OSError):
        line = describe_os_error(exc, LAST_CONFIG)
        return None if line is None else [line]
    return None


@contextlib.contextmanager
def _argv(argv: Sequence[str] | None) -> Iterator[None]:
    if argv is None:
        yield
        return
    saved = sys.argv
    sys.argv = [saved[0] if saved else "advlab", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the app on ``argv`` (default: ``sys.argv[1:]``); returns the exit status (0, or 2 for a user error).
    A bug's exception propagates with its traceback."""
    argv_list = list(sys.argv[1:] if argv is None else argv)
    show_traceback = bool(os.environ.get("HYDRA_FULL_ERROR")) or any(
        a.lstrip("+") in ("debug=true", "debug=True", "debug=1") for a in argv_list
    )
    from advlab.hydra_callbacks import AbortRun

    _JobState.started, _JobState.debug = False, False
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report; we report here
    try:
        register_defaults()  # the dataclass defaults, before Hydra composes
        with _argv(argv):
            _hydra_main()
    except SystemExit as exc:  # --help, --cfg, Hydra's own argument errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (Exception, AbortRun) as exc:
        error = exc.error if isinstance(exc, AbortRun) else exc
        lines = user_error_lines(error)
        if lines is None:
            raise
        if show_traceback or _JobState.debug:
            traceback.print_exception(error)
        from advlab.hydra_callbacks import process_rank

        if process_rank() == 0:  # under torchrun every rank hits the same error; rank 0 reports it
            for message in lines:
                first, *rest = message.splitlines() or [""]
                print(f"advlab: error: {first}", file=sys.stderr)
                for line in rest:  # a message's continuation (e.g. the expected layout of a dataset root)
                    print(line, file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved
    return 0


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
