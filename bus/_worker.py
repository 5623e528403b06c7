"""Handling messages: a subscription's workers, retries, dead letters and batches.

:class:`Worker` is the part of a :class:`~bus.Subscription` that takes messages off a
lane and calls the handler: the loop each lane's task runs (:meth:`Worker._work`), its
bursts of sync calls, the retries with backoff on the same lane, the dead letter after
the last attempt, and the batches a bridge's export receives. It owns the handling
counters (``delivered``, ``failed``, ``retried``, ``dead_lettered``, ``duplicates``,
handler timings). It knows its mailbox only through the lane's public side (``items``,
``putters_waiting``, ``low_water``, ``admit``, ``wait``: the worker's half of the
fast-path protocol in ``bus/_mailbox.py``), and the bus only through its
:class:`~bus._state.BusState`. Routing, lifetime and supervision are the subscription's
(``bus/_actor.py``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ._envelope import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_IDEMPOTENCY_KEY,
    H_ORIGINAL_TOPIC,
    Envelope,
)
from ._errors import ConfigurationError, Rejected
from ._log import get_logger
from ._mailbox import Lane
from ._middleware import wrap_handler
from ._policy import DedupWindow, RetryPolicy
from ._state import BusState
from ._trace import CURRENT, TRACEPARENT, Handling

if TYPE_CHECKING:
    from ._tiers import Tiers

__all__ = ["Actor", "BatchHandler", "Handler", "Worker"]

log = get_logger("bus")
_replace = msgspec.structs.replace
_perf = time.perf_counter

Handler = Callable[[Envelope[Any]], Awaitable[None] | None]
BatchHandler = Callable[[Sequence[Envelope[Any]]], Awaitable[None] | None]
_FAIRNESS_EVERY = 1024  # deliveries between forced schedule points of a busy worker
_SAMPLE_EVERY = 16  # one handler call in this many is timed for ActorStats


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


class Worker:
    """The handling side of a subscription (see the module docstring)."""

    def __init__(
        self,
        state: BusState,
        *,
        name: str,
        handler: Any,
        retry: RetryPolicy,
        dedup: DedupWindow | None,
        batch: int | None,
        log_context: dict[str, Any],
        middleware: Sequence[Any] = (),
    ) -> None:
        if batch is not None and batch < 1:
            raise ConfigurationError(f"batch must be >= 1 or None, got {batch!r}")
        self.bus_state = state
        self.name = name
        self.retry = retry
        self.dedup = dedup
        self.batch = batch
        self.log_context = log_context
        """Who this is in log lines (a bridge's export subscriber names its bridge too)."""
        self._fn, self._is_async, self._actor = _as_callable(handler)
        if middleware:  # the handle chain, composed once: the handler becomes async
            chain = wrap_handler(
                middleware, self._fn, self._is_async, batch=batch is not None, subscriber=name
            )
            if chain is not None:
                self._fn, self._is_async = chain, True
        # live counters, copied into ActorStats by stats()
        self.delivered = self.failed = self.retried = self.dead_lettered = 0
        self.duplicates = 0
        self.handler_samples = 0
        self.handler_sampled_total = self.handler_max = 0.0
        self._in_hand: Envelope[Any] | None = None  # what the last crash put back
        self.tiers: Tiers | None = None
        """Retry tiers (``subscribe(retry_tiers=)``, bus/_tiers.py): where a message goes
        instead of the dead-letter topic once the in-place retries are spent."""

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
        state = self.bus_state
        # This task's context was copied from whoever subscribed (maybe a handler, or
        # inside an application's span): start from no trace context of its own.
        CURRENT.set(None)
        if state.tracing is not None:
            state.tracing.detach_all()
        n = 0
        while True:
            if not items and not await lane.wait():
                return
            if batch is not None:
                await self._work_batch(lane, batch)
                continue
            if state.traced:
                # the bus has seen trace context: each message is handled inside its own
                # (bus/_trace.py); read once per burst otherwise
                if fast and state.tracing is None:
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
        tracing = self.bus_state.tracing
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
            tracing = self.bus_state.tracing
            if self.retry.gives_up_after(local_attempt):
                if tracing is not None:
                    tracing.failed(exc, final=True)
                if self.tiers is not None:
                    await self.tiers.escalate(self, env, exc, local_attempt)
                    return
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

    async def handle_from_tier(self, env: Envelope[Any]) -> None:
        """One attempt at a message back from a retry tier (its tier consumer calls this);
        if it fails, the message goes on to the next tier (bus/_tiers.py)."""
        try:
            await self._invoke(env)
        except Exception as exc:
            self.failed += 1
            assert self.tiers is not None
            await self.tiers.escalate(self, env, exc, env.attempt)
        else:
            self.delivered += 1
            if env.delivery is not None:
                env.delivery.release()

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
                # what is tried again says so, as a single message's retry does
                pending = [_replace(env, attempt=env.attempt + 1) for env in pending]
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
        if env.topic != self.bus_state.dead_letter_topic or H_ORIGINAL_TOPIC not in headers:
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
