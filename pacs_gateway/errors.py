"""Gateway exceptions."""

from telerad.errors import TeleradError


class GatewayError(TeleradError):
    """Base class for gateway errors."""


class BadDataset(GatewayError, ValueError):
    """A received dataset cannot be stored; ``status`` is the DIMSE status to answer."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class StoreError(GatewayError, OSError):
    """The object store could not make the bytes durable."""


class IndexError_(GatewayError, RuntimeError):
    """The index database refused or failed a write."""
