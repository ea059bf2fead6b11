"""Exceptions that carry a message meant for the user: what is wrong and how to fix it."""


class AdvlabError(Exception):
    """Base class for errors advlab reports to the user. It may hold several messages (``messages``), one
    problem each; ``str()`` joins them one per line."""

    def __init__(self, *messages: object):
        self.messages = [str(m) for m in messages]
        super().__init__("\n".join(self.messages))


class ConfigError(AdvlabError, ValueError):
    """A config value is invalid. The message names the key (e.g. ``attack.eps``)."""


class DatasetNotFoundError(AdvlabError, FileNotFoundError):
    """A dataset root is missing or does not have the expected on-disk layout."""


class CheckpointError(AdvlabError, RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""
