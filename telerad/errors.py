"""Base exceptions shared by every telerad package."""


class TeleradError(Exception):
    """Base class for errors that telerad reports to a user without a traceback.

    ``exit_code`` is what a CLI returns when the error reaches it.
    """

    exit_code = 1


class ConfigError(TeleradError, ValueError):
    """A setting is missing or invalid; the message names the field."""

    exit_code = 2


class UsageError(TeleradError, ValueError):
    """A command was called with arguments that cannot work."""

    exit_code = 2
