"""Checks that must run before Hydra touches the run folder (registered in ``conf/config.yaml`` under
``hydra.callbacks``).

Hydra's ``run_job`` creates the output folder and writes ``.hydra/{config,hydra,overrides}.yaml`` *before* the
job (and ``on_job_start``) runs, so a refusal inside the job comes too late: a refused re-run would already have
rewritten a finished run's provenance. ``on_run_start`` / ``on_multirun_start`` run before that, so the checks
live here. This module imports no torch: it runs on every start-up, before any heavy import.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from advlab.errors import LauncherError, RunFolderError

FINISHED_MARKER = "results.json"  # written last by a run: its presence means the run folder is final
LAST_CONFIG: DictConfig | None = (
    None  # the composed config (with its hydra node) of the latest start, for messages
)


class AbortRun(BaseException):
    """Carries a user error (``.error``) out of Hydra: Hydra turns an ``Exception`` raised in a callback into a
    warning and one raised in the job into an "Error executing job" report; a ``BaseException`` passes through
    both to :func:`advlab.app.run_cli`, which prints ``.error`` cleanly."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def process_rank() -> int:
    """This process's rank under torchrun (``RANK``), 0 for a single process."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def check_writable_folder(path: Path, key: str, fix: str) -> None:
    """Raise :class:`RunFolderError` unless ``path`` is (or can be created as) a writable folder."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{key}: '{path}' is a regular file, not a folder; {fix}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"{key}: '{path}' lies under '{existing}', which is a regular file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (its nearest existing parent '{existing}')"
        raise RunFolderError(f"{key}: '{path}'{where} is not writable (read-only); {fix}")


def check_run_folder(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """A finished run folder is never modified; an unfinished one (resumable) is fine."""
    if (run_dir / FINISHED_MARKER).exists():
        raise RunFolderError(
            f"{key}: '{run_dir}' already holds a finished run ({FINISHED_MARKER}); advlab never modifies a "
            f"finished run. Choose a fresh folder, e.g. {key}={run_dir}-2 (or drop {key} for a new dated one)."
        )
    check_writable_folder(run_dir, key, f"choose a writable {key}=<folder>")


def check_cache_dir(cfg: DictConfig) -> None:
    try:
        value = cfg.get("cache_dir")
    except Exception:  # an unresolvable value is reported by the run's own validation
        return
    if value:
        check_writable_folder(
            Path(os.path.expanduser(str(value))),
            "cache_dir",
            "set cache_dir=<writable folder> (or the ADVLAB_CACHE_DIR environment variable)",
        )


def check_launcher(cfg: DictConfig) -> None:
    """The SLURM launcher submits with ``sbatch`` and starts tasks with ``srun``: both must be on PATH."""
    target = str(cfg.hydra.get("launcher", {}).get("_target_", ""))
    if "Slurm" not in target:
        return
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise LauncherError(
            f"hydra/launcher=slurm: {' and '.join(missing)} not found on PATH (this machine is not a SLURM "
            "submit node). Run from a SLURM login node, or use hydra/launcher=submitit_local (local processes) "
            "or drop hydra/launcher for the basic launcher."
        )


def quiet_non_main_rank(cfg: DictConfig, rank: int) -> None:
    """Under torchrun, ranks > 0 work with rank 0 but record nothing: Hydra's output goes to a scratch folder
    (removed at exit) without ``.hydra/``, and their log prints errors only."""
    scratch = tempfile.mkdtemp(prefix=f"advlab-rank{rank}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.run.dir = scratch
        cfg.hydra.output_subdir = None
        logging_cfg = cfg.hydra.get("job_logging")
        if logging_cfg is not None and "root" in logging_cfg:
            logging_cfg.root.level = "ERROR"
            logging_cfg.root.handlers = [h for h in logging_cfg.root.get("handlers", []) if h != "file"]


class RunGuard(Callback):
    """Refuses, before Hydra writes anything, a run into a finished / unusable folder or an unusable launcher."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_CONFIG
        LAST_CONFIG = config
        try:
            self._check_run(config)
        except RunFolderError as exc:
            raise AbortRun(exc) from exc

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_CONFIG
        LAST_CONFIG = config
        try:
            self._check_multirun(config)
        except (RunFolderError, LauncherError) as exc:
            raise AbortRun(exc) from exc

    def _check_run(self, config: DictConfig) -> None:
        check_run_folder(Path(str(config.hydra.run.dir)))
        check_cache_dir(config)
        rank = process_rank()
        if rank > 0:
            quiet_non_main_rank(config, rank)

    def _check_multirun(self, config: DictConfig) -> None:
        check_launcher(config)
        check_cache_dir(config)
        sweep = Path(str(config.hydra.sweep.dir))
        if sweep.is_dir():
            finished = sorted(str(p.parent) for p in sweep.glob(f"*/{FINISHED_MARKER}"))
            if finished:
                raise RunFolderError(
                    f"hydra.sweep.dir: '{sweep}' already holds finished runs ({', '.join(finished[:3])}"
                    f"{', ...' if len(finished) > 3 else ''}); advlab never modifies a finished run. Choose a "
                    f"fresh folder, e.g. hydra.sweep.dir={sweep}-2."
                )
        check_writable_folder(sweep, "hydra.sweep.dir", "choose a writable hydra.sweep.dir=<folder>")


# errno values of OS errors that are about where advlab writes, not bugs: reported cleanly by the CLI
FILESYSTEM_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent is a regular file, not a folder",
    errno.EEXIST: "a regular file is in the way",
    errno.EISDIR: "a folder is in the way",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}


def describe_os_error(exc: OSError, cfg: DictConfig | None) -> str | None:
    """One line naming the path, the problem and the fix, for an OS error about a file advlab writes or reads;
    None when the error is not one of those (then it is a bug, shown with its traceback)."""
    if exc.errno not in FILESYSTEM_ERRNOS or not exc.filename:
        return None
    path = str(exc.filename)
    problem = exc.strerror or FILESYSTEM_ERRNOS[exc.errno]
    fix = "free space or choose another folder" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    where = "file"
    if cfg is not None:
        for key, hint in (
            ("cache_dir", "set cache_dir=<writable folder> (or ADVLAB_CACHE_DIR)"),
            ("hydra.run.dir", "choose a writable hydra.run.dir=<folder>"),
            ("hydra.sweep.dir", "choose a writable hydra.sweep.dir=<folder>"),
        ):
            try:
                root = os.path.abspath(os.path.expanduser(str(_select(cfg, key))))
            except Exception:
                continue
            if os.path.abspath(path).startswith(root):
                where, fix = key, fix or hint
                break
    return f"{where}: cannot use '{path}': {problem}; {fix or 'check the path and its permissions'}"


def _select(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node
