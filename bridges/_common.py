"""What every broker package uses the same way: written once here.

- :func:`require` (and :func:`missing`): import a broker's client library when a bridge
  is made, or raise the one :class:`~bus.MissingDependencyError` that names the extra to
  install (``pip install 'trio-bus[EXTRA]'``);
- :func:`not_open`: the error of a bridge used before ``bus.attach`` opened it;
- :func:`call`: one call into a client (on the asyncio runtime, or in a worker thread),
  its exceptions translated to bus errors at the boundary, so no client exception type
  reaches users (``raise translate(exc) from exc``);
- :class:`AckBatcher`: the task that acknowledges what the bus reported done, one flush
  per wake-up, so acks that come in while a flush is on the wire go out together;
- :func:`quiet`: a client library's loggers print nothing unless the application
  configured logging (``docs/design.md``, "Logging").

Nothing here imports a client library or knows a broker.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, NoReturn, TypeVar

import trio

from bus import ConfigurationError, MissingDependencyError

__all__ = ["AckBatcher", "call", "missing", "not_open", "quiet", "require"]

T = TypeVar("T")


def quiet(*loggers: str) -> None:
    """Give each of a client library's *loggers* a ``NullHandler``, as the logging HOWTO
    asks of libraries: without it, Python's last-resort handler prints the client's
    warnings to stderr of an application that configured no logging. An application
    that configured logging still gets them (they propagate to its handlers)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def require(module: str, extra: str, who: str, package: str | None = None) -> ModuleType:
    """*module* imported, or :func:`missing`'s error."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing(module, extra, who, package) from exc


def missing(
    module: str, extra: str, who: str, package: str | None = None
) -> MissingDependencyError:
    """``WHO needs PACKAGE: pip install 'trio-bus[EXTRA]'`` (*package*: the distribution's
    name, default *module*'s): the one message for a client library not installed."""
    return MissingDependencyError(
        f"{who} needs {package or module}: pip install 'trio-bus[{extra}]'"
    )


def not_open(name: str) -> ConfigurationError:
    """The error for bridge *name* used before it was opened."""
    return ConfigurationError(
        f"bridge {name!r} is not open: attach it to a bus (bus.attach) first"
    )


async def call(
    run: Callable[..., Awaitable[T]] | None,
    fn: Callable[..., Any],
    *args: Any,
    is_client_error: Callable[[BaseException], bool],
    translate: Callable[[BaseException], BaseException],
    closed: Callable[[], BaseException],
) -> T:
    """``await run(fn, *args)``, the client's exceptions translated.

    *run* crosses to where the client lives (``Runtime.run``, or a worker thread); None
    means the bridge is not open: ``closed()`` is raised. An exception for which
    *is_client_error* is true is raised as ``translate(exc) from exc``; others (bus
    errors, bugs) propagate unchanged. A task that is cancelled already sees
    ``trio.Cancelled`` first, not a runtime closed meanwhile: a cancelled ingress task
    may still be starting while its bridge closes (detach does not wait for it).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    if run is None:
        raise closed()
    try:
        return await run(fn, *args)
    except Exception as exc:
        if is_client_error(exc):
            raise translate(exc) from exc
        raise


class AckBatcher:
    """Acknowledge in batches: :meth:`wanted` (from an ``on_done`` callback, in trio's
    thread) asks for a flush; :meth:`run` (a task of ingress) calls *flush* once per
    wake-up, taking everything that was done meanwhile."""

    __slots__ = ("_flush", "_wanted")

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._flush = flush
        self._wanted = trio.Event()

    def wanted(self) -> None:
        """Something is done: flush soon (cheap; call it once per done message)."""
        self._wanted.set()

    async def run(self) -> NoReturn:
        """Flush whenever asked, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            await self._flush()
