"""Delayed publishing: ``publish(..., delay=)`` and ``not_before=`` on trio's clock.

A delayed message is checked and made into its envelope when ``publish`` is called (a
wrong payload fails at once, and the caller gets the envelope with its id), then held
here, in memory, until it is due; then it is routed like any publish. Times are trio's
clock (``trio.current_time()``), so under ``MockClock(autojump_threshold=0)`` a delay
passes at once and tests stay instant and repeatable.

One task per bus (started on the first delayed publish, never on a bus that does not use
the feature) waits for the earliest due message only: the messages are kept in a heap
ordered by due time, then by publish order, so two messages due at the same instant go
out in the order they were published. Routing waits for room like ``publish`` does
(backpressure holds the later ones back, in order).

What this does not do: persist. A delayed message lives in this process; the bus does
not wait for it when it drains, and one still held when the bus closes is not delivered:
it is counted in ``bus.undelivered`` under :data:`DELAYED` and logged. A message that
must survive a restart belongs on a broker (the retry tiers, ``bus/_tiers.py``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._done import DROPPED
from ._envelope import Envelope
from ._errors import BusError, ConfigurationError
from ._log import get_logger

__all__ = ["DELAYED", "Delayed", "due_time"]

log = get_logger("bus")

DELAYED = "(delayed)"
"""The key of ``bus.undelivered`` that counts delayed messages the bus closed on."""


def due_time(delay: Any, not_before: Any, now: float) -> float:
    """The trio-clock time a message published now with *delay* / *not_before* is due.

    Exactly one of them is given (the other None): *delay* in seconds from *now* (>= 0),
    or *not_before* an absolute ``trio.current_time()`` value (in the past: due at once).
    """
    if delay is not None and not_before is not None:
        raise ConfigurationError(
            "publish takes delay= (seconds from now) or not_before= (a trio.current_time() "
            "value), not both"
        )
    value, name = (delay, "delay") if delay is not None else (not_before, "not_before")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if name == "delay":
        if value < 0:
            raise ConfigurationError(f"delay must be >= 0 seconds, got {value!r}")
        return now + value
    return float(value)


class Delayed:
    """The messages of one bus waiting to be published (see the module docstring)."""

    def __init__(
        self,
        route: Callable[[Envelope[Any]], Awaitable[None]],
        start_soon: Callable[..., None],
    ) -> None:
        self._route = route
        self._start_soon = start_soon
        self._heap: list[tuple[float, int, Envelope[Any]]] = []
        self._order = itertools.count()
        self._scope: trio.CancelScope | None = None  # the runner's wait for the head
        self._started = False
        self._closed = False
        self.published = 0
        """Delayed messages routed when due."""
        self.failed = 0
        """Delayed messages whose routing failed when due (logged as ``delayed.failed``)."""

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: float, env: Envelope[Any]) -> None:
        """Hold *env* until trio's clock reaches *due*."""
        heapq.heappush(self._heap, (due, next(self._order), env))
        if not self._started:
            self._started = True
            self._start_soon(self._run, name="bus:delayed")
        elif self._scope is not None and self._heap[0][2] is env:
            self._scope.deadline = due  # a new head: wake the runner earlier

    def close(self) -> int:
        """Stop: the runner ends; returns how many messages were still held."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        return len(self._heap)

    async def _run(self) -> None:
        heap = self._heap
        while not self._closed:
            with trio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = heap[0][0] if heap else math.inf
                await trio.sleep_forever()
            self._scope = None
            if self._closed:
                return
            now = trio.current_time()
            while heap and heap[0][0] <= now and not self._closed:
                _, _, env = heapq.heappop(heap)
                try:
                    await self._route(env)
                except BusError as exc:
                    self.failed += 1
                    log.error(
                        "delayed.failed", id=env.id, topic=env.topic, key=env.key,
                        error=repr(exc),
                    )
                    if env.delivery is not None:
                        env.delivery.fail(DELAYED, DROPPED, str(exc))
                else:
                    self.published += 1
