"""A bounded mailbox: the FIFO between publishers and one worker task.

The fast path is synchronous: :meth:`Lane.offer` appends and wakes the worker
without a schedule point, and the worker drains with ``popleft`` until the deque is
empty; only then does it park. A publisher awaits (:meth:`Lane.put`) only when the
mailbox is full under the ``block`` policy: that wait *is* the backpressure.
trio's memory channels make every send a schedule point, which caps a bus at ~70-90k
messages/s on this machine (SPEC §6); this keeps schedule points off the common path.

Blocked publishers queue in arrival order, each with its message. When the worker has
made room (at the low-water mark, half the mailbox, so a saturated lane trades one
wake-up per half mailbox rather than one per message; or when it is about to park),
:meth:`Lane.admit` moves the first waiting messages into the room, one per free slot,
and wakes exactly their publishers, whose ``put`` has then succeeded: no publisher is
woken to find the mailbox full again, so the work per blocked message does not grow
with the number waiting (one park, one wake-up), and none is overtaken. While publishers
wait, ``limit`` (what every fast path compares the mailbox's length with) is 0, so a
newcomer queues behind them too instead of taking the room the worker made for them.

Fast-path protocol
------------------
:meth:`Lane.offer` is the one way into a mailbox, but the publish hot paths append
without calling it: a call per message cost measurably (each copy's A/B is in
docs/performance.md, "Fast paths"). Every such copy is tagged ``fast path:
bus/_mailbox.py`` where it is and must keep these rules:

1. compare ``len(lane.items)`` with ``lane.limit``, never with ``lane.capacity``: the
   limit is 0 while publishers wait in :meth:`Lane.put`, so a newcomer on a fast path
   queues behind them (FIFO admission) instead of taking the room made for them;
2. after appending, test ``lane.getter_parked`` and call :meth:`Lane.wake_getter` (which
   clears it, so a burst of appends wakes the worker once);
3. when the lane is full, fall back to ``lane.offer(env)`` (the overflow policy) and
   ``await`` the lane's :meth:`Lane.put` when it returns the lane;
4. only for targets that cannot refuse (``TopicSpec.careful`` false) and envelopes
   without a :class:`~bus.abc.Delivery` to hold: anything else takes the general route,
   ``Router.deliver`` (bus/_route.py).

The worker's side of the same protocol: having taken messages off its lane it calls
:meth:`Lane.admit` when ``putters_waiting`` and the mailbox is at or below
``low_water``, and :meth:`Lane.wait` admits before it parks. The copies: ``Bus.publish``
(one lane, several lanes, keyed lanes), ``Bus.publish_nowait``, ``Router.deliver_batch``
(``publish_batch``: one ``extend`` per lane), ``Subscription._offer_spread`` and
:meth:`Lane.put` (room made since the offer). ``tests/bus/test_fast_paths.py`` holds
every one of them to the general route's result.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._done import DROPPED
from ._envelope import Envelope
from ._errors import BusClosedError, MailboxFullError
from ._policy import Overflow

if TYPE_CHECKING:
    from ._state import BusState

__all__ = ["Lane", "LaneOwner"]


class LaneOwner(Protocol):
    """What a lane needs of the subscription that owns it."""

    name: str
    rejected: int
    """Messages refused by ``overflow="error"`` (the lane counts them here)."""

    @property
    def bus_state(self) -> BusState: ...

    def note_dropped(self, policy: Overflow, env: Envelope[Any]) -> None: ...

    def flush_dropped(self) -> None: ...


class _Putter:
    """A publisher blocked in :meth:`Lane.put`: its task (None once woken or cancelled)
    and its message; ``refused`` when the lane closed before taking it."""

    __slots__ = ("env", "lane", "refused", "task")

    def __init__(self, lane: Lane, task: trio.lowlevel.Task, env: Envelope[Any]) -> None:
        self.lane = lane
        self.task: trio.lowlevel.Task | None = task
        self.env = env
        self.refused = False

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        # cancelled while waiting: admit() skips it (its message was never taken)
        self.task = None
        self.lane.left_queue()
        return trio.lowlevel.Abort.SUCCEEDED


class Lane:
    """One worker's bounded mailbox. A subscription with ``concurrency=N`` has N lanes."""

    __slots__ = (
        "_putters",
        "capacity",
        "closed",
        "getter_parked",
        "index",
        "items",
        "limit",
        "low_water",
        "overflow",
        "owner",
        "putters_waiting",
        "worker",
    )

    def __init__(self, owner: LaneOwner, index: int, capacity: int, overflow: Overflow) -> None:
        self.owner = owner
        self.index = index
        self.items: deque[Envelope[Any]] = deque()
        self.capacity = capacity
        # what the fast paths compare len(items) with: the capacity, or 0 while
        # publishers wait in put() (a newcomer then queues behind them)
        self.limit = capacity
        self.low_water = capacity // 2
        self.overflow = overflow
        self.closed = False
        self.worker: trio.lowlevel.Task | None = None
        # the worker while it is parked in wait() and not yet woken (one task at most:
        # parked directly, no ParkingLot); publishers test it after every append
        self.getter_parked: trio.lowlevel.Task | None = None
        self._putters: deque[_Putter] = deque()  # in arrival order; cancelled ones skipped
        self.putters_waiting = 0
        """Publishers blocked in :meth:`put` (the worker calls :meth:`admit` when > 0)."""

    # -- publisher side -------------------------------------------------------------

    def offer(self, env: Envelope[Any]) -> Lane | None:
        """Accept *env* without waiting and return None; or return this lane when it is
        full under ``block`` (the caller then awaits :meth:`put`)."""
        items = self.items
        if len(items) < self.limit:
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
        """No room for a new message now (also while blocked publishers wait for some)."""
        return len(self.items) >= self.limit

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
        """Wait for room, then accept *env* (the ``block`` policy's slow path): queue
        behind the publishers already waiting and park until :meth:`admit` has put
        *env* in the mailbox."""
        if trio.lowlevel.current_task() is self.worker:
            raise MailboxFullError(
                f"subscriber {self.owner.name!r} published to its own full mailbox from its "
                f"handler, which would wait forever; raise its capacity or publish from "
                f"another task"
            )
        items = self.items
        if len(items) < self.limit:  # room made since the offer (fast path, above)
            items.append(env)
            if self.getter_parked:
                self.wake_getter()
            return
        if self.closed:
            raise BusClosedError(f"subscriber {self.owner.name!r} closed while full")
        putter = _Putter(self, trio.lowlevel.current_task(), env)
        self._putters.append(putter)
        self.putters_waiting += 1
        self.limit = 0
        self.owner.bus_state.blocked_puts += 1
        # left_queue() counts it out: admitted, refused or cancelled
        await trio.lowlevel.wait_task_rescheduled(putter.abort)
        if putter.refused:
            raise BusClosedError(f"subscriber {self.owner.name!r} closed while full")

    def left_queue(self) -> None:
        """One waiting publisher is gone (admitted, refused or cancelled). It stops
        counting as blocked now, not when its task next runs: by then the worker may
        have handled the admitted message and parked, the moment ``drain()`` looks."""
        self.putters_waiting -= 1
        if not self.putters_waiting:
            self.limit = self.capacity
        self.owner.bus_state.blocked_puts -= 1

    # -- worker side ------------------------------------------------------------------

    def admit(self) -> None:
        """Move the first waiting publishers' messages into the room there is, one per
        free slot, in arrival order, and wake those publishers (their ``put`` is done).
        The worker calls this at the low-water mark and before it parks."""
        items, putters, reschedule = self.items, self._putters, trio.lowlevel.reschedule
        room = self.capacity - len(items)
        while room > 0 and putters:
            putter = putters.popleft()
            task = putter.task
            if task is None:
                continue  # cancelled while waiting
            putter.task = None
            items.append(putter.env)
            room -= 1
            self.left_queue()
            reschedule(task)

    def _refuse_waiting(self) -> None:
        """The lane closed: wake every waiting publisher with ``BusClosedError``."""
        putters = self._putters
        while putters:
            putter = putters.popleft()
            task = putter.task
            if task is not None:
                putter.task = None
                putter.refused = True
                self.left_queue()
                trio.lowlevel.reschedule(task)

    async def wait(self) -> bool:
        """Park until a message arrives. False once the lane is closed and empty."""
        state = self.owner.bus_state
        while not self.items:
            if self.closed:
                state.idled += 1  # BusState.went_idle, inlined: once per park (A/B)
                if state.idle_waiters:
                    state.idle.unpark_all()  # drain() may be waiting for this worker
                return False
            if self.putters_waiting:
                self.admit()
                continue
            self.getter_parked = trio.lowlevel.current_task()
            state.idled += 1  # BusState.went_idle, inlined
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
        if self.putters_waiting:
            self.admit()  # what fits is accepted, as it would have been a moment later
            self._refuse_waiting()
        self.owner.flush_dropped()
