"""``RedisStreamsAdapter``: the seed's custom adapter, a facade backend on Redis Streams.

One stream per topic (``XADD``, optionally capped with ``MAXLEN``); consumers are
consumer groups (``XREADGROUP``), and an entry is acknowledged (``XACK``) only after the
callback returned, so an entry whose consumer died stays pending and is taken over by a
live member of the group (``XAUTOCLAIM`` once it has been idle for ``claim_idle``
seconds): at-least-once, nothing lost. An entry whose callback keeps raising, or that
Redis delivered more than ``max_deliveries`` times, goes to the dead-letter stream with
the reason and is acknowledged (:mod:`._failures`). redis-py's asyncio client runs on an asyncio
loop in a thread of its own (:mod:`bridges._runtime`); every call crosses once.

This module maps the :class:`EventAdapter` contract onto Redis; the entry format and
the error mapping are in :mod:`._wire`, the redis-py calls in :mod:`._client`.
"""

from __future__ import annotations

import enum
import importlib.util
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import trio

from bus import (
    BackendError,
    BusClosedError,
    ConfigurationError,
    MissingDependencyError,
    RetryPolicy,
    TopicError,
)
from bus.abc import get_logger, mask_url
from bus.events import EventAdapter, EventMessage, MessageCallback, encode_message

from .. import _runtime
from . import _client
from ._failures import TooManyDeliveries, dead_letter_fields, handle_with_retries
from ._reader import Reader, check_topic
from ._wire import decode_entry, encode_entry, entry_id, is_client_error, is_no_group, translate

__all__ = ["RedisStreamsAdapter"]

T = TypeVar("T")
log = get_logger("bus.redis")

_SCHEMES = ("redis://", "rediss://", "unix://")
# Options other backends take when creating a topic: accepted and ignored, so code
# written for Kafka or Kinesis (`create_topic("t", shard_count=2)`) runs here too.
_PORTABLE_TOPIC_OPTIONS = frozenset(
    {"partitions", "num_partitions", "replication_factor", "shard_count", "durable", "config"}
)
_ACK_TIMEOUT = 5.0
_CALLBACK_RETRY = RetryPolicy(attempts=1)
"""A callback that raises is not retried by default (as on the other backends): its entry
is dead-lettered; ``subscribe(retry=RetryPolicy(...))`` changes it."""
_names = itertools.count(1)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(eq=False)
class _Subscription:
    topic: str
    group: str
    consumer: str
    private: bool
    callback: MessageCallback
    retry: RetryPolicy
    subscriber: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    in_flight: int = 0
    finished: bool = False


class RedisStreamsAdapter(EventAdapter):
    """Redis Streams as a facade backend (register it: ``bridges.redis.register()``).

    ``redis_url`` defaults to the ``REDIS_URL`` environment variable (the factory passes
    ``settings.redis_url`` for a backend registered as ``redis-streams``). ``maxlen``
    caps every stream at about that many entries (``XADD MAXLEN ~``; exactly with
    ``approximate=False``); ``create_topic(name, max_length=N)`` caps one. ``consumer``
    names this process in its consumer groups (default: host, pid and a counter).
    ``claim_idle`` is how long (seconds) an entry may stay unacknowledged by another
    member of the group before a subscription here takes it over; ``block`` how long one
    read waits for new entries; ``batch`` how many entries one read takes.

    ``subscribe(topic, callback, *, group=None, consumer=None, from_beginning=False,
    retry=None, nursery=None)`` needs a ``nursery`` (``BaseEvent``'s ``async with`` gives
    its own): a task there first reclaims idle pending entries of the group, then reads
    its own pending ones, then new ones. Without ``group`` the subscription has a group of
    its own (every message), removed when the adapter disconnects. A new group starts at
    the end of the stream unless ``from_beginning``; an existing one resumes where it was.
    A callback that raises is tried again by ``retry`` (a :class:`~bus.RetryPolicy`;
    default one attempt), then its entry is dead-lettered to ``dead_letter_topic``
    (default ``bus.dead_letter``) with the reason and acknowledged, and the subscription
    goes on. An entry Redis has delivered more than ``max_deliveries`` times (default 10;
    None: no limit) without an acknowledgement (its consumers died or stopped while
    holding it) is dead-lettered without calling the callback.

    ``consume(topic, *, group=None, consumer=None, from_beginning=True, follow=False,
    last_id=None)`` yields the stored messages and ends (``follow=True``: then waits for
    new ones); ``last_id`` starts after that entry id. The seed's ``consumer_group`` and
    ``consumer_name`` are accepted for ``group`` and ``consumer``.
    Without ``group`` it reads the stream (``XREAD``); with one it reads as a member and
    acknowledges a message when the next one is asked for. A group reader left early
    (``break``) leaves the message in hand and those read ahead (up to ``batch``)
    pending: its consumer name reads them again first, or another member reclaims them.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        maxlen: int | None = None,
        approximate: bool = True,
        consumer: str | None = None,
        claim_idle: float = 30.0,
        block: float = 1.0,
        batch: int = 100,
        connect_timeout: float = 5.0,
        drain_timeout: float = 30.0,
        max_deliveries: int | None = 10,
        dead_letter_topic: str = "bus.dead_letter",
    ) -> None:
        url = redis_url or os.environ.get("REDIS_URL") or None
        if url is None:
            raise ConfigurationError(
                "RedisStreamsAdapter needs a server: pass redis_url='redis://host:6379/0' "
                "or set REDIS_URL"
            )
        if not isinstance(url, str) or not url.startswith(_SCHEMES):
            shown = mask_url(url) if isinstance(url, str) else repr(url)
            raise ConfigurationError(
                f"redis_url must be a redis://, rediss:// or unix:// URL, got {shown!r}"
            )
        if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 1):
            raise ConfigurationError(f"maxlen must be a positive int or None, got {maxlen!r}")
        for name, value in (("claim_idle", claim_idle), ("block", block),
                            ("connect_timeout", connect_timeout)):
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch must be a positive int, got {batch!r}")
        if max_deliveries is not None and (
            isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int)
            or max_deliveries < 1
        ):
            raise ConfigurationError(
                f"max_deliveries must be a positive int or None (no limit), got "
                f"{max_deliveries!r}"
            )
        check_topic(dead_letter_topic)
        if importlib.util.find_spec("redis") is None:
            raise MissingDependencyError(
                "RedisStreamsAdapter needs redis-py, which is not installed: "
                "pip install 'trio-bus[redis]'"
            )
        self._url = url
        self._password = _password(url)
        self.maxlen = maxlen
        self.approximate = approximate
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{next(_names)}"
        self.claim_idle = float(claim_idle)
        self.block_ms = max(1, int(block * 1000))
        self.batch = batch
        self.connect_timeout = float(connect_timeout)
        self.drain_timeout = float(drain_timeout)
        self.max_deliveries = max_deliveries
        self.dead_letter_topic = dead_letter_topic
        """Where entries that cannot be handled go (``BaseEvent`` sends undecodable data
        there too)."""
        self._state = _State.NEW
        self._rt: _runtime.Runtime | None = None
        self._client: Any = None
        self._connecting = trio.Lock()
        self._maxlens: dict[str, int] = {}
        self._subscriptions: list[_Subscription] = []
        self.delivered = 0
        """Entries handled by a callback and acknowledged."""
        self.reclaimed = 0
        """Entries taken over from idle members of a group (XAUTOCLAIM)."""
        self.dead_lettered = 0
        """Entries sent to the dead-letter stream (and acknowledged)."""

    @property
    def url(self) -> str:
        """The server URL with its password masked."""
        return mask_url(self._url)

    def __repr__(self) -> str:
        return f"<RedisStreamsAdapter {self._state.value} {self.url} consumer={self.consumer!r}>"

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connecting:
            if self._state is _State.OPEN:
                return
            rt = await _runtime.start_runtime("thread")
            try:
                self._client = await rt.run(_client.open_client, self._url, self.connect_timeout)
            except BaseException as exc:
                await rt.aclose()
                if isinstance(exc, Exception) and is_client_error(exc):
                    error = translate(exc, self._url, self._password)
                    log.warning("redis_streams.connect_failed", url=self.url, error=str(error))
                    raise error from exc
                raise
            self._rt, self._state = rt, _State.OPEN
            log.info("redis_streams.connected", url=self.url, consumer=self.consumer)

    async def disconnect(self) -> None:
        if self._state is _State.CLOSED:
            return
        was_open, self._state = self._state is _State.OPEN, _State.CLOSED
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            sub.scope.cancel()
        rt, self._rt = self._rt, None
        if not was_open or rt is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(_ACK_TIMEOUT):
            for sub in subscriptions:
                if sub.private:  # nobody else reads a private group: leave no garbage
                    try:
                        await rt.run(_client.destroy_group, self._client, sub.topic, sub.group)
                    except Exception as exc:
                        log.info("redis_streams.group_not_removed", group=sub.group,
                                 error=str(translate(exc, self._url, self._password)))
            try:
                await rt.run(_client.close, self._client)
            except Exception as exc:
                log.info("redis_streams.close_failed",
                         error=str(translate(exc, self._url, self._password)))
        await rt.aclose()
        self._client = None

    async def _open(self) -> None:
        if self._state is _State.CLOSED:
            raise BusClosedError(
                "this RedisStreamsAdapter was disconnected; call connect() to reopen it"
            )
        if self._state is not _State.OPEN:
            await self.connect()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a :mod:`._client` function on the loop; translate redis-py's errors."""
        # A subscription cancelled by disconnect() may come here between two calls (after
        # its shielded XACK): it must see Cancelled, not the runtime already gone.
        await trio.lowlevel.checkpoint_if_cancelled()
        rt = self._rt
        if rt is None:
            raise BusClosedError("this RedisStreamsAdapter was disconnected")
        try:
            return await rt.run(fn, self._client, *args)
        except Exception as exc:
            if is_client_error(exc):
                raise translate(exc, self._url, self._password) from exc
            raise

    # -- publish ------------------------------------------------------------------------

    async def publish(self, message: EventMessage) -> None:
        encode_message(message)  # the checks every backend makes (PayloadTypeError)
        check_topic(message.topic)
        await self._open()
        maxlen = self._maxlens.get(message.topic, self.maxlen)
        await self._call(
            _client.add, message.topic, encode_entry(message), maxlen, self.approximate
        )

    # -- subscribe ----------------------------------------------------------------------

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        options = _options("subscribe", _seed_names(kwargs), group=None, consumer=None,
                           from_beginning=False, retry=None, nursery=None)
        nursery = options["nursery"]
        if not isinstance(nursery, trio.Nursery):
            raise ConfigurationError(
                "RedisStreamsAdapter.subscribe delivers from a background task and needs a "
                "nursery for it: use `async with YourEvent(...) as events:` (BaseEvent "
                f"passes its own) or pass nursery=; got {nursery!r}"
            )
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        retry = options["retry"] or _CALLBACK_RETRY
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        check_topic(topic)
        group = _name_option("group", options["group"])
        consumer = _name_option("consumer", options["consumer"]) or self.consumer
        sub = _Subscription(
            topic=topic,
            group=group or f"trio-bus.{self.consumer}.{next(_names)}",
            consumer=consumer,
            private=group is None,
            callback=callback,
            retry=retry,
            subscriber=getattr(callback, "__qualname__", type(callback).__qualname__),
        )
        await self._open()
        start = "0" if options["from_beginning"] else "$"
        await self._call(_client.create_group, topic, sub.group, start)
        self._subscriptions.append(sub)
        nursery.start_soon(self._serve, sub)

    async def _serve(self, sub: _Subscription) -> None:
        try:
            with sub.scope:
                await self._deliver(sub)
        finally:
            sub.finished = True
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

    async def _deliver(self, sub: _Subscription) -> None:
        claim_every = min(max(self.claim_idle / 2, 0.05), 10.0)
        next_claim = trio.current_time()
        own_pending = True  # a consumer restarted under its old name finds its entries
        while True:
            try:
                entries: list[_client.Entry] = []
                redelivered = True  # taken over or read again: Redis counted deliveries
                if trio.current_time() >= next_claim:
                    entries = await self._call(
                        _client.autoclaim, sub.topic, sub.group, sub.consumer,
                        int(self.claim_idle * 1000), self.batch,
                    )
                    next_claim = trio.current_time() + claim_every
                    if entries:
                        self.reclaimed += len(entries)
                        log.info("redis_streams.reclaimed", topic=sub.topic, group=sub.group,
                                 consumer=sub.consumer, count=len(entries))
                if not entries and own_pending:
                    entries = await self._call(
                        _client.read_group, sub.topic, sub.group, sub.consumer, "0",
                        self.batch, None,
                    )
                    own_pending = bool(entries)
                if not entries:
                    block = min(self.block_ms, max(1, int(claim_every * 1000)))
                    entries = await self._call(
                        _client.read_group, sub.topic, sub.group, sub.consumer, ">",
                        self.batch, block,
                    )
                    redelivered = False  # new entries: delivered once, now
                counts = None
                if redelivered and entries and self.max_deliveries is not None:
                    counts = await self._call(
                        _client.delivery_counts, sub.topic, sub.group, [i for i, _ in entries]
                    )
            except BackendError as exc:
                if is_no_group(exc.__cause__ or exc):
                    log.info("redis_streams.topic_gone", topic=sub.topic, group=sub.group)
                    return  # the topic was deleted
                raise
            await self._handle(sub, entries, counts)

    async def _handle(
        self, sub: _Subscription, entries: list[_client.Entry], counts: list[int] | None
    ) -> None:
        done: list[bytes] = []
        sub.in_flight = len(entries)
        limit = self.max_deliveries
        try:
            for n, (raw_id, fields) in enumerate(entries):
                if not fields:  # an entry trimmed or deleted while pending has none: drop it
                    done.append(raw_id)
                    continue
                if counts is not None and limit is not None and counts[n] > limit:
                    reason = TooManyDeliveries(
                        f"Redis delivered entry {raw_id.decode()} {counts[n]} times without "
                        f"an acknowledgement (max_deliveries={limit}): the consumers that "
                        f"took it died or stopped while holding it"
                    )
                    await self._dead_letter(sub, raw_id, fields, reason, counts[n] - 1)
                    continue
                message = decode_entry(sub.topic, raw_id, fields)
                failed = await handle_with_retries(
                    partial(sub.callback, message), sub.retry, topic=sub.topic,
                    group=sub.group, entry=raw_id.decode(),
                )
                if failed is None:
                    done.append(raw_id)
                else:
                    await self._dead_letter(sub, raw_id, fields, *failed)
        finally:
            # Acknowledge what the callback finished, also when a later one raised or
            # the subscription is being cancelled: those must not be delivered again.
            if done:
                with trio.CancelScope(shield=True), trio.move_on_after(_ACK_TIMEOUT):
                    try:
                        await self._call(_client.ack, sub.topic, sub.group, done)
                        self.delivered += sum(1 for _, f in entries[: len(done)] if f)
                    except (BackendError, BusClosedError) as exc:
                        # Not acknowledged: the group delivers them again (at-least-once).
                        log.warning("redis_streams.ack_failed", topic=sub.topic,
                                    group=sub.group, count=len(done), error=str(exc))
            sub.in_flight = 0

    async def _dead_letter(
        self, sub: _Subscription, raw_id: bytes, fields: dict[bytes, bytes],
        error: BaseException, attempts: int,
    ) -> None:
        """Send the entry to the dead-letter stream and acknowledge it, atomically."""
        dead = self.dead_letter_topic
        log.warning("redis_streams.dead_lettered", topic=sub.topic, group=sub.group,
                    entry=raw_id.decode(), dead_letter_topic=dead, attempts=attempts,
                    error=repr(error))
        # Shielded and bounded, as acks are: a subscription cancelled now still records
        # what its callback did; if the time runs out the entry stays pending (at most
        # handled once more), the transaction being all or nothing.
        with trio.CancelScope(shield=True), trio.move_on_after(_ACK_TIMEOUT) as scope:
            await self._call(
                _client.dead_letter, sub.topic, sub.group, raw_id, dead,
                dead_letter_fields(fields, error=error, topic=sub.topic,
                                   subscriber=sub.subscriber, attempts=attempts),
                self._maxlens.get(dead, self.maxlen), self.approximate,
            )
            self.dead_lettered += 1
        if scope.cancelled_caught:
            log.warning("redis_streams.dead_letter_timeout", topic=sub.topic, group=sub.group,
                        entry=raw_id.decode(), seconds=_ACK_TIMEOUT)

    async def drain(self) -> None:
        """Wait until each subscription's group has been handed every entry that was in
        its stream when ``drain`` was called and this adapter has acknowledged all it
        took (bounded by ``drain_timeout``)."""
        if self._state is not _State.OPEN:
            return
        with trio.move_on_after(self.drain_timeout) as scope:
            for sub in list(self._subscriptions):
                target = await self._call(_client.last_id, sub.topic)
                while target is not None and not sub.finished:
                    position = await self._call(_client.group_position, sub.topic, sub.group)
                    if position is None or (
                        entry_id(position) >= entry_id(target) and sub.in_flight == 0
                    ):
                        break
                    await trio.sleep(0.01)
        if scope.cancelled_caught:
            log.warning("redis_streams.drain_timeout", seconds=self.drain_timeout)

    # -- consume ------------------------------------------------------------------------

    def consume(self, topic: str, **kwargs: Any) -> Reader:
        options = _options("consume", _seed_names(kwargs), group=None, consumer=None,
                           from_beginning=True, follow=False, last_id=None)
        group = _name_option("group", options["group"])
        consumer = _name_option("consumer", options["consumer"]) or self.consumer
        reader = Reader(self, topic, group, consumer,
                         bool(options["from_beginning"]), bool(options["follow"]))
        last_id = options["last_id"]
        if last_id is not None:
            if group is not None or not isinstance(last_id, str):
                raise ConfigurationError(
                    f"last_id must be a stream id str ('0' for the beginning) and reads "
                    f"without a group; got last_id={last_id!r}, group={group!r}"
                )
            reader.start_after(last_id)
        return reader

    # -- topics -------------------------------------------------------------------------

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        max_length = kwargs.pop("max_length", None)
        unknown = set(kwargs) - _PORTABLE_TOPIC_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"create_topic({topic!r}): unknown option(s) {sorted(unknown)} for Redis "
                f"Streams; it takes max_length and ignores {sorted(_PORTABLE_TOPIC_OPTIONS)}"
            )
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ConfigurationError(f"max_length must be a positive int, got {max_length!r}")
        check_topic(topic)
        await self._open()
        kind = await self._call(_client.stream_type, topic)
        if kind not in ("none", "stream"):
            raise TopicError(f"{topic!r} exists on Redis as a {kind}, not a stream")
        await self._call(_client.create_stream, topic)
        if max_length is not None:
            self._maxlens[topic] = max_length
            await self._call(_client.trim, topic, max_length, self.approximate)

    async def delete_topic(self, topic: str) -> None:
        check_topic(topic)
        await self._open()
        kind = await self._call(_client.stream_type, topic)
        if kind == "none":
            raise TopicError(f"no topic {topic!r} on Redis at {self.url}")
        if kind != "stream":
            raise TopicError(f"{topic!r} is a Redis {kind}, not a stream: not deleted")
        await self._call(_client.delete_stream, topic)
        self._maxlens.pop(topic, None)

    async def list_topics(self) -> list[str]:
        await self._open()
        return await self._call(_client.list_streams)


def _options(method: str, given: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigurationError(
            f"RedisStreamsAdapter.{method}: unknown option(s) {sorted(unknown)}; "
            f"it takes {', '.join(defaults)}"
        )
    return {**defaults, **given}


def _seed_names(given: dict[str, Any]) -> dict[str, Any]:
    # The seed's own adapter spells them consumer_group / consumer_name.
    renamed = dict(given)
    for seed, ours in (("consumer_group", "group"), ("consumer_name", "consumer")):
        if seed in renamed:
            if ours in renamed:
                raise ConfigurationError(f"pass {ours}= or {seed}=, not both")
            renamed[ours] = renamed.pop(seed)
    return renamed


def _name_option(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigurationError(f"{name} must be a non-empty str or None, got {value!r}")


def _password(url: str) -> str | None:
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query).get("password")
        return parts.password or (query[0] if query else None)
    except ValueError:
        return None
