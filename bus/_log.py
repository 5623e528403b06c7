"""The library's loggers: silent unless the application configures logging.

A library must not print. Every trio-bus log event goes through a :class:`BusLogger`,
which decides at each call where it goes:

- the application configured structlog (``structlog.configure(...)``, which
  ``structlog.testing.capture_logs()`` also does): the event goes through structlog's
  configured processors and logger factory, exactly as the application's own events do
  (with ``structlog.stdlib.LoggerFactory()`` it reaches the stdlib logger ``bus``);
- otherwise: it goes to the stdlib logger of the same name (``bus``, ``bus.facade``),
  rendered as ``"event key=value ..."``, checked against the logger's level first. The
  ``bus`` logger has a ``NullHandler``, so nothing is printed until the application
  calls ``logging.basicConfig`` or adds a handler of its own.

This module does not configure structlog or stdlib logging for the application.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["BusLogger", "get_logger"]

# The library convention (logging HOWTO, "Configuring Logging for a Library"): a
# NullHandler keeps Python's last-resort handler from printing our warnings to stderr.
logging.getLogger("bus").addHandler(logging.NullHandler())


class BusLogger:
    """A logger with structlog's call shape: ``log.warning("event", key=value)``."""

    __slots__ = ("_std", "_structlog")

    def __init__(self, name: str) -> None:
        self._std = logging.getLogger(name)
        # a lazy proxy: it reads structlog's configuration at each call, so an
        # application configuring structlog after importing bus is honoured
        self._structlog: Any = structlog.get_logger(name)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(self._structlog, method)(event, **fields)
        elif self._std.isEnabledFor(level):
            if fields:
                rendered = " ".join(f"{k}={v!r}" for k, v in fields.items())
                self._std.log(level, "%s %s", event, rendered)
            else:
                self._std.log(level, "%s", event)


def get_logger(name: str = "bus") -> BusLogger:
    """The logger for *name* (``bus`` or a child of it)."""
    return BusLogger(name)
