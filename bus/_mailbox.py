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

import trio

from ._done import DROPPED
from ._envelope import Envelope
from ._errors import BusClosedError, MailboxFullError
from ._policy import Overflow

if TYPE_CHECKING:
    from ._actor import Subscription

__all__ = ["Lane"]


class Lane:
    """One worker's bounded mailbox. A subscription with ``concurrency=N`` has N lanes."""

    __slots__ = (
        "_putters",
        "_putters_waiting",
        "capacity",
        "closed",
        "getter_parked",
        "index",
        "items",
        "low_water",
        "overflow",
        "owner",
        "worker",
    )

    def __init__(self, owner: Subscription, index: int, capacity: int, overflow: Overflow) -> None:
        self.owner = owner
        self.index = index
        self.items: deque[Envelope[Any]] = deque()
        self.capacity = capacity
        self.low_water = capacity // 2
        self.overflow = overflow
        self.closed = False
        self.worker: trio.lowlevel.Task | None = None
        # the worker while it is parked in wait() and not yet woken (one task at most:
        # parked directly, no ParkingLot); publishers test it after every append
        self.getter_parked: trio.lowlevel.Task | None = None
        self._putters = trio.lowlevel.ParkingLot()
        self._putters_waiting = 0

    # -- publisher side -------------------------------------------------------------

    def offer(self, env: Envelope[Any]) -> Lane | None:
        """Accept *env* without waiting and return None; or return this lane when it is
        full under ``block`` (the caller then awaits :meth:`put`)."""
        items = self.items
        if len(items) < self.capacity:
            items.append(env)
            if self.getter_parked:
                self.wake_getter()
            return None
        return self._overflowed(env)

    def wake_getter(self) -> None:
        # Cleared here, not when the worker runs: the publisher may append many more
        # messages before the worker gets the CPU, and each must not wake it again.
        task = self.getter_parked
        if task is not None:
            self.getter_parked = None
            trio.lowlevel.reschedule(task)

    def _abort_wait(self, _: Any) -> trio.lowlevel.Abort:
        self.getter_parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def full_error(self) -> MailboxFullError:
        return MailboxFullError(
            f"mailbox of subscriber {self.owner.name!r} is full ({self.capacity} messages) "
            f"and its overflow policy is 'error'; no subscriber got the message. Raise "
            f"capacity=, slow the publisher, or choose overflow='block' for backpressure"
        )

    def _overflowed(self, env: Envelope[Any]) -> Lane | None:
        if self.closed:
            raise BusClosedError(f"subscriber {self.owner.name!r} is closed")
        policy = self.overflow
        if policy is Overflow.BLOCK:
            return self
        owner = self.owner
        if policy is Overflow.DROP_OLDEST:
            dropped = self.items.popleft()
            self.items.append(env)
        elif policy is Overflow.DROP_NEWEST:
            dropped = env
        else:
            owner.rejected += 1
            raise self.full_error()
        if dropped.delivery is not None:
            dropped.delivery.fail(owner.name, DROPPED, f"mailbox full, overflow={policy.value}")
        owner.note_dropped(policy, dropped)  # counted; logged as a rate-limited summary
        return None

    async def put(self, env: Envelope[Any]) -> None:
        """Wait for room, then accept *env* (the ``block`` policy's slow path)."""
        if trio.lowlevel.current_task() is self.worker:
            raise MailboxFullError(
                f"subscriber {self.owner.name!r} published to its own full mailbox from its "
                f"handler, which would wait forever; raise its capacity or publish from "
                f"another task"
            )
        tracker = self.owner.bus_state
        tracker.blocked_puts += 1
        try:
            while len(self.items) >= self.capacity:
                if self.closed:
                    raise BusClosedError(f"subscriber {self.owner.name!r} closed while full")
                self._putters_waiting += 1
                try:
                    await self._putters.park()
                except BaseException:
                    # not woken (a wake-up is never followed by Cancelled at this point)
                    self._putters_waiting -= 1
                    raise
            self.items.append(env)
            if self.getter_parked:
                self.wake_getter()
        finally:
            tracker.blocked_puts -= 1

    # -- worker side ------------------------------------------------------------------

    def wake_putters(self) -> None:
        """Let every blocked publisher retry. The worker calls this at the low-water mark
        (half empty), so a saturated lane trades one wake-up per half mailbox, not one per
        message."""
        self._putters_waiting = 0
        self._putters.unpark_all()

    async def wait(self) -> bool:
        """Park until a message arrives. False once the lane is closed and empty."""
        state = self.owner.bus_state
        while not self.items:
            if self.closed:
                return False
            if self._putters_waiting:
                self.wake_putters()
            self.getter_parked = trio.lowlevel.current_task()
            if state.idle_waiters:
                state.idle.unpark_all()
            await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
        return True

    @property
    def idle(self) -> bool:
        """Empty, and its worker is parked waiting (no handler running or retrying)."""
        return not self.items and (self.getter_parked is not None or self.closed)

    def close(self) -> None:
        """Stop accepting; the worker exits once the mailbox is empty."""
        self.closed = True
        self.wake_getter()
        self.wake_putters()
        self.owner.flush_dropped()
