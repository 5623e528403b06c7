"""The bus: typed topics, publish, subscribe, request/reply, retention, drain and close.

``open_bus()`` owns one trio nursery; every actor's supervisor (and, later, every
bridge) is a task in it. Publishing is synchronous until a mailbox is full: the
envelope is built, checked against the topic's type, appended to each matching
mailbox, and ``publish`` returns without a schedule point. Under the ``block`` policy a
full mailbox makes ``publish`` wait, which is how backpressure reaches the publisher.

Exception policy: an actor that gives up (``SupervisorGaveUp``) or any other error in a
bus task cancels the bus and surfaces from ``open_bus``. trio groups such errors in an
``ExceptionGroup``; when exactly one error is inside, ``open_bus`` raises that error
itself, so ``except PayloadTypeError`` works around a bus block.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec
import trio

from ._actor import Group, Subscription
from ._bridge import EXPORT_RETRY, Attachment, Bridge
from ._bridge import attach as _attach
from ._codec import Codec, codec_for
from ._done import DEAD_LETTERED, UNDELIVERABLE, Delivery
from ._envelope import (
    H_ATTEMPTS,
    H_CORRELATION_ID,
    H_DEAD_LETTER_ORIGIN,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    H_REPLY_TO,
    Envelope,
    IdGenerator,
    dead_letter_headers,
    describe,
)
from ._errors import (
    BusClosedError,
    ConfigurationError,
    NotDeliveredError,
    PayloadTypeError,
    RequestFailedError,
    RequestTimeoutError,
    UnknownTopicError,
)
from ._log import get_logger
from ._mailbox import Lane
from ._policy import DedupWindow, Overflow, Retention, RetentionLog, RetryPolicy, Supervision
from ._replay import LogReader, open_position, wake_readers
from ._routing import Pattern, RoutingTable, is_private, validate_pattern, validate_topic
from ._stats import BusStats, TopicStats
from ._trace import TRACEPARENT, Tracing, inherit, make_tracing

__all__ = ["Bus", "Topic", "open_bus"]

T = TypeVar("T")
R = TypeVar("R")
log = get_logger("bus")

_time = time.time
_crc32 = zlib.crc32
DEFAULT_DEAD_LETTER_TOPIC = "bus.dead_letter"
_DEAD_LETTER_RETENTION = Retention(max_count=10_000)


class _TopicSpec:
    """A declared topic: its type, codec, retained log and counters."""

    __slots__ = (
        "careful", "codec", "exact", "keyed", "lane", "lanes", "log", "name", "offers",
        "published", "targets",
    )

    def __init__(self, name: str, codec: Codec[Any], retain: Retention | None) -> None:
        self.name = name
        self.codec = codec
        self.exact: type | None = codec.exact
        self.log: RetentionLog[Envelope[Any]] | None = RetentionLog(retain) if retain else None
        self.published = 0
        # the routing table's answer for this topic, memoised here to save a lookup
        self.targets: tuple[Target, ...] = ()
        self.offers: tuple[Callable[[Envelope[Any]], Lane | None], ...] | None = None
        # a target may refuse (overflow="error"): publish checks all before delivering
        self.careful = False
        # the one mailbox of the one plain subscriber, when that is all there is to do
        # (no retention, no choice of lane): publish appends to it directly; and the
        # mailboxes of several such subscribers (fan-out)
        self.lane: Lane | None = None
        self.lanes: tuple[Lane, ...] | None = None
        # the lanes of the one plain subscriber with several lanes (keyed: concurrency=N)
        self.keyed: list[Lane] | None = None


class Target(Protocol):
    """What the routing table holds: a subscription, a group, or the reply router."""

    @property
    def careful(self) -> bool:
        """True if :meth:`select`'s lane may refuse a message (``overflow="error"``)."""

    def route_offer(self, env: Envelope[Any]) -> Lane | None:
        """Select a lane and offer *env* to it (see :meth:`Lane.offer`)."""

    def select(self, env: Envelope[Any]) -> Lane | None:
        """The lane *env* would go to, or None if this target skips it."""


def _check_headers(headers: Any) -> dict[str, str]:
    """Headers travel to every broker as strings: refuse anything else, naming it.

    Returns them without ``x-bus-origin`` (a copy, if they had it): only a bridge's port
    sets that header, on import. A handler that passes an imported message's headers on
    to its own publish makes a new message, which every bridge must export (a copied
    origin would make the echo guard skip it)."""
    if not isinstance(headers, dict):
        raise PayloadTypeError(f"headers must be a dict[str, str] or None, got {describe(headers)}")
    for name, value in headers.items():
        if type(name) is not str:
            raise PayloadTypeError(f"header names must be str, got {describe(name)}: {name!r}")
        if type(value) is not str:
            raise PayloadTypeError(
                f"header {name!r} must have a str value, got {describe(value)}: {value!r}; "
                f"headers are strings on every broker, convert it (str(), json) first"
            )
    if H_ORIGIN in headers:
        return {name: value for name, value in headers.items() if name != H_ORIGIN}
    return headers


class BusState:
    """What actors and mailboxes share with the bus: drain accounting and dead letters."""

    def __init__(self, bus: Bus) -> None:
        self._bus = self.bus = bus
        self.blocked_puts = 0
        self.random = random.Random(bus.seed)
        self.idle = trio.lowlevel.ParkingLot()
        self.idle_waiters = 0
        self.idled = 0
        """Times a worker went idle: parked on an empty mailbox or stopped on a closed
        one (drain() watches it)."""
        self.dead_letters_undeliverable = 0
        """Dead letters that could not be delivered in turn (logged as
        ``dead_letter.undeliverable``); their messages were not acknowledged upstream."""

    async def dead_letter(self, env: Envelope[Any]) -> str:
        """Publish *env* (its error headers set) on the dead-letter topic, as a message of
        the bus's own (``dead_letter_headers``). A tracked message stays undone until its
        dead letter is done (exported, if a bridge exports the dead-letter topic), so its
        broker is not acknowledged before that.

        Returns the outcome for the failed message's :class:`Delivery`: ``dead_lettered``,
        or ``undeliverable`` when *env* was a dead letter already (its broker refused it,
        its handler failed): routing it again would go round forever, so it stays in the
        retained dead-letter log, and the message it came from is not acknowledged to the
        broker it came from, which delivers it again.
        """
        bus = self._bus
        if H_REPLY_TO in env.headers:
            await bus._request_failed(env)  # the requester raises now, not at its timeout
        if env.topic == bus.dead_letter_topic:
            self.dead_letters_undeliverable += 1
            log.error(
                "dead_letter.undeliverable", id=env.id, key=env.key,
                original_topic=env.headers.get(H_ORIGINAL_TOPIC),
                origin=env.headers.get(H_DEAD_LETTER_ORIGIN),
                failed_subscriber=env.headers.get(H_FAILED_SUBSCRIBER),
                error=env.headers.get(H_ERROR),
                hint="its message is not acknowledged to the broker it came from, which "
                "delivers it again; a local publish(confirm=True) raises NotDeliveredError",
            )
            return UNDELIVERABLE
        headers = dict(env.headers)
        dead_letter_headers(headers, bus.dead_letter_topic)
        delivery = None if env.delivery is None else env.delivery.follow()
        await bus._route(msgspec.structs.replace(
            env, topic=bus.dead_letter_topic, headers=headers, delivery=delivery
        ))
        return DEAD_LETTERED

    def unsubscribe(self, sub: Subscription) -> None:
        self._bus._remove(sub)


class Topic(Generic[T]):
    """A typed handle on a declared topic: ``await orders.publish(Order(...))``."""

    __slots__ = ("_bus", "name", "type")

    def __init__(self, bus: Bus, name: str, tp: type[T]) -> None:
        self._bus, self.name, self.type = bus, name, tp

    async def publish(
        self, payload: T, *, key: str | None = None, headers: dict[str, str] | None = None
    ) -> Envelope[T]:
        return await self._bus.publish(self.name, payload, key=key, headers=headers)

    async def publish_batch(
        self, payloads: Iterable[T], *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[Envelope[T]]:
        return await self._bus.publish_batch(self.name, payloads, key=key, headers=headers)

    def publish_nowait(
        self, payload: T, *, key: str | None = None, headers: dict[str, str] | None = None
    ) -> Envelope[T]:
        return self._bus.publish_nowait(self.name, payload, key=key, headers=headers)

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, {getattr(self.type, '__qualname__', self.type)})"


class Bus:
    """An in-process event bus. Create it with ``async with open_bus() as bus``."""

    def __init__(
        self,
        *,
        name: str = "trio-bus",
        strict: bool = True,
        capacity: int = 1024,
        overflow: Overflow | str = Overflow.BLOCK,
        retry: RetryPolicy | None = None,
        supervision: Supervision | None = None,
        dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC,
        seed: int | None = None,
        tracing: Any = False,
    ) -> None:
        self.name = name
        self.tracing: Tracing | None = make_tracing(tracing)
        """OpenTelemetry spans (``tracing=True`` or a ``TracerProvider``), else None."""
        # True once a traced message was seen (or tracing is on): from then on publishes
        # inherit the handled message's trace context and workers set it (bus/_trace.py)
        self._traced = self.tracing is not None
        self.seed = seed
        self.strict = strict
        self.default_capacity = capacity
        self.default_overflow = Overflow.parse(overflow)
        self.default_retry = retry or RetryPolicy()
        self.default_supervision = supervision or Supervision()
        self._topics: dict[str, _TopicSpec] = {}
        self._router: RoutingTable[Target] = RoutingTable()
        self._subs: dict[str, Subscription] = {}
        self._next_suffix: dict[str, int] = {}  # derived subscriber names (h#2, h#3...)
        self._groups: dict[str, Group] = {}
        self._new_id = IdGenerator()
        self._next_int = self._new_id.next_int
        self._state = BusState(self)
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._pending: dict[str, _Pending] = {}
        self._attachments: dict[str, Attachment] = {}
        self._families: list[tuple[Callable[[str], bool], Codec[Any]]] = []
        self.undelivered: Mapping[str, int] = MappingProxyType({})
        """After the bus closed: messages left undelivered per subscriber (empty if none)."""
        self.dead_letter_topic = validate_topic(dead_letter_topic)
        self.topic(dead_letter_topic, object, retain=_DEAD_LETTER_RETENTION)
        # This bus's private reply topic. Local replies go straight to the waiting
        # request; the route is for replies coming back through a bridge. Wildcard
        # patterns never match it (_routing), and topics()/stats() leave it out.
        self.reply_topic = f"bus.reply.{self._new_id()}"
        self.topic(self.reply_topic, object)
        self._replies = _ReplyTarget(self._pending)
        self._clock = _RequestClock()
        self._router.add(self.reply_topic, self._replies)

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
        validate_topic(name)
        existing = self._topics.get(name)
        if existing is not None:
            if existing.codec.type != type:
                raise ConfigurationError(
                    f"topic {name!r} is already declared with type {existing.codec.type_name}; "
                    f"cannot redeclare it as {getattr(type, '__qualname__', type)!r}"
                )
            if retain is not None:
                if existing.log is None:
                    existing.log = RetentionLog(retain)
                    # publish must retain now
                    existing.offers, existing.lane, existing.lanes = None, None, None
                    existing.keyed = None
                elif existing.log.policy != retain:
                    raise ConfigurationError(
                        f"topic {name!r} is already declared with {existing.log.policy!r}; "
                        f"cannot redeclare it with {retain!r} (declare it once, or pass "
                        f"retain=None to get a handle on it as it is)"
                    )
        else:
            self._topics[name] = _TopicSpec(name, codec_for(type), retain)
        return Topic(self, name, type)

    def _declare_pattern(self, pattern: str, codec: Codec[Any]) -> None:
        """Declare, when first used, each topic matching *pattern* with *codec* (a bridge
        importing a topic nobody declared, even on a strict bus). ``bus bridge`` declares
        its routes this way; the first pattern added that matches wins."""
        validate_pattern(pattern)
        self._families.append((Pattern(pattern).matches, codec))

    def topics(self) -> list[str]:
        """Names of the declared topics (not the private reply topics)."""
        return sorted(name for name in self._topics if not is_private(name))

    def codec(self, topic: str) -> Codec[Any]:
        """The codec of a declared topic (bridges encode and decode with it)."""
        return self._spec(topic).codec

    def _spec(self, topic: str) -> _TopicSpec:
        spec = self._topics.get(topic)
        if spec is not None:
            return spec
        validate_topic(topic)
        for matches, codec in self._families:
            if matches(topic):
                spec = self._topics[topic] = _TopicSpec(topic, codec, None)
                return spec
        if self.strict:
            raise UnknownTopicError(
                f"topic {topic!r} is not declared; declare it first with "
                f"bus.topic({topic!r}, PayloadType), or open the bus with strict=False"
            )
        spec = self._topics[topic] = _TopicSpec(topic, codec_for(object), None)
        return spec

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        confirm: bool = False,
    ) -> Envelope[Any]:
        """Publish *payload* to *topic*; return once every matching mailbox accepted it.

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
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._topics.get(topic)
        if spec is None:
            spec = self._spec(topic)
        if type(payload) is not spec.exact:
            spec.codec.check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is None:
            headers = {} if not self._traced else self._trace(topic, None)
        else:
            headers = _check_headers(headers)
            if self._traced or TRACEPARENT in headers:
                headers = self._trace(topic, headers)
        # The hot path: the topic's one target is one plain mailbox (spec.lane is set only
        # then, once routes are memoised, and never for a target that may refuse).
        # Positional fields (Envelope's order); the id as its integer (rendered on read).
        lane = spec.lane
        if lane is not None and not confirm:
            env: Envelope[Any] = Envelope(
                self._next_int(), topic, payload, key, headers, _time(), 1, self.name
            )
            spec.published += 1
            items = lane.items  # Lane.offer, inlined
            if len(items) < lane.limit:
                items.append(env)
                if lane.getter_parked:
                    lane.wake_getter()
            elif (full := lane.offer(env)) is not None:  # full: the overflow policy
                await full.put(env)
            return env
        offers = spec.offers
        if offers is None:
            offers = self._memoise(spec)
        if spec.careful or confirm:
            env = Envelope(
                self._next_int(), topic, payload, key, headers, _time(), 1, self.name,
                Delivery() if confirm else None,
            )
            await self._deliver(spec, env)
            if confirm:
                await _confirmed(env)
            return env
        # the steps of _deliver for targets that cannot refuse, inlined
        env = Envelope(self._next_int(), topic, payload, key, headers, _time(), 1, self.name)
        spec.published += 1
        if spec.lanes is not None:
            for lane in spec.lanes:  # the same, for each of several plain subscribers
                items = lane.items
                if len(items) < lane.limit:
                    items.append(env)
                    if lane.getter_parked:
                        lane.wake_getter()
                elif (full := lane.offer(env)) is not None:
                    await full.put(env)
            return env
        elif spec.log is not None:
            self._retain(spec, env)
        elif key is not None and (keyed := spec.keyed) is not None:
            # Subscription._offer_spread for a key, inlined (A/B: docs/performance.md,
            # "At scale"): the key's lane by CRC-32 (key_slot), then Lane.offer
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

    async def publish_batch(
        self,
        topic: str,
        payloads: Iterable[Any],
        *,
        key: str | None = None,
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
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._topics.get(topic)
        if spec is None:
            spec = self._spec(topic)
        batch = list(payloads)
        exact, check = spec.exact, spec.codec.check
        for payload in batch:
            if type(payload) is not exact:
                check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is not None:
            headers = _check_headers(headers)
        if self._traced or (headers is not None and TRACEPARENT in headers):
            headers = self._trace(topic, headers, len(batch))
        offers = spec.offers
        if offers is None:
            offers = self._memoise(spec)
        new, now, source = self._next_int, _time(), self.name
        envs: list[Envelope[Any]] = [
            Envelope(new(), topic, p, key, {} if headers is None else headers, now, 1, source)
            for p in batch
        ]
        if spec.careful:
            for env in envs:
                await self._deliver(spec, env)
            return envs
        spec.published += len(envs)
        lane = spec.lane
        lanes = (lane,) if lane is not None else spec.lanes
        if lanes is not None:
            # Plain mailboxes: the envelopes that fit in every one go in with one extend
            # each (the state publishing them in turn would leave), the rest one by one.
            fit = max(0, min(lane.limit - len(lane.items) for lane in lanes))
            if fit:
                part = envs[:fit] if fit < len(envs) else envs
                for lane in lanes:
                    lane.items.extend(part)
                    if lane.getter_parked:
                        lane.wake_getter()
            for env in envs[fit:]:  # a mailbox is full: the overflow policy, in turn
                for lane in lanes:
                    if (full := lane.offer(env)) is not None:
                        await full.put(env)
            return envs
        if spec.log is not None:
            for env in envs:
                self._retain(spec, env)
        for env in envs:
            for offer in offers:
                if (full := offer(env)) is not None:
                    await full.put(env)
        return envs

    def publish_nowait(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
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
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")
        spec = self._topics.get(topic)
        if spec is None:
            spec = self._spec(topic)
        if type(payload) is not spec.exact:
            spec.codec.check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is None:
            headers = {} if not self._traced else self._trace(topic, None)
        else:
            headers = _check_headers(headers)
            if self._traced or TRACEPARENT in headers:
                headers = self._trace(topic, headers)
        if spec.offers is None:
            self._memoise(spec)
        env: Envelope[Any] = Envelope(
            self._next_int(), topic, payload, key, headers, _time(), 1, self.name
        )
        lane = spec.lane
        if lane is not None and len(lane.items) < lane.limit:
            spec.published += 1
            lane.items.append(env)
            if lane.getter_parked:
                lane.wake_getter()
            return env
        lanes = self._select(spec, env, nowait=True)  # raises before anyone got it
        blocked = self._accept(spec, env, lanes)
        assert not blocked, "a lane filled up between the check and the offer"
        return env

    def _trace(
        self, topic: str, headers: dict[str, str] | None, count: int = 1
    ) -> dict[str, str]:
        """The headers of a publish on a bus that has seen trace context (or traces):
        a publish span's context with tracing on, else the handled message's context
        when the publisher gave none (``_trace.inherit``)."""
        self._traced = True
        tracing = self.tracing
        if tracing is not None:
            return tracing.publish(self.name, topic, headers, count)
        return inherit(headers)

    def _memoise(self, spec: _TopicSpec) -> tuple[Callable[[Envelope[Any]], Lane | None], ...]:
        """Derive what publish needs from the topic's route, in one pass over it: the
        targets' offers, whether one may refuse, and the mailboxes to append to inline
        when every target is a plain one-lane subscriber (its offer is its lane's)."""
        targets = spec.targets = self._router.route(spec.name)
        offers = []
        lanes = []
        careful = False
        for target in targets:
            offer = target.route_offer
            offers.append(offer)
            if target.careful:
                careful = True
            lane = getattr(offer, "__self__", None)
            if type(lane) is Lane:
                lanes.append(lane)
        spec.careful = careful
        memo = spec.offers = tuple(offers)
        plain = spec.log is None and not careful and len(lanes) == len(targets)
        spec.lane = lanes[0] if plain and len(lanes) == 1 else None
        spec.lanes = tuple(lanes) if plain and len(lanes) > 1 else None
        spec.keyed = None
        if len(targets) == 1 and not careful and spec.log is None:
            spread = offers[0]
            if getattr(spread, "__func__", None) is Subscription._offer_spread:
                spec.keyed = spread.__self__.lanes  # type: ignore[attr-defined]
        return memo

    def _select(self, spec: _TopicSpec, env: Envelope[Any], *, nowait: bool) -> list[Lane]:
        """Every lane *env* goes to; raises before anyone got it if one would refuse."""
        if spec.offers is None:
            self._memoise(spec)
        lanes = [lane for t in spec.targets if (lane := t.select(env)) is not None]
        for lane in lanes:
            if lane.full:
                if lane.overflow is Overflow.ERROR:
                    lane.owner.rejected += 1
                    raise lane.full_error()
                if nowait and lane.overflow is Overflow.BLOCK:
                    raise trio.WouldBlock
        return lanes

    async def _deliver(self, spec: _TopicSpec, env: Envelope[Any]) -> None:
        """Deliver *env* all-or-nothing to its lanes, holding its :class:`Delivery` once
        per lane that accepts it, then waiting for room in full ``block`` lanes."""
        lanes = self._select(spec, env, nowait=False)
        blocked = self._accept(spec, env, lanes)
        for lane in blocked:
            await lane.put(env)
        if env.delivery is not None:
            env.delivery.routed()

    def _accept(self, spec: _TopicSpec, env: Envelope[Any], lanes: list[Lane]) -> list[Lane]:
        spec.published += 1
        if spec.log is not None:
            self._retain(spec, env)
        delivery = env.delivery
        blocked = []
        for lane in lanes:
            if delivery is not None:
                delivery.hold()
            if lane.offer(env) is not None:
                blocked.append(lane)
        return blocked

    async def _route(self, env: Envelope[Any]) -> None:
        """Route an envelope made elsewhere (a bridge's import, a dead letter), tracking
        it if it carries a :class:`Delivery`."""
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed")
        await self._deliver(self._spec(env.topic), env)

    def _route_nowait(self, env: Envelope[Any]) -> None:
        """:meth:`_route` without waiting: :exc:`trio.WouldBlock`, delivering to nobody,
        if a ``block`` mailbox is full."""
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed")
        spec = self._spec(env.topic)
        lanes = self._select(spec, env, nowait=True)
        blocked = self._accept(spec, env, lanes)
        assert not blocked, "a lane filled up between the check and the offer"
        if env.delivery is not None:
            env.delivery.routed()

    def _retain(self, spec: _TopicSpec, env: Envelope[Any]) -> None:
        log = spec.log
        assert log is not None
        policy = log.policy
        size = len(spec.codec.encode(env.payload)) if policy.max_bytes else 0
        log.append(env, trio.current_time() if policy.max_age is not None else 0.0, size)

    # -- subscribing ------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Any,
        *,
        name: str | None = None,
        concurrency: int = 1,
        capacity: int | None = None,
        overflow: Overflow | str | None = None,
        retry: RetryPolicy | None = None,
        supervision: Supervision | None = None,
        group: str | None = None,
        dedup: DedupWindow | None = None,
        replay: bool = False,
        batch: int | None = None,
    ) -> Subscription:
        """Start an actor that receives every message whose topic matches *pattern*.

        *handler* is ``f(env)`` (sync or async) or an :class:`Actor`. Options:
        ``concurrency`` workers with per-key order; ``capacity`` of each worker's mailbox;
        ``overflow`` policy when full (``block``, ``drop_oldest``, ``drop_newest``,
        ``error``); ``retry`` policy before dead-lettering; ``supervision`` of crashes;
        ``group`` for competing consumers; ``dedup`` window; ``replay`` retained
        messages first; ``batch`` to receive lists of up to N envelopes.

        *name* identifies the subscriber in ``stats().actors`` and dead-letter headers: an
        explicit name already in use raises :class:`ConfigurationError`; without one, the
        handler's ``__qualname__`` is used, suffixed ``#2``, ``#3``... if taken. With
        ``group`` and ``concurrency=N`` together, the group picks a member by key hash
        and the member one of its N lanes by the same hash (see docs/design.md).
        """
        return self._subscribe(
            (pattern,), handler, name=name, concurrency=concurrency, capacity=capacity,
            overflow=overflow, retry=retry, supervision=supervision, group=group, dedup=dedup,
            replay=replay, batch=batch, skip_origin=None,
        )

    def _subscribe_export(
        self,
        patterns: Sequence[str],
        handler: Any,
        *,
        name: str,
        batch: int,
        capacity: int,
        retry: RetryPolicy,
        skip_origin: str,
        concurrency: int = 1,
    ) -> Subscription:
        """A bridge's export: one batched subscriber for all its patterns (a message that
        matches two of them is exported once) that skips what the bridge imported;
        *concurrency* lanes keep that many batches in flight, each key on one lane."""
        return self._subscribe(
            patterns, handler, name=name, concurrency=concurrency, capacity=capacity,
            overflow=None,
            retry=retry, supervision=None, group=None, dedup=None, replay=False, batch=batch,
            skip_origin=skip_origin,
        )

    def _subscribe(
        self,
        patterns: Sequence[str],
        handler: Any,
        *,
        name: str | None,
        concurrency: int,
        capacity: int | None,
        overflow: Overflow | str | None,
        retry: RetryPolicy | None,
        supervision: Supervision | None,
        group: str | None,
        dedup: DedupWindow | None,
        replay: bool,
        batch: int | None,
        skip_origin: str | None,
    ) -> Subscription:
        if self._nursery is None or self._closed:
            raise BusClosedError("subscribe inside 'async with open_bus() as bus:'")
        for pattern in patterns:
            validate_pattern(pattern)
        pattern = patterns[0]
        name = self._subscriber_name(name, handler)
        sub = Subscription(
            self._state,
            name=name,
            pattern=pattern,
            handler=handler,
            concurrency=concurrency,
            capacity=self.default_capacity if capacity is None else capacity,
            overflow=self.default_overflow if overflow is None else Overflow.parse(overflow),
            retry=retry or self.default_retry,
            supervision=supervision or self.default_supervision,
            group=group,
            dedup=dedup,
            batch=batch,
            skip_origin=skip_origin,
        )
        if replay:
            for env in self._retained_matching(pattern):
                lane = sub.select(env)
                if lane is not None:
                    lane.items.append(env)  # replay may exceed capacity: retention bounds it
        if group is None:
            for each in patterns:
                self._reroute(self._router.add(each, sub))
        else:
            grp = self._groups.get(group)
            if grp is None:
                grp = self._groups[group] = Group(group, pattern)
                self._reroute(self._router.add(pattern, grp))
            elif grp.pattern != pattern:
                raise ConfigurationError(
                    f"group {group!r} subscribes to {grp.pattern!r}; every member must use "
                    f"that pattern, not {pattern!r} (use another group name)"
                )
            careful = grp.careful
            grp.members.append(sub)
            if grp.careful != careful:  # publish must now check (or no longer) first
                self._reroute(self._router.routed_to(grp))
        self._subs[name] = sub
        self._nursery.start_soon(sub.run, name=f"actor:{name}")
        log.debug(
            "actor.start", **sub.log_context, pattern=pattern, group=group, bus=self.name
        )
        return sub

    def _subscriber_name(self, name: str | None, handler: Any) -> str:
        """An explicit *name* must be unique on this bus; a name derived from the handler's
        ``__qualname__`` gets a ``#2``, ``#3``... suffix when it is taken. A subscription
        that was closed and has stopped frees its name (a bridge detached and attached
        again); its counters leave ``stats()`` with it."""
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"name must be a non-empty str, got {name!r}")
            old = self._subs.get(name)
            if old is not None and old.closed and old.stopped:
                del self._subs[name]
            elif old is not None:
                raise ConfigurationError(
                    f"a subscriber named {name!r} already exists on bus {self.name!r} "
                    f"({self._subs[name]!r}); names key stats().actors and dead-letter "
                    f"headers, so give each subscriber its own name"
                )
            return name
        base = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        if base not in self._subs:
            return base
        # the next suffix to try, remembered per base: no rescan of #2, #3... each time
        n = self._next_suffix.get(base, 2)
        while (derived := f"{base}#{n}") in self._subs:
            n += 1
        self._next_suffix[base] = n + 1
        return derived

    def _remove(self, sub: Subscription) -> None:
        if sub.group is not None:
            grp = self._groups[sub.group]
            if sub in grp.members:
                careful = grp.careful
                grp.members.remove(sub)
                if grp.careful != careful:
                    self._reroute(self._router.routed_to(grp))
        else:
            self._reroute(self._router.remove(sub))

    def _reroute(self, topics: Iterable[str]) -> None:
        """Derive again what publish uses from the routes of *topics* (they changed),
        for each topic that had it: the change pays for the routes it changes, and no
        publish to an unrelated topic, nor the first one to a changed topic, does."""
        specs = self._topics
        for name in topics:
            spec = specs.get(name)
            if spec is not None and spec.offers is not None:
                self._memoise(spec)

    # -- bridges ----------------------------------------------------------------------

    async def attach(
        self,
        bridge: Bridge,
        *,
        export: Sequence[str] = (),
        import_: Sequence[str] = (),
        batch: int = 256,
        capacity: int = 4096,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        concurrency: int = 1,
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
            self, bridge, export=export, import_=import_, batch=batch, capacity=capacity,
            retry=retry or EXPORT_RETRY, connect_timeout=connect_timeout,
            close_timeout=close_timeout, concurrency=concurrency,
        )

    def attachments(self) -> list[Attachment]:
        """The bridges attached now."""
        return list(self._attachments.values())

    async def _start(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str) -> None:
        if self._nursery is None or self._closed:
            raise BusClosedError("attach bridges inside 'async with open_bus() as bus:'")
        await self._nursery.start(fn, *args, name=name)

    # -- retention --------------------------------------------------------------------

    def retained(self, topic: str) -> list[Envelope[Any]]:
        """The retained messages of *topic*, oldest first (empty without retention)."""
        spec = self._spec(topic)
        return spec.log.items(trio.current_time()) if spec.log is not None else []

    def read(
        self,
        topic: str,
        *,
        group: str | None = None,
        from_beginning: bool = True,
        offset: int | None = None,
        follow: bool = False,
    ) -> LogReader:
        """Read retained *topic* as a log: an async iterator of its envelopes.

        From the oldest retained message (or the end with ``from_beginning=False``, or
        an absolute *offset*) to the end of the log, or on as new ones arrive with
        ``follow=True``. A *group* has one committed position per topic, shared by its
        readers and kept after them; a message is committed once the reader asks for the
        next one (or calls ``commit()``). See ``bus._replay`` and docs/design.md.
        Raises :class:`ConfigurationError` if *topic* was declared without ``retain=``.
        """
        spec = self._spec(topic)
        log = spec.log
        if log is None:
            raise ConfigurationError(
                f"topic {topic!r} keeps no log to read; declare it with "
                f"bus.topic({topic!r}, Type, retain=Retention(max_count=...))"
            )
        return LogReader(
            topic,
            lambda: open_position(log, topic, group, from_beginning=from_beginning, offset=offset),
            follow=follow,
            closed=lambda: self._closed,
        )

    def delete_topic(self, topic: str) -> None:
        """Forget declared *topic*: its retained log and group positions go, its readers
        end. Subscriptions stay (their patterns match the topic if it is declared again).
        Raises :class:`UnknownTopicError` if it is not declared; the dead-letter and reply
        topics cannot be deleted."""
        if topic in (self.dead_letter_topic, self.reply_topic):
            raise ConfigurationError(f"topic {topic!r} belongs to the bus and cannot be deleted")
        spec = self._topics.pop(validate_topic(topic), None)
        if spec is None:
            raise UnknownTopicError(f"cannot delete topic {topic!r}: it is not declared")
        if spec.log is not None:
            spec.log.deleted = True
            wake_readers(spec.log)
        self._router.forget(topic)

    def _retained_matching(self, pattern: str) -> list[Envelope[Any]]:
        matches = Pattern(pattern).matches
        found: list[Envelope[Any]] = []
        for name, spec in self._topics.items():
            if spec.log is not None and matches(name):
                found.extend(spec.log.items(trio.current_time()))
        found.sort(key=lambda e: e.id)
        return found

    # -- request / reply --------------------------------------------------------------

    @overload
    async def request(
        self,
        topic: str,
        payload: Any,
        *,
        timeout: float,  # noqa: ASYNC109
        reply_type: type[R],
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope[R]: ...
    @overload
    async def request(
        self,
        topic: str,
        payload: Any,
        *,
        timeout: float,  # noqa: ASYNC109
        reply_type: None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope[Any]: ...

    async def request(
        self,
        topic: str,
        payload: Any,
        *,
        timeout: float,  # noqa: ASYNC109 - request/reply's timeout is part of the contract
        reply_type: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope[Any]:
        """Publish a request and wait for the reply envelope.

        *reply_type* declares the reply's payload type: a replier on this bus gets
        :class:`PayloadTypeError` from ``bus.reply`` when it answers with anything else,
        and a reply of another type arriving through a bridge raises it here. Raises
        :class:`RequestFailedError` when a subscriber handling the request failed on its
        last attempt (it was dead-lettered: no reply will come), and
        :class:`RequestTimeoutError` when no answer arrives within *timeout* seconds
        (trio's clock). The first answer wins.
        """
        if not timeout > 0 or math.isinf(timeout):
            raise ConfigurationError(f"timeout must be a finite number > 0, got {timeout!r}")
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed; request inside its async with")
        codec = None if reply_type is None else codec_for(reply_type)
        correlation = self._new_id()
        hdrs = {} if headers is None else dict(headers)
        hdrs[H_REPLY_TO] = self.reply_topic
        hdrs[H_CORRELATION_ID] = correlation
        deadline = trio.current_time() + timeout
        pending = self._pending[correlation] = _Pending(topic, codec, deadline)
        try:
            # No cancel scope per request (entering and leaving one was a third of a
            # round trip): the bus's request clock wakes this task at its deadline.
            self._clock.add(pending, timeout, len(self._pending))
            try:
                self.publish_nowait(topic, payload, key=key, headers=hdrs)
            except trio.WouldBlock:  # a full mailbox: wait for room, within the timeout
                with trio.move_on_at(deadline):
                    await self.publish(topic, payload, key=key, headers=hdrs)
            await pending.wait()
        finally:
            pending.finished = True
            del self._pending[correlation]
        reply = pending.reply
        if reply is None:
            raise RequestTimeoutError(
                f"no reply to request on {topic!r} within {timeout}s; is a subscriber "
                f"calling bus.reply(env, ...) for it?"
            )
        if H_ERROR_TYPE in reply.headers:
            raise _request_failed_error(topic, reply.headers)
        if codec is not None:
            _check_reply(codec, topic, reply.payload)
        return reply

    async def reply(
        self, request: Envelope[Any], payload: Any, *, headers: dict[str, str] | None = None
    ) -> None:
        """Answer *request* (an envelope published by :meth:`request`).

        Raises :class:`PayloadTypeError` if the request declared a ``reply_type`` that
        *payload* is not (checked here when the requester is on this bus).
        """
        reply_to = request.headers.get(H_REPLY_TO)
        correlation = request.headers.get(H_CORRELATION_ID)
        if reply_to is None or correlation is None:
            raise ConfigurationError(
                f"message {request.id} on {request.topic!r} is not a request: it has no "
                f"{H_REPLY_TO!r}/{H_CORRELATION_ID!r} headers"
            )
        hdrs = dict(headers or {})
        hdrs[H_CORRELATION_ID] = correlation
        if reply_to == self.reply_topic:
            pending = self._pending.get(correlation)
            if pending is not None and pending.codec is not None:
                _check_reply(pending.codec, pending.topic, payload)
            if headers is not None:
                _check_headers(headers)
            self._replies.route_offer(self._reply_envelope(reply_to, payload, request.key, hdrs))
            return
        # the requester is another process's bus: the reply travels through a bridge
        if reply_to not in self._topics:
            self.topic(reply_to, object)
        await self.publish(reply_to, payload, key=request.key, headers=hdrs)

    def _reply_envelope(
        self, reply_to: str, payload: Any, key: str | None, headers: dict[str, str]
    ) -> Envelope[Any]:
        return Envelope(self._next_int(), reply_to, payload, key, headers, _time(), 1, self.name)

    async def _request_failed(self, dead: Envelope[Any]) -> None:
        """Tell the requester that *dead* (a request about to be dead-lettered, with the
        error headers) will get no reply."""
        reply_to = dead.headers[H_REPLY_TO]
        hdrs = {
            name: dead.headers[name]
            for name in (
                H_CORRELATION_ID, H_ERROR, H_ERROR_TYPE, H_FAILED_SUBSCRIBER, H_ATTEMPTS,
            )
            if name in dead.headers
        }
        hdrs[H_ORIGINAL_TOPIC] = dead.topic
        if reply_to == self.reply_topic:
            self._replies.route_offer(self._reply_envelope(reply_to, None, dead.key, hdrs))
        elif not self._closed:
            if reply_to not in self._topics:
                self.topic(reply_to, object)
            await self.publish(reply_to, None, key=dead.key, headers=hdrs)

    # -- lifetime ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _lanes(self) -> Iterable[Lane]:
        for sub in self._subs.values():
            yield from sub.lanes

    def _quiet(self) -> bool:
        return self._state.blocked_puts == 0 and all(lane.idle for lane in self._lanes())

    async def drain(self) -> None:
        """Wait until every mailbox is empty and no handler is running or retrying.

        Handlers may publish while the bus drains; it waits for those messages too.
        """
        state = self._state
        await trio.lowlevel.checkpoint()
        while True:
            while not self._quiet():
                state.idle_waiters += 1
                try:
                    await state.idle.park()
                finally:
                    state.idle_waiters -= 1
                await trio.lowlevel.checkpoint()  # let woken publishers and workers move first
            # Quiet now; but a task the last handlers started (a publish handed to a
            # task of its own, the way out of a publish cycle, docs/design.md) may not
            # have taken its first step yet: it runs in this scheduling batch or the
            # next. Look again after both, and only if no worker went idle again
            # meanwhile (one that did had work: such a cascade can be quiet at every
            # other batch while messages still travel through unstarted tasks).
            idled = state.idled
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            if state.idled == idled and self._quiet():
                return

    def _close(self) -> None:
        """Stop accepting publishes and intake from bridges; workers exit when empty."""
        self._closed = True
        self._clock.close()
        for spec in self._topics.values():
            if spec.log is not None:
                wake_readers(spec.log)  # following readers end
        for att in self._attachments.values():
            att.stop_intake()
        for sub in list(self._subs.values()):
            for lane in sub.lanes:
                lane.close()

    def _report_undelivered(self, drain_timeout: float | None) -> None:
        """Record (and log) what is still queued once every worker has stopped. A handler
        cancelled mid-message put it back in its mailbox, so it is counted too."""
        queued = {name: sum(len(ln.items) for ln in sub.lanes) for name, sub in self._subs.items()}
        left = {name: n for name, n in queued.items() if n}
        self.undelivered = MappingProxyType(left)
        if left:
            log.error(
                "bus.undelivered", bus=self.name, messages=sum(left.values()), subscribers=left,
                drain_timeout=drain_timeout,
            )

    async def _close_bridges(self) -> None:
        for att in list(self._attachments.values()):
            await att.aclose()

    # -- observability ----------------------------------------------------------------

    def stats(self) -> BusStats:
        """A frozen snapshot of every topic's and actor's counters."""
        now_ = trio.current_time()
        for spec in self._topics.values():
            if spec.log is not None:
                spec.log.trim(now_)  # then its length is what is retained (no copy)
        topics = {
            name: TopicStats(
                published=spec.published,
                retained=len(spec.log) if spec.log is not None else 0,
                retained_bytes=spec.log.bytes if spec.log is not None else 0,
            )
            for name, spec in self._topics.items()
            if not is_private(name)
        }
        actors = {name: sub.stats() for name, sub in self._subs.items()}
        return BusStats(
            topics=topics, actors=actors, pending_requests=len(self._pending),
            dead_letters_undeliverable=self._state.dead_letters_undeliverable,
        )

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())


class _Pending:
    """A request waiting for its answer: a reply, or the error headers of a failure."""

    __slots__ = ("codec", "deadline", "finished", "reply", "task", "topic")

    def __init__(self, topic: str, codec: Codec[Any] | None, deadline: float) -> None:
        self.topic = topic
        self.codec = codec
        self.deadline = deadline
        self.reply: Envelope[Any] | None = None
        self.finished = False
        """Answered, timed out or abandoned: the clock forgets it, a late reply is unmatched."""
        self.task: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Park until :meth:`answer` or :meth:`expire` (at once if one happened already)."""
        if not self.finished:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        self.finished = True
        return trio.lowlevel.Abort.SUCCEEDED

    def answer(self, reply: Envelope[Any]) -> None:
        self.reply = reply
        self._wake()

    def expire(self) -> None:
        self._wake()

    def _wake(self) -> None:
        self.finished = True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)


class _RequestClock:
    """Times out a bus's requests: one system task sleeping until the earliest deadline.

    Requests are queued per timeout value, so each queue is in deadline order (a deadline
    is the request's start plus its timeout); answered ones are dropped from the front as
    new requests arrive, or all at once when a queue holds more than twice the waiting
    requests. The task wakes at the earliest deadline it knows of (earlier is harmless: it
    looks and sleeps again), wakes the requests whose time is up, and ends once the bus is
    closed and no request waits. A system task, so a request still waiting when its bus
    closes (from a task outside the bus's block) still times out.
    """

    __slots__ = ("closing", "queues", "running", "scope", "wake_at")

    def __init__(self) -> None:
        self.queues: dict[float, deque[_Pending]] = {}
        self.scope: trio.CancelScope | None = None
        self.wake_at = math.inf
        self.running = False
        self.closing = False

    def add(self, pending: _Pending, timeout: float, waiting: int) -> None:
        queue = self.queues.get(timeout)
        if queue is None:
            queue = self.queues[timeout] = deque()
        while queue and queue[0].finished:
            queue.popleft()
        if len(queue) > 2 * waiting + 64:  # one slow request holds many answered behind it
            queue = self.queues[timeout] = deque(p for p in queue if not p.finished)
        queue.append(pending)
        if pending.deadline < self.wake_at:
            self.wake_at = pending.deadline
            if self.scope is not None:
                self.scope.deadline = pending.deadline
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="bus.request_clock")

    def close(self) -> None:
        """The bus closed: end the task once no request waits (wake it to look now)."""
        self.closing = True
        if self.scope is not None:
            self.scope.cancel()

    async def _run(self) -> None:
        try:
            while True:
                with trio.CancelScope(deadline=self.wake_at) as scope:
                    self.scope = scope
                    await trio.sleep_forever()
                self.scope = None
                if not self._expire(trio.current_time()) and self.closing:
                    return
        finally:
            self.running = False
            self.scope = None

    def _expire(self, now: float) -> bool:
        """Wake the requests whose deadline passed; True if some are still waiting."""
        wake_at = math.inf
        for timeout, queue in list(self.queues.items()):
            while queue:
                first = queue[0]
                if not first.finished and first.deadline > now:
                    break
                queue.popleft()
                if not first.finished:
                    first.expire()
            if queue:
                wake_at = min(wake_at, queue[0].deadline)
            else:
                del self.queues[timeout]
        self.wake_at = wake_at
        return wake_at != math.inf


async def _confirmed(env: Envelope[Any]) -> None:
    delivery = env.delivery
    assert delivery is not None
    await delivery.wait()
    if delivery.failures:
        said = "; ".join(f"{f.subscriber}: {f.outcome} ({f.reason})" for f in delivery.failures)
        raise NotDeliveredError(
            f"message {env.id} on {env.topic!r} was not handled by every subscriber: {said}",
            delivery=delivery,
        )


class _ReplyTarget:
    """Routes replies straight to the waiting ``request`` call (no mailbox)."""

    careful = False

    def __init__(self, pending: dict[str, _Pending]) -> None:
        self._pending = pending

    def select(self, env: Envelope[Any]) -> None:
        self.route_offer(env)

    def route_offer(self, env: Envelope[Any]) -> None:
        waiting = self._pending.get(env.headers.get(H_CORRELATION_ID, ""))
        if waiting is not None and not waiting.finished:
            waiting.answer(env)
        else:
            log.warning(
                "reply.unmatched", id=env.id, topic=env.topic,
                correlation_id=env.headers.get(H_CORRELATION_ID),
                bridge=env.headers.get(H_ORIGIN),  # None for a local reply
            )


def _check_reply(codec: Codec[Any], topic: str, payload: Any) -> None:
    try:
        codec.check(topic, payload)
    except PayloadTypeError:
        raise PayloadTypeError(
            f"the reply to a request on {topic!r} must be {codec.type_name} (its reply_type), "
            f"got {describe(payload)}"
        ) from None


def _request_failed_error(topic: str, headers: dict[str, str]) -> RequestFailedError:
    subscriber = headers.get(H_FAILED_SUBSCRIBER, "?")
    error_type = headers.get(H_ERROR_TYPE, "?")
    error = headers.get(H_ERROR, "")
    attempts = int(headers.get(H_ATTEMPTS, "0") or 0)
    return RequestFailedError(
        f"request on {topic!r} failed: subscriber {subscriber!r} raised {error_type}: "
        f"{error} (after {attempts} attempt(s); the request went to the dead-letter topic)",
        subscriber=subscriber, error_type=error_type, error=error, attempts=attempts,
    )


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
    """
    bus = Bus(
        name=name, strict=strict, capacity=capacity, overflow=overflow, retry=retry,
        supervision=supervision, dead_letter_topic=dead_letter_topic, seed=seed,
        tracing=tracing,
    )
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
                    bus._close()
                if not bus._closed:  # the drain timed out: stop the stuck handlers
                    bus._close()
                    nursery.cancel_scope.cancel()
            except BaseException:
                bus._close()
                nursery.cancel_scope.cancel()
                raise
    except BaseExceptionGroup as group:
        only = _only_error(group)
        if only is None:
            raise
        raise only from only.__cause__  # keeps its cause, hides the groups around it
    finally:
        bus._closed = True
        await bus._close_bridges()
        bus._report_undelivered(drain_timeout)
        log.debug("bus.close", bus=name)


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single error inside *group* and any groups nested in it, or None if several."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None
