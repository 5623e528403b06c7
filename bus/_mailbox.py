"""A bounded mailbox: the FIFO between publishers and one worker task.

The fast path is synchronous: :meth:`Lane.offer` appends and wakes the worker
without a schedule point, and the worker drains with ``popleft`` until the deque is
empty; only then does it park. A publisher awaits (:meth:`Lane.put`) only when the
mailbox is full under the ``block`` policy: that wait *is* the backpressure.
trio's memory channels make every send a schedule point, which caps a bus at ~70-90k
messages/s on this machine (SPEC §6); this keeps schedule points off the common path.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import structlog
import trio

from ._envelope import Envelope
from ._errors import BusClosedError, MailboxFullError
from ._policy import Overflow

if TYPE_CHECKING:
    from ._actor import Subscription

__all__ = ["Lane"]

log = structlog.get_logger("bus")


class Lane:
    """One worker's bounded mailbox. A subscription with ``concurrency=N`` has N lanes."""

    __slots__ = (
        "_getter",
        "_getter_parked",
        "_putters",
        "_putters_waiting",
        "capacity",
        "closed",
        "index",
        "items",
        "overflow",
        "owner",
        "worker",
    )

    def __init__(self, owner: Subscription, index: int, capacity: int, overflow: Overflow) -> None:
        self.owner = owner
        self.index = index
        self.items: deque[Envelope[Any]] = deque()
        self.capacity = capacity
        self.overflow = overflow
        self.closed = False
        self.worker: trio.lowlevel.Task | None = None
        self._getter = trio.lowlevel.ParkingLot()
        self._getter_parked = False
        self._putters = trio.lowlevel.ParkingLot()
        self._putters_waiting = 0

    # -- publisher side -------------------------------------------------------------

    def select(self, env: Envelope[Any]) -> Lane | None:
        """A lane routes to itself (the routing table holds lanes, subscriptions, groups)."""
        return self

    def offer(self, env: Envelope[Any]) -> bool:
        """Accept *env* without waiting. False means: full under ``block``, call :meth:`put`."""
        items = self.items
        if len(items) < self.capacity:
            items.append(env)
            if self._getter_parked:
                self._getter.unpark()
            return True
        return self._overflowed(env)

    def _overflowed(self, env: Envelope[Any]) -> bool:
        if self.closed:
            raise BusClosedError(f"subscriber {self.owner.name!r} is closed")
        policy = self.overflow
        if policy is Overflow.BLOCK:
            return False
        owner = self.owner
        if policy is Overflow.DROP_OLDEST:
            dropped = self.items.popleft()
            self.items.append(env)
        elif policy is Overflow.DROP_NEWEST:
            dropped = env
        else:
            raise MailboxFullError(
                f"mailbox of subscriber {owner.name!r} is full ({self.capacity} messages) and "
                f"its overflow policy is 'error'; raise capacity=, slow the publisher, or "
                f"choose overflow='block' for backpressure"
            )
        owner.dropped += 1
        log.warning(
            "message.dropped", subscriber=owner.name, policy=policy.value, id=dropped.id,
            topic=dropped.topic,
        )
        return True

    async def put(self, env: Envelope[Any]) -> None:
        """Wait for room, then accept *env* (the ``block`` policy's slow path)."""
        if trio.lowlevel.current_task() is self.worker:
            raise MailboxFullError(
                f"subscriber {self.owner.name!r} published to its own full mailbox from its "
                f"handler, which would wait forever; raise its capacity or publish from "
                f"another task"
            )
        tracker = self.owner.bus_state
        while len(self.items) >= self.capacity:
            if self.closed:
                raise BusClosedError(f"subscriber {self.owner.name!r} closed while full")
            self._putters_waiting += 1
            tracker.blocked_puts += 1
            try:
                await self._putters.park()
            finally:
                self._putters_waiting -= 1
                tracker.blocked_puts -= 1
        self.items.append(env)
        if self._getter_parked:
            self._getter.unpark()

    # -- worker side ------------------------------------------------------------------

    def popleft(self) -> Envelope[Any]:
        env = self.items.popleft()
        if self._putters_waiting:
            self._putters.unpark()
        return env

    async def wait(self) -> bool:
        """Park until a message arrives. False once the lane is closed and empty."""
        state = self.owner.bus_state
        while not self.items:
            if self.closed:
                return False
            self._getter_parked = True
            if state.idle_waiters:
                state.idle.unpark_all()
            try:
                await self._getter.park()
            finally:
                self._getter_parked = False
        return True

    @property
    def idle(self) -> bool:
        """Empty, and its worker is parked waiting (no handler running or retrying)."""
        return not self.items and (self._getter_parked or self.closed)

    def close(self) -> None:
        """Stop accepting; the worker exits once the mailbox is empty."""
        self.closed = True
        self._getter.unpark_all()
        self._putters.unpark_all()
