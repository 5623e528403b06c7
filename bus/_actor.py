"""Actors: a handler behind bounded mailboxes, with retries, dead letters and a supervisor.

A :class:`Subscription` owns ``concurrency`` lanes (each a mailbox and a worker task).
Messages with the same key always go to the same lane, so per-key order holds; messages
without a key are spread round-robin. A failing handler is retried with backoff on the
same lane (so later messages of that lane — its key's, and any other key hashed to the
same lane — wait behind it), then dead-lettered. Keys are hashed with CRC-32, so a key
lands on the same lane in every process. A crash
outside the handler (``on_start``, a dead-letter publish that fails...) is caught by the
supervisor, which restarts all lanes (one-for-all) with backoff, up to a limit; the
message in hand goes back to the front of its mailbox, so nothing is lost.

A :class:`Group` spreads messages over its member subscriptions (competing consumers).
Neither knows how topics are matched (``_routing``) or how the bus is closed (``_bus``).
"""

from __future__ import annotations

import inspect
import itertools
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ._bridge import Rejected
from ._envelope import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_IDEMPOTENCY_KEY,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    Envelope,
)
from ._errors import ConfigurationError, SupervisorGaveUp
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
from ._stats import ActorStats
from ._trace import CURRENT, TRACEPARENT, Handling

if TYPE_CHECKING:
    from ._bus import BusState

__all__ = ["Actor", "Group", "Handler", "Subscription"]

log = get_logger("bus")
_replace = msgspec.structs.replace
_perf = time.perf_counter
_crc32 = zlib.crc32

Handler = Callable[[Envelope[Any]], Awaitable[None] | None]
BatchHandler = Callable[[Sequence[Envelope[Any]]], Awaitable[None] | None]
_FAIRNESS_EVERY = 1024  # deliveries between forced schedule points of a busy worker
_SAMPLE_EVERY = 16  # one handler call in this many is timed for ActorStats
# At most one ``message.dropped`` line per subscriber per this many seconds of trio's
# clock: under overload a line per drop costs more than the delivery it replaces.
DROP_REPORT_INTERVAL = 1.0
STOP_TIMEOUT = 5.0  # seconds Actor.on_stop may take, shielded from cancellation


def key_slot(key: str, n: int, spread: int = 1) -> int:
    """The slot (lane or group member) of *key* among *n*: stable across processes.

    A group picks a member with ``spread=1`` and the member then picks its lane with
    ``spread=<members>``: the lane comes from the hash's higher digits (``h // members``),
    so the keys of one member still spread over all its lanes (``h % members`` and
    ``h % lanes`` alone would be correlated: 2 members of 2 lanes would use 1 lane each).
    """
    return (_crc32(key.encode()) // spread) % n


class Actor:
    """Base class for stateful actors: override :meth:`handle`, optionally the hooks.

    ``on_start`` runs before the first message and again after each supervisor restart;
    ``on_stop`` runs once when the actor stops, whichever way: a normal close, its
    supervisor giving up, or cancellation (shielded, for at most 5 seconds).
    """

    async def handle(self, env: Envelope[Any]) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must define async handle(env)")

    async def on_start(self) -> None:
        """Called when the actor starts and after every restart."""

    async def on_stop(self) -> None:
        """Called once when the actor stops, on every way out (see the class docstring)."""


def _as_callable(handler: Any) -> tuple[Callable[..., Any], bool, Actor | None]:
    actor = handler if isinstance(handler, Actor) else None
    fn = handler.handle if actor is not None else handler
    if not callable(fn):
        raise ConfigurationError(
            f"handler must be a callable taking an Envelope or an Actor, got {handler!r}"
        )
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )
    return fn, is_async, actor


class Subscription:
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
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"capacity must be an int >= 1, got {capacity!r}")
        if batch is not None and batch < 1:
            raise ConfigurationError(f"batch must be >= 1 or None, got {batch!r}")
        self.bus_state = state
        self.name = name
        self.pattern = pattern
        self.group = group
        self.retry = retry
        self.supervision = supervision
        self.dedup = dedup
        self.batch = batch
        self.skip_origin = skip_origin
        self._fn, self._is_async, self._actor = _as_callable(handler)
        self.lanes = [Lane(self, i, capacity, overflow) for i in range(concurrency)]
        self._rr = itertools.cycle(self.lanes).__next__
        self._closed = False
        self._started = False
        self._stopped = trio.Event()
        # live counters, copied into ActorStats by stats()
        self.delivered = self.failed = self.retried = self.dead_lettered = 0
        self.dropped = self.duplicates = self.restarts = self.rejected = 0
        self.careful = overflow is Overflow.ERROR
        self.handler_samples = 0
        self.handler_sampled_total = self.handler_max = 0.0
        self._drop_report = RateLimitedCount(DROP_REPORT_INTERVAL)
        # What the routing table calls: the lane itself when there is nothing to choose.
        self.route_offer: Callable[[Envelope[Any]], Lane | None] = (
            self.lanes[0].offer if concurrency == 1 and skip_origin is None
            else self._offer_spread if skip_origin is None
            else self.offer
        )
        self._in_hand: Envelope[Any] | None = None  # what the last crash put back
        # who this is in log lines: a bridge's export subscriber names its bridge too
        self.log_context: dict[str, Any] = {"subscriber": name}
        if skip_origin is not None:
            self.log_context["bridge"] = skip_origin

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

    # -- delivery -------------------------------------------------------------------

    async def _work(self, lane: Lane) -> None:
        """One lane's worker: drain the mailbox, awaiting only when it is empty.

        The success path is inlined (no coroutine per message); failures go to
        :meth:`_recover`. Sync handlers run in bursts whose successes are counted in a
        local and added to ``self.delivered`` before the next await, which is the only
        time another task can read the stats. One call per burst, or one in
        ``_SAMPLE_EVERY`` otherwise, is timed.
        """
        lane.worker = trio.lowlevel.current_task()
        items = lane.items
        popleft = items.popleft
        low_water = lane.low_water
        fn, is_async, dedup, batch = self._fn, self._is_async, self.dedup, self.batch
        sample_mask, fair_mask = _SAMPLE_EVERY - 1, _FAIRNESS_EVERY - 1
        fast = not is_async and dedup is None
        bus = self.bus_state.bus
        # This task's context was copied from whoever subscribed (maybe a handler, or
        # inside an application's span): start from no trace context of its own.
        CURRENT.set(None)
        if bus.tracing is not None:
            bus.tracing.detach_all()
        n = 0
        while True:
            if not items and not await lane.wait():
                return
            if batch is not None:
                await self._work_batch(lane, batch)
                continue
            if bus._traced:
                # the bus has seen trace context: each message is handled inside its own
                # (bus/_trace.py); read once per burst otherwise
                if fast and bus.tracing is None:
                    await self._burst_traced(lane, fair_mask)
                    continue
                env = popleft()
                if lane.putters_waiting and len(items) <= low_water:
                    lane.admit()
                try:
                    await self._handle_traced(env, dedup)
                except BaseException:
                    self._put_back(items, env)
                    raise
                n += 1
                if not n & fair_mask:
                    await trio.lowlevel.checkpoint()
                continue
            if fast:
                # A sync handler without dedup: a tight burst of at most _FAIRNESS_EVERY
                # messages, counted locally; the first one goes through _call, timed.
                env = popleft()
                try:
                    await self._call(env, timed=True)
                except BaseException:
                    self._put_back(items, env)
                    raise
                # The rest of the burst: as many as are queued now (at most
                # _FAIRNESS_EVERY - 1). No other task runs until the burst ends, so the
                # deque cannot shrink meanwhile (a handler's own publish may append, or
                # drop one to append one), and blocked publishers are admitted after it:
                # they could not run before the next await anyway.
                done = 0
                for done in range(1, min(len(items), fair_mask) + 1):
                    env = popleft()
                    try:
                        fn(env)
                    except Exception as exc:
                        self.delivered += done - 1
                        if lane.putters_waiting and len(items) <= low_water:
                            lane.admit()  # the retry awaits: room made goes to them now
                        try:
                            await self._recover(env, exc)  # counts its own success
                        except BaseException:
                            self._put_back(items, env)
                            raise
                        done = 0  # others ran while it retried: start a new burst
                        break
                    except BaseException:
                        self.delivered += done - 1
                        self._put_back(items, env)
                        raise
                    if env.delivery is not None:
                        env.delivery.release()
                self.delivered += done  # the first was counted by _call
                if lane.putters_waiting and len(items) <= low_water:
                    lane.admit()
                if items:
                    await trio.lowlevel.checkpoint()
                continue
            # async handlers, and sync ones with a dedup window: one message at a time
            env = popleft()
            if lane.putters_waiting and len(items) <= low_water:
                lane.admit()
            try:
                if dedup is not None and self._is_duplicate(dedup, env):
                    if env.delivery is not None:
                        env.delivery.release()
                    continue
                n += 1
                if is_async and n & sample_mask:
                    try:
                        await fn(env)
                    except Exception as exc:
                        await self._recover(env, exc)
                    else:
                        self.delivered += 1
                        if env.delivery is not None:
                            env.delivery.release()
                else:
                    await self._call(env, timed=not n & sample_mask)
                if dedup is not None:
                    dedup.add(self._dedup_key(env), trio.current_time())
            except BaseException:
                self._put_back(items, env)  # not lost: a restart or the drain report sees it
                raise
            if not n & fair_mask:
                await trio.lowlevel.checkpoint()

    async def _burst_traced(self, lane: Lane, fair_mask: int) -> None:
        """The sync fast path's burst on a bus that has seen trace context: the same, with
        the message in hand kept in a :class:`~bus._trace.Handling` that is current for
        the whole burst (one attribute store per message; see bus/_trace.py)."""
        items = lane.items
        popleft, fn = items.popleft, self._fn
        handling = Handling()
        token = CURRENT.set(handling)
        done = 0
        start = _perf()
        try:
            for _ in range(min(len(items), fair_mask + 1)):
                env = handling.env = popleft()
                try:
                    fn(env)
                except Exception as exc:
                    self.delivered += done
                    done = 0
                    if lane.putters_waiting and len(items) <= lane.low_water:
                        lane.admit()  # the retry awaits: room made goes to them now
                    try:
                        await self._recover(env, exc)  # counts its own success
                    except BaseException:
                        self._put_back(items, env)
                        raise
                    break  # others ran while it retried: start a new burst
                except BaseException:
                    self.delivered += done
                    done = 0
                    self._put_back(items, env)
                    raise
                if not done:
                    self._timed(_perf() - start)
                done += 1
                if env.delivery is not None:
                    env.delivery.release()
        finally:
            handling.env = None
            CURRENT.reset(token)
            self.delivered += done
        if lane.putters_waiting and len(items) <= lane.low_water:
            lane.admit()
        if items:
            await trio.lowlevel.checkpoint()

    async def _handle_traced(self, env: Envelope[Any], dedup: DedupWindow | None) -> None:
        """Handle *env* with its trace context current: a handle span with tracing on,
        else :data:`~bus._trace.CURRENT` set so the handler's publishes inherit it."""
        if dedup is not None and self._is_duplicate(dedup, env):
            if env.delivery is not None:
                env.delivery.release()
            return
        tracing = self.bus_state.bus.tracing
        if tracing is not None:
            with tracing.handle(env, self.name):
                await self._call(env, timed=True)
        elif TRACEPARENT not in env.headers:
            await self._call(env, timed=True)
        else:
            token = CURRENT.set(Handling(env))
            try:
                await self._call(env, timed=True)
            finally:
                CURRENT.reset(token)
        if dedup is not None:
            dedup.add(self._dedup_key(env), trio.current_time())

    def _put_back(self, items: Any, env: Envelope[Any]) -> None:
        """A worker stopped holding *env* (a crash or a cancel): back to the front of its
        mailbox, and remembered for the supervisor's log line."""
        items.appendleft(env)
        self._in_hand = env

    def _crash_context(self) -> dict[str, Any]:
        """Log fields of the message a crashed worker held, if any."""
        env, self._in_hand = self._in_hand, None
        return {} if env is None else {"id": env.id, "topic": env.topic}

    async def _invoke(self, arg: Any) -> Any:
        """Call the handler with *arg* (an envelope, or a list of them for a batch)."""
        if self._is_async:
            return await self._fn(arg)
        return self._fn(arg)

    async def _call(self, env: Envelope[Any], *, timed: bool) -> None:
        """Call the handler once (async handlers, and the sampled sync calls)."""
        start = _perf() if timed else 0.0
        try:
            await self._invoke(env)
        except Exception as exc:
            await self._recover(env, exc)
        else:
            self.delivered += 1
            if env.delivery is not None:
                env.delivery.release()
            if timed:
                self._timed(_perf() - start)

    def _timed(self, elapsed: float) -> None:
        self.handler_samples += 1
        self.handler_sampled_total += elapsed
        if elapsed > self.handler_max:
            self.handler_max = elapsed

    @staticmethod
    def _dedup_key(env: Envelope[Any]) -> str:
        return env.headers.get(H_IDEMPOTENCY_KEY) or env.id

    def _is_duplicate(self, dedup: DedupWindow, env: Envelope[Any]) -> bool:
        if dedup.seen(self._dedup_key(env), trio.current_time()):
            self.duplicates += 1
            return True
        return False

    async def _recover(self, env: Envelope[Any], exc: Exception) -> None:
        """Retry a failed message with backoff on this lane, then dead-letter it."""
        local_attempt = 1
        while True:
            self.failed += 1
            tracing = self.bus_state.bus.tracing
            if self.retry.gives_up_after(local_attempt):
                if tracing is not None:
                    tracing.failed(exc, final=True)
                await self._dead_letter(env, exc, local_attempt)
                return
            self.retried += 1
            if tracing is not None:
                tracing.failed(exc)
            delay = self.retry.delay(local_attempt, self.bus_state.random.random)
            log.info(
                "handler.retry", **self.log_context, id=env.id, topic=env.topic, key=env.key,
                attempt=env.attempt, delay=delay, error=repr(exc),
            )
            await trio.sleep(delay)
            local_attempt += 1
            env = _replace(env, attempt=env.attempt + 1)
            try:
                await self._invoke(env)
            except Exception as again:
                exc = again
            else:
                self.delivered += 1
                if env.delivery is not None:
                    env.delivery.release()
                return

    async def _work_batch(self, lane: Lane, size: int) -> None:
        """Hand the handler up to *size* queued messages at once (bridges export this way).

        The handler returns None (all handled) or one result per envelope: None (handled),
        a :class:`~bus.abc.Rejected` (dead-lettered at once), any other exception (retried
        alone with backoff). Raising counts as a transient failure of the whole batch.
        """
        items = lane.items
        pending = [items.popleft() for _ in range(min(size, len(items)))]
        if lane.putters_waiting and len(items) <= lane.low_water:
            lane.admit()
        local_attempt = 1
        try:
            while True:
                start = _perf()
                try:
                    results = await self._invoke(pending)
                except Exception as exc:
                    results = [exc] * len(pending)
                else:
                    self._timed(_perf() - start)
                    if results is None:
                        results = [None] * len(pending)
                    elif len(results) != len(pending):
                        raise TypeError(
                            f"batch handler of {self.name!r} returned {len(results)} results "
                            f"for {len(pending)} envelopes; return None or one per envelope"
                        )
                retry: list[tuple[Envelope[Any], BaseException]] = []
                for env, result in zip(list(pending), results, strict=True):
                    if result is None:
                        self.delivered += 1
                        if env.delivery is not None:
                            env.delivery.release()
                    elif isinstance(result, Rejected):
                        await self._dead_letter(env, result, local_attempt)
                    elif isinstance(result, BaseException):
                        retry.append((env, result))
                        continue
                    else:
                        raise TypeError(
                            f"batch handler of {self.name!r} returned {result!r} for an "
                            f"envelope; expected None or an exception"
                        )
                    pending.remove(env)
                if not retry:
                    return
                self.failed += 1
                if self.retry.gives_up_after(local_attempt):
                    for env, error in retry:
                        await self._dead_letter(env, error, local_attempt)
                        pending.remove(env)
                    return
                self.retried += 1
                delay = self.retry.delay(local_attempt, self.bus_state.random.random)
                log.info(
                    "batch.retry", **self.log_context, id=retry[0][0].id,
                    topic=retry[0][0].topic, messages=len(retry), delay=delay,
                    attempt=local_attempt, error=repr(retry[0][1]),
                )
                await trio.sleep(delay)
                local_attempt += 1
        except BaseException:
            # cancelled (or crashed) mid-batch: what is not settled goes back, nothing is lost
            items.extendleft(reversed(pending))
            self._in_hand = pending[0] if pending else None
            raise

    async def _dead_letter(self, env: Envelope[Any], exc: BaseException, attempts: int) -> None:
        self.dead_lettered += 1
        headers = dict(env.headers)
        headers[H_ERROR] = str(exc) or repr(exc)
        headers[H_ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        if env.topic != self.bus_state.bus.dead_letter_topic or H_ORIGINAL_TOPIC not in headers:
            # (a dead letter failing in turn keeps the topic of its message, for the log)
            headers[H_ORIGINAL_TOPIC] = env.topic
        headers[H_FAILED_SUBSCRIBER] = self.name
        headers[H_ATTEMPTS] = str(attempts)
        log.error(
            "message.dead_lettered", **self.log_context, id=env.id, topic=env.topic, key=env.key,
            attempts=attempts, error=repr(exc),
        )
        outcome = await self.bus_state.dead_letter(_replace(env, headers=headers))
        if env.delivery is not None:
            env.delivery.fail(self.name, outcome, headers[H_ERROR])

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


class Group:
    """Competing consumers: each message goes to one member; each group gets every message.

    A keyed message always goes to the same member (while membership is unchanged), so
    per-key order holds across the group too. A member with ``concurrency=N`` has N lanes
    and picks one by the key's hash as well (:func:`key_slot`), so a key stays on one
    lane of one member and keeps its order; keyless messages go round-robin to a member
    and round-robin among its lanes.
    """

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.pattern = pattern
        self.members: list[Subscription] = []
        self._next = 0

    def select(self, env: Envelope[Any]) -> Lane | None:
        members = self.members
        if not members:
            return None
        if env.key is not None:
            member = members[key_slot(env.key, len(members))]
            return member.select(env, len(members))
        self._next = (self._next + 1) % len(members)
        return members[self._next].select(env)

    def route_offer(self, env: Envelope[Any]) -> Lane | None:
        lane = self.select(env)
        return None if lane is None else lane.offer(env)

    @property
    def careful(self) -> bool:
        return any(member.careful for member in self.members)
