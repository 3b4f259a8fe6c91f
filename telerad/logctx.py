"""A context id (association or job) on every log line, via contextvars."""

from __future__ import annotations

import contextvars
import logging

log_context: contextvars.ContextVar[str] = contextvars.ContextVar("telerad_log_context", default="-")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ctx = log_context.get()
        return True


def install_context_filter() -> None:
    flt = _ContextFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ContextFilter) for f in handler.filters):
            handler.addFilter(flt)


def escape(value, limit: int = 80) -> str:
    """``value`` safe for one log line: non-printable and non-ASCII characters escaped, truncated.

    Peer-supplied strings (AE titles, UIDs, error texts) go through this before they are logged,
    so a newline or a terminal escape sent by a peer cannot forge or garble log lines.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = ascii(bytes(value)[: limit * 4])[2:-1]
    else:
        text = ascii(str(value)[: limit * 4])[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


_log_phi = False
HIDDEN = "[hidden: log_phi is off]"


def set_log_phi(enabled: bool) -> None:
    """Whether patient-identifying values may be written to the log (setting ``log_phi``; default no)."""
    global _log_phi
    _log_phi = bool(enabled)


def phi(value) -> str:
    """``value`` (escaped) when ``log_phi`` is on, else a placeholder: use for names, IDs, accession numbers."""
    return escape(value, 120) if _log_phi else HIDDEN
