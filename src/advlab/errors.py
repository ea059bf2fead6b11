"""Exceptions that carry a message meant for the user: what is wrong and how to fix it.

An advlab error holds one or more messages (``ConfigError("attack.eps: ...", "attack.steps: ...")``); the CLI
prints each as its own ``advlab: error: <message>`` line (a message's further lines follow as they are) and exits
2 (see :mod:`advlab.app`)."""

from __future__ import annotations


class AdvlabError(Exception):
    """Base class for errors advlab reports to the user. ``AdvlabError(*messages)``: one message per argument
    (a message may continue on further lines, e.g. an expected folder layout)."""

    def __init__(self, *messages: object):
        self.messages: list[str] = [str(m).strip("\n") for m in messages if str(m).strip()] or [
            type(self).__name__
        ]
        # one argument (the joined text): the OSError bases below would read two as (errno, strerror)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)

    def __reduce__(self):  # pickling (submitit jobs) keeps the messages apart
        return type(self), tuple(self.messages)


class ConfigError(AdvlabError, ValueError):
    """A config value is invalid. The message names the key (e.g. ``attack.eps``)."""


class DatasetNotFoundError(AdvlabError, FileNotFoundError):
    """A dataset root is missing or does not have the expected on-disk layout."""


class CheckpointError(AdvlabError, RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


class RunFolderError(AdvlabError, OSError):
    """The run folder (``hydra.run.dir``) or the cache (``cache_dir``) cannot be used: it is read-only, not a
    folder, lies under a regular file, the disk is full, or it holds a finished run."""


class LauncherError(AdvlabError, RuntimeError):
    """The configured Hydra launcher cannot start (e.g. the SLURM launcher where ``sbatch``/``srun`` are missing)."""
