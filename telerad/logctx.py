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
