"""A bus kept open for callers that have no ``async with`` of their own.

The seed's API is used without a context manager (``events = UserEvent(); await
events.push(...)``), but a bus's actors and bridges live in the nursery of
``open_bus()``. :class:`BusRunner` opens one in a trio *system task*: it lives until
:meth:`BusRunner.aclose` (which leaves the block normally, so the bus drains and closes
its bridges) or until the trio run ends (which cancels it). An error in the system
task never crashes the run: it is kept and raised by the next :meth:`BusRunner.start`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bus import Bus, BusClosedError, open_bus
from bus.abc import get_logger

__all__ = ["BusRunner"]

_log = get_logger("bus.events")


class BusRunner:
    """Runs ``open_bus(**options)`` in a system task; *setup* runs once it is open."""

    def __init__(
        self, setup: Callable[[Bus], Awaitable[Any]] | None = None, **options: Any
    ) -> None:
        self._setup = setup
        self._options = options
        self._bus: Bus | None = None
        self._stop: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self._error: BaseException | None = None
        self._scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<BusRunner {self._options.get('name', 'trio-bus')!r} running={self.running}>"

    @property
    def running(self) -> bool:
        return self._bus is not None and not self._bus.closed

    @property
    def bus(self) -> Bus:
        if self._bus is None or self._bus.closed:
            raise BusClosedError("this bus is not running; connect() first")
        return self._bus

    async def start(self) -> Bus:
        """The running bus, opening it first if needed.

        Raises what *setup* or ``open_bus`` raised (for example
        :class:`~bus.BackendUnavailableError` from attaching a bridge).
        """
        if self.running:
            assert self._bus is not None
            return self._bus
        if self._stopped is not None and not self._stopped.is_set():
            await self._stopped.wait()  # a close in progress finishes first
        ready = trio.Event()
        self._error = None
        self._stop, self._stopped = trio.Event(), trio.Event()
        trio.lowlevel.spawn_system_task(
            self._run, ready, self._stop, self._stopped, name=f"bus-runner:{self!r}"
        )
        await ready.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.bus

    async def _run(self, ready: trio.Event, stop: trio.Event, stopped: trio.Event) -> None:
        self._scope = scope = trio.CancelScope()
        try:
            with scope:
                await self._serve(ready, stop)
        except BaseException as exc:
            # A system task must not raise (trio would abort the whole run): what is
            # not a cancellation is logged; cancellations end the task quietly.
            rest = exc.split(trio.Cancelled)[1] if isinstance(exc, BaseExceptionGroup) else (
                None if isinstance(exc, trio.Cancelled) else exc
            )
            if rest is not None:
                _log.error("bus_runner.failed", error=repr(rest))
        finally:
            ready.set()
            stopped.set()

    async def _serve(self, ready: trio.Event, stop: trio.Event) -> None:
        try:
            async with open_bus(**self._options) as bus:
                self._bus = bus
                if self._setup is not None:
                    await self._setup(bus)
                ready.set()
                await stop.wait()
        except Exception as exc:
            # Not raised from a system task (that would crash the whole trio run): the
            # caller of start() gets it, or it is logged if the bus was already running.
            if not ready.is_set():
                self._error = exc
            else:
                _log.error("bus_runner.failed", error=repr(exc))
        finally:
            self._bus = None if self._bus is None or self._bus.closed else self._bus

    def cancel(self) -> None:
        """Cancel the bus now (no drain): what its subscribers had not handled stays
        undone, so a bridge does not acknowledge it. Usable where nothing can be awaited."""
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        """Leave the bus's block normally (drain, close bridges) and wait for it to
        finish (bound it with ``trio.move_on_after`` if needed). Idempotent."""
        if self._stop is None or self._stopped is None:
            return
        self._stop.set()
        await self._stopped.wait()
