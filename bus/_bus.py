"""The bus: the class applications hold, and ``open_bus``, which owns its lifetime.

``open_bus()`` owns one trio nursery; every actor's supervisor and every bridge's
ingress is a task in it. :class:`Bus` is the front of the parts that do the work, each
in its own module: the declared topics (``_topics``), the routing table and the general
route (``_route``), the subscribers (``_subscribers``; an actor is ``_actor`` + its
``_worker``), bridges (``_attach``), draining (``_drain``), and what they share
(``_state``); request/reply (``_request``) is a base class of ``Bus``, for speed. The
publish hot paths live here: publishing is synchronous until a mailbox is full: the
envelope is built, checked against the topic's type, appended to each matching mailbox,
and ``publish`` returns without a schedule point (the fast-path protocol in
``bus/_mailbox.py``). Under the ``block`` policy a full mailbox makes ``publish`` wait,
which is how backpressure reaches the publisher.

Exception policy: an actor that gives up (``SupervisorGaveUp``) or any other error in a
bus task cancels the bus and surfaces from ``open_bus``. trio groups such errors in an
``ExceptionGroup``; when exactly one error is inside, ``open_bus`` raises that error
itself, so ``except PayloadTypeError`` works around a bus block.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

import trio

from ._actor import Subscription
from ._attach import EXPORT_RETRY, Attachment
from ._attach import attach as _attach
from ._bridge import Bridge
from ._codec import Codec
from ._delay import DELAYED, Delayed, due_time
from ._done import Delivery
from ._drain import drain
from ._envelope import Envelope, IdGenerator, check_headers, describe
from ._errors import BusClosedError, ConfigurationError, PayloadTypeError
from ._log import get_logger
from ._middleware import check_middleware
from ._policy import DedupWindow, Overflow, Retention, RetryPolicy, Supervision
from ._replay import LogReader, wake_readers
from ._request import RequestReply
from ._route import Router, confirmed
from ._routing import validate_topic
from ._state import BusState
from ._stats import BusStats
from ._subscribers import Defaults, Subscribers
from ._tiers import Tiers, check_tiers
from ._topics import Topics
from ._trace import TRACEPARENT, make_tracing

__all__ = ["Bus", "Topic", "open_bus"]

T = TypeVar("T")
R = TypeVar("R")
log = get_logger("bus")

_time = time.time
_crc32 = zlib.crc32
DEFAULT_DEAD_LETTER_TOPIC = "bus.dead_letter"
_DEAD_LETTER_RETENTION = Retention(max_count=10_000)


class Topic(Generic[T]):
    """A typed handle on a declared topic: ``await orders.publish(Order(...))``."""

    __slots__ = ("_bus", "name", "type")
    _bus: Bus

    def __init__(self, bus: Bus, name: str, tp: type[T]) -> None:
        self._bus, self.name, self.type = bus, name, tp

    async def publish(
        self, payload: T, delay: float | None = None, not_before: float | None = None, *,
        key: str | None = None, headers: dict[str, str] | None = None,
    ) -> Envelope[T]:
        # delay, not_before: keywords by intent, positional for speed (see Bus.publish)
        return await self._bus.publish(self.name, payload, delay, not_before, key=key,
                                       headers=headers)

    async def publish_batch(
        self, payloads: Iterable[T], *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[Envelope[T]]:
        return await self._bus.publish_batch(self.name, payloads, key=key, headers=headers)

    def publish_nowait(
        self, payload: T, *, key: str | None = None, headers: dict[str, str] | None = None
    ) -> Envelope[T]:
        return self._bus.publish_nowait(self.name, payload, key=key, headers=headers)

    @property
    def retention(self) -> Retention | None:
        """The topic's retention policy now (None: it keeps no log)."""
        spec = self._bus._topics.specs.get(self.name)  # the same module's Bus
        return None if spec is None or spec.log is None else spec.log.policy

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, {getattr(self.type, '__qualname__', self.type)})"


class Bus(RequestReply):
    """An in-process event bus. Create it with ``async with open_bus() as bus``."""

    def __init__(
        self, *, name: str = "trio-bus", strict: bool = True, capacity: int = 1024,
        overflow: Overflow | str = Overflow.BLOCK, retry: RetryPolicy | None = None,
        supervision: Supervision | None = None,
        dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC, seed: int | None = None,
        tracing: Any = False,
    ) -> None:
        self.name = name
        self.middleware: tuple[Any, ...] = ()
        """The bus-wide middleware (``open_bus(middleware=...)``), outermost first."""
        self.tracing = make_tracing(tracing)
        """OpenTelemetry spans (``tracing=True`` or a ``TracerProvider``), else None."""
        self.seed = seed
        self.strict = strict
        self.default_capacity = capacity
        self.default_overflow = Overflow.parse(overflow)
        self.default_retry = retry or RetryPolicy()
        self.default_supervision = supervision or Supervision()
        self.dead_letter_topic = validate_topic(dead_letter_topic)
        self.undelivered: Mapping[str, int] = MappingProxyType({})
        """After the bus closed: messages left undelivered per subscriber (empty if none)."""
        state = self._state = BusState(
            name, dead_letter_topic=dead_letter_topic, seed=seed, tracing=self.tracing
        )
        self._topics = Topics(strict=strict)
        self._specs = self._topics.specs  # publish's lookup, one attribute nearer
        self._router = Router(self._topics, state)
        self._subscribers = Subscribers(state, self._router, self._topics, Defaults(
            self.default_capacity, self.default_overflow, self.default_retry,
            self.default_supervision,
        ))
        self._attachments: dict[str, Attachment] = {}
        self._nursery: trio.Nursery | None = None
        self._delayed: Delayed | None = None  # made on the first delayed publish
        self._new_id = IdGenerator()
        self._next_int = self._new_id.next_int
        self.topic(dead_letter_topic, object, retain=_DEAD_LETTER_RETENTION)
        # This bus's private reply topic. Local replies go straight to the waiting
        # request; the route is for replies coming back through a bridge. Wildcard
        # patterns never match it (_routing), and topics()/stats() leave it out.
        self.reply_topic = f"bus.reply.{self._new_id()}"
        self.topic(self.reply_topic, object)
        self._init_requests()
        self._router.add(self.reply_topic, self._replies)
        state.connect(
            route=self._router.route, request_failed=self._request_failed,
            unsubscribe=self._subscribers.remove,
        )

    # -- topics -----------------------------------------------------------------------

    @overload
    def topic(
        self, name: str, type: type[T], *, retain: Retention | None = None
    ) -> Topic[T]: ...
    @overload
    def topic(
        self, name: str, type: Any = object, *, retain: Retention | None = None
    ) -> Topic[Any]: ...

    def topic(
        self, name: str, type: Any = object, *, retain: Retention | None = None
    ) -> Topic[Any]:
        """Declare topic *name* carrying payloads of *type*; idempotent for the same type.

        *retain* keeps a bounded log for replay (``subscribe(..., replay=True)``).
        Redeclaring with the same type (and the same *retain*, or ``retain=None`` for
        "whatever it has") returns a handle; another type or another :class:`Retention`
        raises :class:`ConfigurationError`. A topic declared without retention may gain
        one later; its log starts then.
        """
        self._topics.declare(name, type, retain)
        return Topic(self, name, type)

    def declare_pattern(self, pattern: str, codec: Codec[Any]) -> None:
        """Declare, when first used, each topic matching *pattern* with *codec*: topics
        nobody declared that a bridge imports (even on a strict bus), or that a service
        forwards as they come (``bus bridge`` declares its routes this way). The first
        pattern added that matches a topic wins; a topic declared by name keeps its type.
        """
        self._topics.declare_pattern(pattern, codec)

    def declared(self, topic: str) -> Topic[Any] | None:
        """A handle on *topic* if it is declared now (by name, or on first use), else
        None. Unlike :meth:`topic`, it never declares, and takes no type."""
        spec = self._topics.specs.get(topic)
        return None if spec is None else Topic(self, topic, spec.codec.type)

    def __repr__(self) -> str:
        state = "closed" if self._state.closed else "open"
        topics, bridges = len(self._topics.names()), len(self._attachments)
        return (
            f"<Bus {self.name!r} {state}: {topics} topic{'s' * (topics != 1)}, "
            f"{bridges} bridge{'s' * (bridges != 1)} attached>"
        )

    def topics(self) -> list[str]:
        """Names of the declared topics (not the private reply topics)."""
        return self._topics.names()

    def codec(self, topic: str) -> Codec[Any]:
        """The codec of a declared topic (bridges encode and decode with it)."""
        return self._topics.spec(topic).codec

    # -- publishing -------------------------------------------------------------------

    # delay and not_before are keywords by intent, and positional-or-keyword only for
    # speed: CPython fills each missing keyword-only default with a dict lookup per call
    # (two cost 1->1 ~4 %, A/B in docs/performance.md "Delayed publish"); pass them by name
    async def publish(
        self, topic: str, payload: Any, delay: float | None = None,
        not_before: float | None = None, *, key: str | None = None,
        headers: dict[str, str] | None = None, confirm: bool = False,
    ) -> Envelope[Any]:
        """Publish *payload* to *topic*; return once every matching mailbox accepted it.

        With ``delay=`` (seconds, >= 0) or ``not_before=`` (a ``trio.current_time()``
        value), the message is checked and its envelope made now, and it is routed once
        trio's clock reaches that time (``bus/_delay.py``: held in memory, not waited for
        by a drain, counted in ``bus.undelivered`` if the bus closes first); ``publish``
        returns at once, or with ``confirm=True`` once it is done. ``delay=0`` is now.

        With ``confirm=True``, return only once the message is *done*: every subscriber
        that received it handled it, and every bridge exporting it got its broker's
        confirmation; :class:`NotDeliveredError` if a subscriber dead-lettered or
        dropped it instead.

        Delivery is all-or-nothing: if a mailbox with ``overflow="error"`` is full,
        :class:`MailboxFullError` is raised and no subscriber got the message. Also raises
        :class:`PayloadTypeError` if the payload is not the topic's type,
        :class:`UnknownTopicError` for an undeclared topic on a strict bus, and
        :class:`BusClosedError` after the bus closed. Not a schedule point unless it waits.
        """
        # The publish prelude, copied in publish, publish_nowait and (per batch)
        # publish_batch: one shared function cost 1->1 12 % (docs/performance.md "Fast paths")
        state = self._state
        if state.closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._specs.get(topic)
        if spec is None:
            spec = self._topics.spec(topic)
        if type(payload) is not spec.exact:
            spec.codec.check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is None:
            headers = {} if not state.traced else state.publish_headers(topic, None)
        else:
            headers = check_headers(headers)
            if state.traced or TRACEPARENT in headers:
                headers = state.publish_headers(topic, headers)
        if (delay or not_before) is not None:  # the one test a publish without them pays
            return await self._publish_later(
                topic, payload, key, headers, confirm, delay, not_before
            )
        # The hot path: the topic's one target is one plain mailbox (spec.lane is set only
        # then, once routes are memoised, and never for a target that may refuse).
        # Positional fields (Envelope's order); the id as its integer (rendered on read).
        lane = spec.lane
        if lane is not None and not confirm:
            env: Envelope[Any] = Envelope(
                self._next_int(), topic, payload, key, headers, _time(), 1, self.name
            )
            spec.published += 1
            # Lane.offer, inlined
            # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
            items = lane.items
            if len(items) < lane.limit:
                items.append(env)
                if lane.getter_parked:
                    lane.wake_getter()
            elif (full := lane.offer(env)) is not None:  # full: the overflow policy
                await full.put(env)
            return env
        offers = spec.offers
        if offers is None:
            offers = self._router.memoise(spec)
        if spec.careful or confirm:
            env = Envelope(
                self._next_int(), topic, payload, key, headers, _time(), 1, self.name,
                Delivery() if confirm else None,
            )
            await self._router.deliver(spec, env)
            if confirm:
                await confirmed(env)
            return env
        # the steps of _deliver for targets that cannot refuse, inlined
        env = Envelope(self._next_int(), topic, payload, key, headers, _time(), 1, self.name)
        spec.published += 1
        if spec.lanes is not None:
            for lane in spec.lanes:  # the same, for each of several plain subscribers
                items = lane.items
                # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
                if len(items) < lane.limit:
                    items.append(env)
                    if lane.getter_parked:
                        lane.wake_getter()
                elif (full := lane.offer(env)) is not None:
                    await full.put(env)
            return env
        elif spec.log is not None:
            spec.retain(env)
        elif key is not None and (keyed := spec.keyed) is not None:
            # Subscription._offer_spread for a key, inlined: the key's lane by CRC-32
            # (key_slot), then Lane.offer
            # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
            lane = keyed[_crc32(key.encode()) % len(keyed)]
            items = lane.items
            if len(items) < lane.limit:
                items.append(env)
                if lane.getter_parked:
                    lane.wake_getter()
            elif (full := lane.offer(env)) is not None:
                await full.put(env)
            return env
        for offer in offers:
            lane = offer(env)
            if lane is not None:
                await lane.put(env)
        return env

    # replies to another bus's requests: never through publish hooks (bus/_request.py)
    _publish_plain = publish

    async def _publish_later(
        self, topic: str, payload: Any, key: str | None, headers: dict[str, str],
        confirm: bool, delay: float | None, not_before: float | None,
    ) -> Envelope[Any]:
        """``publish`` with ``delay=`` / ``not_before=`` (``bus/_delay.py``)."""
        due = due_time(delay, not_before, trio.current_time())
        env: Envelope[Any] = Envelope(
            self._next_int(), topic, payload, key, headers, _time(), 1, self.name,
            Delivery() if confirm else None,
        )
        self._hold(due, env)
        if confirm:
            await confirmed(env)
        return env

    def _hold(self, due: float, env: Envelope[Any]) -> None:
        """Keep *env* until trio's clock reaches *due*, then route it (``bus/_delay.py``)."""
        delayed = self._delayed
        if delayed is None:
            assert self._nursery is not None  # not closed: the nursery is open
            delayed = self._delayed = Delayed(self._router.route, self._nursery.start_soon)
        delayed.add(due, env)

    async def publish_batch(
        self, topic: str, payloads: Iterable[Any], *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[Envelope[Any]]:
        """Publish several payloads to *topic*, in order, crossing routing once.

        The same as ``await publish(topic, p, key=key, headers=headers)`` for each
        payload in turn, except that every payload is checked before any is published
        (one of the wrong type raises :class:`PayloadTypeError` and none goes out), the
        envelopes share one publish ``time`` (and the *headers* dict, as ``publish``
        keeps the one it is given), and a mailbox with room for the whole batch takes it
        in one step. Returns the envelopes. Waits only where a ``block`` mailbox is full;
        with an ``overflow="error"`` subscriber each message is all-or-nothing by itself.
        """
        # The publish prelude, copied in publish, publish_nowait and (per batch)
        # publish_batch: one shared function cost 1->1 12 % (docs/performance.md "Fast paths")
        state = self._state
        if state.closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._specs.get(topic)
        if spec is None:
            spec = self._topics.spec(topic)
        batch = list(payloads)
        exact, check = spec.exact, spec.codec.check
        for payload in batch:
            if type(payload) is not exact:
                check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is not None:
            headers = check_headers(headers)
        if state.traced or (headers is not None and TRACEPARENT in headers):
            headers = state.publish_headers(topic, headers, len(batch))
        new, now, source = self._next_int, _time(), self.name
        envs: list[Envelope[Any]] = [
            Envelope(new(), topic, p, key, {} if headers is None else headers, now, 1, source)
            for p in batch
        ]
        await self._router.deliver_batch(spec, envs)
        return envs

    def publish_nowait(
        self, topic: str, payload: Any, *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope[Any]:
        """Publish without waiting, for code that cannot await (trio's ``send_nowait``).

        Like :meth:`publish`, except that where ``publish`` would wait for room — a full
        mailbox whose overflow policy is ``block`` — this raises :exc:`trio.WouldBlock`
        and no subscriber gets the message (retry later, or ``await publish`` instead).
        Every other outcome is the same: the other overflow policies apply, and
        :class:`MailboxFullError`, :class:`PayloadTypeError`, :class:`UnknownTopicError`
        and :class:`BusClosedError` are raised as ``publish`` raises them. Not a schedule
        point.
        """
        # The publish prelude, copied in publish, publish_nowait and (per batch)
        # publish_batch: one shared function cost 1->1 12 % (docs/performance.md "Fast paths")
        state = self._state
        if state.closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._specs.get(topic)
        if spec is None:
            spec = self._topics.spec(topic)
        if type(payload) is not spec.exact:
            spec.codec.check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is None:
            headers = {} if not state.traced else state.publish_headers(topic, None)
        else:
            headers = check_headers(headers)
            if state.traced or TRACEPARENT in headers:
                headers = state.publish_headers(topic, headers)
        if spec.offers is None:
            self._router.memoise(spec)
        env: Envelope[Any] = Envelope(
            self._next_int(), topic, payload, key, headers, _time(), 1, self.name
        )
        lane = spec.lane
        # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
        if lane is not None and len(lane.items) < lane.limit:
            spec.published += 1
            lane.items.append(env)
            if lane.getter_parked:
                lane.wake_getter()
            return env
        self._router.deliver_nowait(spec, env)  # raises before anyone got it
        return env

    # request()'s first try (bus/_request.py); a bus with publish hooks makes it raise
    # trio.WouldBlock, so that requests take the awaited way, through them
    _publish_request_nowait = publish_nowait

    def new_id(self) -> str:
        """A new message id of this bus: unique, and in creation order with the ids of
        the messages it publishes (for an envelope made outside ``publish``)."""
        return self._new_id()

    async def route(self, env: Envelope[Any], *, confirm: bool = False) -> None:
        """Deliver an envelope made elsewhere, as it is (its id, time, headers, source):
        what a bridge's port does on import, for applications that build envelopes.

        All-or-nothing like :meth:`publish`, and tracked when it carries a
        :class:`~bus.abc.Delivery` (``Envelope(..., delivery=Delivery())``); with
        ``confirm=True`` (it must carry one) return only once it is done, raising
        :class:`NotDeliveredError` as ``publish(confirm=True)`` does. Nothing of
        ``publish``'s checks applies: the payload and headers are taken as they are.
        """
        if confirm and env.delivery is None:
            raise ConfigurationError(
                "route(env, confirm=True) needs an envelope made with delivery=Delivery()"
            )
        await self._router.route(env)
        if confirm:
            await confirmed(env)

    # -- subscribing ------------------------------------------------------------------

    def subscribe(
        self, pattern: str, handler: Any, *, name: str | None = None, concurrency: int = 1,
        capacity: int | None = None, overflow: Overflow | str | None = None,
        retry: RetryPolicy | None = None, supervision: Supervision | None = None,
        group: str | None = None, dedup: DedupWindow | None = None, replay: bool = False,
        batch: int | None = None, middleware: Sequence[Any] = (),
        retry_tiers: Sequence[float] | None = None,
    ) -> Subscription:
        """Start an actor that receives every message whose topic matches *pattern*.

        *handler* is ``f(env)`` (sync or async) or an :class:`Actor`. Options:
        ``concurrency`` workers with per-key order; ``capacity`` of each worker's mailbox;
        ``overflow`` policy when full (``block``, ``drop_oldest``, ``drop_newest``,
        ``error``); ``retry`` policy before dead-lettering; ``supervision`` of crashes;
        ``group`` for competing consumers; ``dedup`` window; ``replay`` retained
        messages first; ``batch`` to receive lists of up to N envelopes; ``middleware``
        around the handler, inside the bus-wide ones (docs/middleware.md);
        ``retry_tiers`` (delays in seconds, e.g. ``[5, 60, 600]``, for a declared topic
        named exactly) to retry past the ``retry`` budget without holding the lane, on
        tier topics ``<topic>.retry.5s``... (bus/_tiers.py; per-key order is the cost).

        *name* identifies the subscriber in ``stats().actors`` and dead-letter headers: an
        explicit name already in use raises :class:`ConfigurationError`; without one, the
        handler's ``__qualname__`` is used, suffixed ``#2``, ``#3``... if taken. With
        ``group`` and ``concurrency=N`` together, the group picks a member by key hash
        and the member one of its N lanes by the same hash (see docs/design.md).
        """
        if self._nursery is None or self._state.closed:
            raise BusClosedError("subscribe inside 'async with open_bus() as bus:'")
        delays = None if retry_tiers is None else check_tiers(retry_tiers)
        sub = self._subscribers.subscribe(
            (pattern,), handler, start_soon=self._nursery.start_soon, name=name,
            concurrency=concurrency, capacity=capacity, overflow=overflow, retry=retry,
            supervision=supervision, group=group, dedup=dedup, replay=replay, batch=batch,
            skip_origin=None,
            middleware=self.middleware + check_middleware(middleware, "subscribe"),
        )
        if delays is not None:
            try:
                sub.tiers = Tiers(self, sub, delays)
            except BaseException:
                sub.close()
                raise
        return sub

    # -- bridges ----------------------------------------------------------------------

    async def attach(
        self, bridge: Bridge, *, export: Sequence[str] = (), import_: Sequence[str] = (),
        batch: int = 256, capacity: int = 4096, retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0, close_timeout: float = 10.0, concurrency: int = 1,
    ) -> Attachment:
        """Mirror topics matching *export* to *bridge*'s broker, and *import_* from it.

        The bus owns the bridge's life from here: ``bridge.open()`` now (a broker not
        reachable within *connect_timeout* seconds raises
        :class:`BackendUnavailableError`), its ingress as a task restarted with backoff
        when it fails, and ``bridge.aclose()`` when the bus exits, after ingress stopped
        and the export mailbox drained (at most *close_timeout* seconds for the close).
        Returns once ingress is consuming. Export is one batched subscription (``batch``
        envelopes at most per call) retrying failed records with backoff, forever by
        default, so an outage becomes backpressure rather than loss; records the broker
        rejects for good go to the dead-letter topic. *concurrency* export batches may be
        in flight at once (one per lane; a key always uses the same lane, so per-key
        order holds): more than 1 helps a broker whose confirmations take a while.
        """
        return await _attach(
            bridge, state=self._state, router=self._router, registry=self._attachments,
            subscribe_export=self._subscribe_export, start=self._start,
            export=export, import_=import_, batch=batch, capacity=capacity,
            retry=retry or EXPORT_RETRY, connect_timeout=connect_timeout,
            close_timeout=close_timeout, concurrency=concurrency,
        )

    def attachments(self) -> list[Attachment]:
        """The bridges attached now."""
        return list(self._attachments.values())

    async def _start(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str) -> None:
        if self._nursery is None or self._state.closed:
            raise BusClosedError("attach bridges inside 'async with open_bus() as bus:'")
        await self._nursery.start(fn, *args, name=name)

    def _subscribe_export(self, patterns: Sequence[str], handler: Any, **options: Any) -> Any:
        """A bridge's export subscription (``Subscribers.subscribe_export``)."""
        if self._nursery is None or self._state.closed:
            raise BusClosedError("subscribe inside 'async with open_bus() as bus:'")
        return self._subscribers.subscribe_export(
            patterns, handler, start_soon=self._nursery.start_soon, **options
        )

    # -- retention --------------------------------------------------------------------

    def retained(self, topic: str) -> list[Envelope[Any]]:
        """The retained messages of *topic*, oldest first (empty without retention)."""
        spec = self._topics.spec(topic)
        return spec.log.items(trio.current_time()) if spec.log is not None else []

    def read(
        self, topic: str, *, group: str | None = None, from_beginning: bool = True,
        offset: int | None = None, follow: bool = False,
    ) -> LogReader:
        """Read retained *topic* as a log: an async iterator of its envelopes.

        From the oldest retained message (or the end with ``from_beginning=False``, or
        an absolute *offset*) to the end of the log, or on as new ones arrive with
        ``follow=True``. A *group* has one committed position per topic, shared by its
        readers and kept after them; a message is committed once the reader asks for the
        next one (or calls ``commit()``). See ``bus._replay`` and docs/design.md.
        Raises :class:`ConfigurationError` if *topic* was declared without ``retain=``.
        """
        state = self._state
        return self._topics.reader(
            topic, group=group, from_beginning=from_beginning, offset=offset, follow=follow,
            closed=lambda: state.closed,
        )

    def delete_topic(self, topic: str) -> None:
        """Forget declared *topic*: its retained log and group positions go, its readers
        end. Subscriptions stay (their patterns match the topic if it is declared again).
        Raises :class:`UnknownTopicError` if it is not declared; the dead-letter and reply
        topics cannot be deleted."""
        if topic in (self.dead_letter_topic, self.reply_topic):
            raise ConfigurationError(f"topic {topic!r} belongs to the bus and cannot be deleted")
        self._topics.delete(topic)
        self._router.table.forget(topic)

    # -- lifetime ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state.closed

    async def drain(self) -> None:
        """Wait until every mailbox is empty and no handler is running or retrying.

        Handlers may publish while the bus drains; it waits for those messages too.
        """
        await drain(self._state, self._subscribers.lanes)

    # -- observability ----------------------------------------------------------------

    def stats(self) -> BusStats:
        """A frozen snapshot of every topic's and actor's counters."""
        topics = self._topics.stats(trio.current_time())
        actors = {sub.name: sub.stats() for sub in self._subscribers}
        return BusStats(
            topics=topics, actors=actors, pending_requests=len(self._pending),
            dead_letters_undeliverable=self._state.dead_letters_undeliverable,
        )

    def subscriptions(self, topic: str | None = None) -> list[Subscription]:
        """Every subscription on this bus; with *topic*, those a message published on it
        may reach now (each member of a group included)."""
        if topic is None:
            return list(self._subscribers)
        return self._subscribers.reaching(topic)


# The steps of open_bus's lifetime (below): functions of this module, not Bus methods,
# because only open_bus may take them.
def _close(bus: Bus) -> None:
    """Stop accepting publishes and intake from bridges; workers exit when empty."""
    bus._state.closed = True
    bus._clock.close()
    if bus._delayed is not None:
        bus._delayed.close()
    for spec in bus._topics.specs.values():
        if spec.log is not None:
            wake_readers(spec.log)  # following readers end
    for att in bus._attachments.values():
        att.stop_intake()
    for sub in bus._subscribers:
        for lane in sub.lanes:
            lane.close()


def _report_undelivered(bus: Bus, drain_timeout: float | None) -> None:
    """Record (and log) what is still queued once every worker has stopped. A handler
    cancelled mid-message put it back in its mailbox, so it is counted too."""
    left = bus._subscribers.queued()
    if bus._delayed is not None and len(bus._delayed):
        left[DELAYED] = len(bus._delayed)
    bus.undelivered = MappingProxyType(left)
    if left:
        log.error(
            "bus.undelivered", bus=bus.name, messages=sum(left.values()), subscribers=left,
            drain_timeout=drain_timeout,
        )


async def _close_bridges(bus: Bus) -> None:
    for att in list(bus._attachments.values()):
        await att.aclose()


@asynccontextmanager
async def open_bus(
    *,
    name: str = "trio-bus",
    strict: bool = True,
    capacity: int = 1024,
    overflow: Overflow | str = Overflow.BLOCK,
    retry: RetryPolicy | None = None,
    supervision: Supervision | None = None,
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC,
    drain_timeout: float | None = 10.0,
    seed: int | None = None,
    tracing: Any = False,
    middleware: Sequence[Any] = (),
) -> AsyncIterator[Bus]:
    """Open a bus whose actors live in a nursery owned by this ``async with`` block.

    Leaving the block normally stops bridges' intake, drains the bus (handlers may still
    publish) for at most *drain_timeout* seconds, then closes it; after the timeout the
    handlers still busy are cancelled. Leaving with an error (or an outside cancellation,
    or Ctrl-C) closes the bus and cancels every actor at once. Then attached bridges are
    closed. On every way out, messages left undelivered (queued, or in a handler's hands
    when it was cancelled) are counted per subscriber in ``bus.undelivered`` (readable
    after the block) and logged as ``bus.undelivered``. *seed* seeds the bus's random
    source (retry jitter), for repeatable test runs.

    W3C trace context (``traceparent``/``tracestate`` headers) is always carried, and a
    handler's publishes inherit the handled message's. *tracing* adds OpenTelemetry spans
    for publish, handle, export and ingest: ``True`` with the global tracer provider, or
    a ``TracerProvider``; it needs the ``otel`` extra (see docs/design.md, "Tracing").

    *middleware* wraps every publish and every subscription's handler (bridges' exports
    aside), outermost first: see docs/middleware.md. With none, nothing of it runs.
    """
    middleware = check_middleware(middleware, "open_bus")
    options: dict[str, Any] = dict(
        name=name, strict=strict, capacity=capacity, overflow=overflow, retry=retry,
        supervision=supervision, dead_letter_topic=dead_letter_topic, seed=seed,
        tracing=tracing,
    )
    if any(getattr(mw, "publish", None) is not None for mw in middleware):
        from ._middleware_bus import MiddlewareBus  # it subclasses Bus: imported late

        bus: Bus = MiddlewareBus(middleware=middleware, **options)
    else:
        bus = Bus(**options)
        bus.middleware = middleware  # handle hooks only: the plain bus
    try:
        async with trio.open_nursery() as nursery:
            bus._nursery = nursery
            log.debug("bus.open", bus=name)
            try:
                yield bus
                for att in bus._attachments.values():
                    att.stop_intake()  # no new messages from brokers while draining
                with trio.move_on_after(math.inf if drain_timeout is None else drain_timeout):
                    await bus.drain()
                    _close(bus)
                if not bus._state.closed:  # the drain timed out: stop the stuck handlers
                    _close(bus)
                    nursery.cancel_scope.cancel()
            except BaseException:
                _close(bus)
                nursery.cancel_scope.cancel()
                raise
    except BaseExceptionGroup as group:
        only = _only_error(group)
        if only is None:
            raise
        raise only from only.__cause__  # keeps its cause, hides the groups around it
    finally:
        bus._state.closed = True
        await _close_bridges(bus)
        _report_undelivered(bus, drain_timeout)
        log.debug("bus.close", bus=name)


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single error inside *group* and any groups nested in it, or None if several."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None
