"""Actors: a handler behind bounded mailboxes, supervised.

A :class:`Subscription` owns ``concurrency`` lanes (each a mailbox and a worker task).
Messages with the same key always go to the same lane, so per-key order holds; messages
without a key are spread round-robin. Keys are hashed with CRC-32 (:func:`key_slot`), so
a key lands on the same lane in every process. Handling is :class:`~bus._worker.Worker`'s
job (``bus/_worker.py``): a failing handler is retried with backoff on the same lane (so
later messages of that lane wait behind it), then dead-lettered. A crash outside the
handler (``on_start``, a dead-letter publish that fails...) is caught by the supervisor
here, which restarts all lanes (one-for-all) with backoff, up to a limit; the message in
hand goes back to the front of its mailbox, so nothing is lost.

A :class:`~bus.Group` (``bus/_group.py``) spreads messages over its member subscriptions.
Neither knows how topics are matched (``_routing``) or how the bus is closed: a
subscription knows its bus only through its :class:`~bus._state.BusState`.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ._envelope import H_ORIGIN, Envelope
from ._errors import ConfigurationError, SupervisorGaveUp
from ._group import Group, key_slot
from ._log import get_logger
from ._mailbox import Lane
from ._policy import (
    DedupWindow,
    Overflow,
    RateLimitedCount,
    RestartTracker,
    RetryPolicy,
    Supervision,
)
from ._state import BusState
from ._stats import ActorStats
from ._worker import Actor, BatchHandler, Handler, Worker

__all__ = ["Actor", "BatchHandler", "Group", "Handler", "Subscription", "key_slot"]

log = get_logger("bus")
_crc32 = zlib.crc32

# At most one ``message.dropped`` line per subscriber per this many seconds of trio's
# clock: under overload a line per drop costs more than the delivery it replaces.
DROP_REPORT_INTERVAL = 1.0
STOP_TIMEOUT = 5.0  # seconds Actor.on_stop may take, shielded from cancellation


class Subscription(Worker):
    """An actor subscribed to a pattern. Made by ``bus.subscribe``; close with :meth:`close`."""

    def __init__(
        self,
        state: BusState,
        *,
        name: str,
        pattern: str,
        handler: Any,
        concurrency: int,
        capacity: int,
        overflow: Overflow,
        retry: RetryPolicy,
        supervision: Supervision,
        group: str | None,
        dedup: DedupWindow | None,
        batch: int | None,
        skip_origin: str | None,
        middleware: Sequence[Any] = (),
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"capacity must be an int >= 1, got {capacity!r}")
        log_context: dict[str, Any] = {"subscriber": name}
        if skip_origin is not None:
            log_context["bridge"] = skip_origin
        super().__init__(
            state, name=name, handler=handler, retry=retry, dedup=dedup, batch=batch,
            log_context=log_context, middleware=middleware,
        )
        self.pattern = pattern
        self.group = group
        self.supervision = supervision
        self.skip_origin = skip_origin
        self.lanes = [Lane(self, i, capacity, overflow) for i in range(concurrency)]
        self._rr = itertools.cycle(self.lanes).__next__
        self._closed = False
        self._started = False
        self._stopped = trio.Event()
        self.dropped = self.restarts = self.rejected = 0
        self.careful = overflow is Overflow.ERROR
        self._drop_report = RateLimitedCount(DROP_REPORT_INTERVAL)
        # What the routing table calls: the lane itself when there is nothing to choose.
        spread = concurrency > 1 and skip_origin is None
        self.route_offer: Callable[[Envelope[Any]], Lane | None] = (
            self.lanes[0].offer if concurrency == 1 and skip_origin is None
            else self._offer_spread if spread
            else self.offer
        )
        self.spread_lanes: list[Lane] | None = self.lanes if spread else None
        """The lanes a keyed publish may pick by CRC-32 itself, when routing this
        subscription is exactly that (``_offer_spread``): publish inlines it."""

    # -- routing --------------------------------------------------------------------

    def select(self, env: Envelope[Any], spread: int = 1) -> Lane | None:
        """The lane for *env*: by key hash if it has a key, else round-robin; None to skip.

        *spread* is the number of members of this subscriber's group (see :func:`key_slot`).
        """
        if self.skip_origin is not None and env.headers.get(H_ORIGIN) == self.skip_origin:
            return None
        if env.key is not None:
            return self.lanes[key_slot(env.key, len(self.lanes), spread)]
        return self._rr()

    def offer(self, env: Envelope[Any]) -> Lane | None:
        """Offer *env* to its lane; the lane if it is full under ``block``, else None."""
        lane = self.select(env)
        return None if lane is None else lane.offer(env)

    def _offer_spread(self, env: Envelope[Any]) -> Lane | None:
        """:meth:`offer` for several lanes and nothing to skip (the routing table calls
        this), with :func:`key_slot` and the append inlined. A key's lane is hashed
        each time, with no memo: the same cost for ten keys or ten million (a memo of
        4,096 keys, emptied when full, made every key past that a miss: 0.74x)."""
        key = env.key
        if key is None:
            lane = self._rr()
        else:
            lanes = self.lanes
            lane = lanes[_crc32(key.encode()) % len(lanes)]  # key_slot(key, n), inlined
        items = lane.items
        # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
        if len(items) < lane.limit:
            items.append(env)
            if lane.getter_parked:
                lane.wake_getter()
            return None
        return lane.offer(env)

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving: leave the routing table; queued messages are still handled."""
        if not self._closed:
            self._closed = True
            self.bus_state.unsubscribe(self)
            for lane in self.lanes:
                lane.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self) -> None:
        """The supervisor: run every lane; restart them all after a crash, up to a limit.

        ``Actor.on_stop`` runs on every way out once ``on_start`` ran: normal close,
        giving up, cancellation, or an error escaping a handler (shielded, at most
        ``STOP_TIMEOUT`` seconds). Its own error surfaces on a normal close and is logged
        otherwise.
        """
        try:
            await self._supervise()
        except BaseException:
            await self._stop(quiet=True)
            raise
        else:
            await self._stop(quiet=False)
        finally:
            self._stopped.set()
            log.debug(
                "actor.stop", **self.log_context, delivered=self.delivered,
                dead_lettered=self.dead_lettered, queued=sum(len(ln.items) for ln in self.lanes),
            )

    @property
    def stopped(self) -> bool:
        """True once the actor has stopped for good (after :meth:`close`, or the bus's)."""
        return self._stopped.is_set()

    async def wait_closed(self) -> None:
        """Wait until the actor stopped (after :meth:`close`, once its mailbox is empty)."""
        await self._stopped.wait()

    async def _stop(self, *, quiet: bool) -> None:
        if self._actor is None or not self._started:
            return
        with trio.move_on_after(STOP_TIMEOUT, shield=True) as scope:
            try:
                await self._actor.on_stop()
            except Exception as exc:
                if not quiet:
                    raise
                log.error("actor.on_stop_failed", **self.log_context, error=repr(exc))
        if scope.cancelled_caught:
            log.error("actor.on_stop_timeout", **self.log_context, timeout=STOP_TIMEOUT)

    async def _supervise(self) -> None:
        tracker = RestartTracker(self.supervision)
        while True:
            try:
                if self._actor is not None:
                    self._started = True
                    await self._actor.on_start()
                async with trio.open_nursery() as nursery:
                    for lane in self.lanes:
                        nursery.start_soon(self._work, lane)
            except Exception as exc:
                restart = tracker.record(trio.current_time())
                if restart is None:
                    log.error(
                        "actor.gave_up", **self.log_context, **self._crash_context(),
                        error=repr(exc),
                    )
                    raise SupervisorGaveUp(
                        f"actor {self.name!r} crashed {self.supervision.max_restarts + 1} times "
                        f"within {self.supervision.window}s and was not restarted again; "
                        f"last error: {exc!r}"
                    ) from exc
                self.restarts = tracker.total
                delay = self.supervision.delay(restart)
                log.warning(
                    "actor.restart", **self.log_context, **self._crash_context(),
                    restart=restart, delay=delay, error=repr(exc),
                )
                await trio.sleep(delay)
                continue
            return

    # -- observability --------------------------------------------------------------

    def note_dropped(self, policy: Overflow, env: Envelope[Any]) -> None:
        """Count a message dropped by an overflow policy; log a rate-limited summary."""
        self.dropped += 1
        count = self._drop_report.note(trio.current_time())
        if count:
            self._log_dropped(count, policy.value, env)

    def flush_dropped(self) -> None:
        """Log the drops not yet reported (the lanes call this when they close)."""
        count = self._drop_report.flush()
        if count:
            self._log_dropped(count, None, None)

    def _log_dropped(self, count: int, policy: str | None, env: Envelope[Any] | None) -> None:
        log.warning(
            "message.dropped", **self.log_context, dropped=count, total=self.dropped,
            policy=policy or self.lanes[0].overflow.value,
            id=env.id if env is not None else None,  # the last one dropped
            topic=env.topic if env is not None else None,
        )

    def stats(self) -> ActorStats:
        return ActorStats(
            pattern=self.pattern,
            group=self.group,
            delivered=self.delivered,
            failed=self.failed,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            dropped=self.dropped,
            duplicates=self.duplicates,
            rejected=self.rejected,
            restarts=self.restarts,
            mailbox_depth=sum(len(lane.items) for lane in self.lanes),
            handler_seconds_mean=(
                self.handler_sampled_total / self.handler_samples if self.handler_samples else 0.0
            ),
            handler_seconds_max=self.handler_max,
        )

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} to {self.pattern!r}>"
