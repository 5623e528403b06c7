"""Logging for the ``bus`` command: the application here is the CLI, so it configures.

The library never configures logging (``bus._log``); a command line is an application,
so ``bus`` sets up structlog once at start: events at ``--log-level`` and above go to
stderr, rendered for a person when stderr is a terminal (structlog's console renderer)
and as one JSON object per line otherwise (for a log collector); ``NO_COLOR`` turns the
colours off. Standard-library
records (the ``bus`` logger when structlog is not the route, and the broker clients'
own loggers) go through the same renderer. The clients' logs are chatty and their
errors are reported by the bridges anyway, translated: they are shown only at
``debug``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

__all__ = ["LEVELS", "configure", "silence"]

LEVELS = ("debug", "info", "warning", "error", "critical")
_OURS = ("bus", "bridges")
_silenced: set[str] = set()
_level = logging.WARNING


def silence(*events: str) -> None:
    """Drop these events from now on: a command that stops on purpose (``tail --count``
    leaves messages unhandled, unacknowledged, for the broker to deliver again) does not
    report that as a problem. At ``info`` and below they are still shown."""
    if _level > logging.INFO:
        _silenced.update(events)


def _drop_silenced(_logger: Any, _method: str, event: Any) -> Any:
    if event.get("event") in _silenced:
        raise structlog.DropEvent
    return event


class _OnlyOurs(logging.Filter):
    """Below ``debug``, drop the broker clients' own records (aiokafka, aio_pika...)."""

    def __init__(self, everything: bool) -> None:
        super().__init__()
        self.everything = everything

    def filter(self, record: logging.LogRecord) -> bool:
        return self.everything or record.name.split(".", 1)[0] in _OURS


def configure(level: str = "warning", stream: TextIO | None = None) -> Callable[[], None]:
    """Route structlog and stdlib logging to *stream* (stderr) at *level*; return what
    puts the previous configuration back (for callers of ``bus.cli.main`` in a process
    that goes on, such as tests)."""
    stream = stream or sys.stderr
    restore = _saved()
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    global _level
    _level = number
    human = stream.isatty()
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=not os.environ.get("NO_COLOR"))
        if human else structlog.processors.JSONRenderer(sort_keys=False)
    )
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            _drop_silenced,
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    handler.addFilter(_OnlyOurs(everything=number <= logging.DEBUG))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    return restore


def _saved() -> Callable[[], None]:
    was_configured, config = structlog.is_configured(), structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    silenced, old_level = set(_silenced), _level

    def restore() -> None:
        global _level
        if was_configured:
            structlog.configure(**config)
        else:
            structlog.reset_defaults()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        _silenced.clear()
        _silenced.update(silenced)
        _level = old_level

    return restore
