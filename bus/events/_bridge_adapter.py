"""``BridgeAdapter``: a facade backend that is a broker's bridge on a private bus.

One generic adapter serves every broker, so there is one producer and one consumer
implementation per broker — its :class:`~bus.abc.Bridge`:

- ``publish`` is a publish with done-tracking on a private *egress* bus whose only
  subscriber is the bridge's export (``attach(bridge, export=["#"])``): it returns once
  the broker confirmed the message (the bridge's ``export`` returned for it), and raises
  :class:`~bus.NotDeliveredError` if the broker refused it for good.
- ``subscribe`` and ``consume`` each get their own private bus with a consumer bridge
  attached (``import_=[topic]``): a callback is a bus actor there; ``consume`` is an actor
  that hands each message to the iterator and finishes only when the caller asks for the
  next one, so the bridge acknowledges (commits, checkpoints) a message only after it was
  handled. Closing a consumer cancels its bus: what was not handled is not acknowledged,
  and the broker delivers it again.
- ``consume`` ends, by default, once it read what the group had waiting when it started
  (memory's meaning); ``follow=True`` follows. Where the broker says how many messages
  wait (:meth:`BridgeAdapter.start_group`) it ends after that many; where the consumer's
  bridge reports that its ingress caught up (:class:`CatchesUp`: Kinesis, Pub/Sub), it
  ends after the messages its bus had received by then; elsewhere (a bridge with
  neither) once nothing came for ``end_idle`` seconds after its consumer started.
- topic administration is the egress bridge's ``create_topic``/``delete_topic``/
  ``list_topics``.

A broker module subclasses it and says how to build its bridge from the seed's options
(:meth:`BridgeAdapter.make_bridge`); the subclass's ``__init__`` maps and checks options.
"""

from __future__ import annotations

import abc
import itertools
import weakref
from collections.abc import Callable
from typing import Any, NoReturn, Protocol, Self, runtime_checkable

import trio

from bus import Bus, BusClosedError, ConfigurationError, Envelope, RetryPolicy, Subscription
from bus.abc import Bridge, ClosesOnExit, get_logger, validate_topic

from ._adapter import EventAdapter, MessageCallback
from ._message import EventMessage
from ._on_bus import done_handling, handling, publish_and_wait, to_message
from ._runner import BusRunner

__all__ = ["BridgeAdapter", "CatchesUp", "Consumer"]

_log = get_logger("bus.events")
_CALLBACK_RETRY = RetryPolicy(attempts=1)
_serial = itertools.count(1)


@runtime_checkable
class CatchesUp(Protocol):
    """A bridge whose ingress can say it has delivered everything its broker held when
    it started reading (``KinesisBridge``, ``PubSubBridge``)."""

    def on_caught_up(self, callback: Callable[[], None]) -> None:
        """Call *callback* (in the ingress task, synchronously, after delivering the
        last message before the present end) once per ingress run."""


def _declare(bus: Bus, topic: str) -> None:
    if bus.declared(topic) is None:
        bus.topic(topic, dict)


class BridgeAdapter(EventAdapter):
    """An :class:`EventAdapter` over a broker's :class:`~bus.abc.Bridge` (see module).

    ``group`` is the consumer group of ``subscribe``/``consume`` calls that give none
    (default ``"events"``): a stable name, so a second ``pull`` resumes where the first
    one's acknowledgements left the group, as a broker consumer does.
    ``connect_timeout`` bounds reaching the broker (``BackendUnavailableError``).
    ``end_idle`` is how long a ``consume`` that ends waits for one more message on a
    broker that can neither say how many wait (:meth:`start_group` None) nor report
    that it caught up (:class:`CatchesUp`); none of the built-in brokers uses it.
    """

    backend = "bridge"
    """The backend's name in messages and bus names."""

    def __init__(
        self, *, group: str = "events", connect_timeout: float = 10.0,
        close_timeout: float = 10.0, end_idle: float = 2.0,
    ) -> None:
        if not isinstance(group, str) or not group:
            raise ConfigurationError(f"group must be a non-empty str, got {group!r}")
        if isinstance(end_idle, bool) or not isinstance(end_idle, int | float) or end_idle <= 0:
            raise ConfigurationError(f"end_idle must be > 0 seconds, got {end_idle!r}")
        self.end_idle = float(end_idle)
        self.group = group
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._egress: BusRunner | None = None
        self._egress_bridge: Bridge | None = None
        self._closed = False
        self._consumers: weakref.WeakSet[Consumer] = weakref.WeakSet()
        self._callbacks: list[BusRunner] = []
        self._callback_topics: dict[BusRunner, str] = {}
        self._groups: dict[str, set[str]] = {}
        """topic -> the groups this adapter's consumers used on it (delete_topic)."""
        self._prepared: set[str] = set()
        self._leaving: set[BusRunner] = set()
        """Buses of consumers dropped after a ``break`` (cancelled, still closing)."""

    # -- what a broker module provides ----------------------------------------------

    @abc.abstractmethod
    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        """A new bridge: the producer (``group`` and ``topic`` None) or a consumer of
        *topic* in *group*, starting at the oldest kept message or at new ones."""

    async def prepare_topic(self, bridge: Bridge, topic: str) -> None:
        """Before the first publish to *topic*: make the broker keep its messages for
        the default group (a queue or subscription), where the broker needs that."""

    def topic_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Map the seed's ``create_topic`` options to the bridge's; refuse unknown ones."""
        return options

    async def start_group(
        self, bridge: Bridge, topic: str, group: str, from_beginning: bool
    ) -> int | None:
        """Before a consumer of *group* on *topic* starts (a pull or a callback), through
        the producer *bridge*: fix the group's position where the broker would otherwise
        leave it to each consumer (a group that committed nothing yet), and return how
        many messages the group has waiting (a ``consume`` that ends stops after that
        many); None if the broker cannot say (the ``consume`` then ends once nothing
        came for ``end_idle`` seconds)."""
        return None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._egress is not None and self._egress.running

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError(
                f"this {type(self).__name__} was disconnected; call connect() to reopen it"
            )

    async def connect(self) -> None:
        self._closed = False
        await self._producer()

    async def _producer(self) -> tuple[Bus, Bridge]:
        self._check_open()
        if self._egress is None or not self._egress.running:
            bridge = self.make_bridge(name=self.backend, group=None, topic=None,
                                      from_beginning=False)

            async def setup(bus: Bus) -> None:
                await bus.attach(
                    bridge, export=["#"], connect_timeout=self.connect_timeout,
                    close_timeout=self.close_timeout,
                )

            self._egress = BusRunner(setup, name=f"events.{self.backend}", strict=False)
            self._egress_bridge = bridge
            self._prepared.clear()
            await self._egress.start()
        assert self._egress_bridge is not None
        return self._egress.bus, self._egress_bridge

    async def _settle(self) -> None:
        """Wait until the consumers dropped after a ``break`` closed (each left its group,
        bounded by ``close_timeout``), so that a consumer started next joins a group
        those have left, rather than one waiting for them to rejoin or time out."""
        while self._leaving:
            runner = self._leaving.pop()
            with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout + 5):
                await runner.aclose()

    async def disconnect(self) -> None:
        """Stop the consumers (unhandled messages stay unacknowledged), then let the
        producer's bus drain what it still has to send and close its bridge."""
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._settle()
            for consumer in list(self._consumers):
                await consumer.aclose()
            callbacks, self._callbacks = self._callbacks, []
            self._callback_topics.clear()
            for runner in callbacks:
                await runner.aclose()
            if self._egress is not None:
                egress, self._egress = self._egress, None
                with trio.move_on_after(self.close_timeout + 5):
                    await egress.aclose()

    async def drain(self) -> None:
        for runner in self._callbacks:
            if runner.running:
                await runner.bus.drain()

    # -- messages ---------------------------------------------------------------------

    async def publish(self, message: EventMessage) -> None:
        if not isinstance(message, EventMessage):
            raise ConfigurationError(f"publish takes an EventMessage, got {message!r}")
        topic = validate_topic(message.topic)
        bus, bridge = await self._producer()
        if topic not in self._prepared:
            await self.prepare_topic(bridge, topic)
            self._prepared.add(topic)
        _declare(bus, topic)
        await publish_and_wait(bus, message)

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        options = _options(
            type(self).__name__, "subscribe", kwargs, group=None, from_beginning=False,
            retry=None, nursery=None,
        )
        retry = options["retry"] or _CALLBACK_RETRY
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        validate_topic(topic)
        self._check_open()
        group = _group(options["group"], self.group)
        bridge = self.make_bridge(
            name=f"{self.backend}-sub{next(_serial)}", group=group, topic=topic,
            from_beginning=bool(options["from_beginning"]),
        )
        cell: list[Subscription] = []

        async def deliver(env: Envelope[Any]) -> None:
            token = handling(env, cell[0] if cell else None)
            try:
                await callback(to_message(env))
            finally:
                done_handling(token)

        async def setup(bus: Bus) -> None:
            _declare(bus, topic)
            name = getattr(callback, "__qualname__", type(callback).__qualname__)
            cell.append(bus.subscribe(topic, deliver, name=f"{topic}:{name}", retry=retry))
            await bus.attach(
                bridge, import_=[topic], connect_timeout=self.connect_timeout,
                close_timeout=self.close_timeout,
            )

        runner = BusRunner(setup, name=f"events.{bridge.name}", strict=False)
        self._groups.setdefault(topic, set()).add(group)
        await self._settle()
        _, producer = await self._producer()
        await self.start_group(producer, topic, group, bool(options["from_beginning"]))
        await runner.start()
        self._callbacks.append(runner)
        self._callback_topics[runner] = topic

    def consume(self, topic: str, **kwargs: Any) -> Consumer:
        if "offset" in kwargs:
            raise ConfigurationError(
                f"{type(self).__name__}.consume: offset= is the memory backend's; a broker's "
                "group resumes at its committed position (from_beginning= starts a new one)"
            )
        options = _options(
            type(self).__name__, "consume", kwargs, group=None, from_beginning=True,
            follow=False,
        )
        group = _group(options["group"], self.group)
        self._groups.setdefault(topic, set()).add(group)
        consumer = Consumer(
            self, topic, group, bool(options["from_beginning"]), follow=bool(options["follow"])
        )
        self._consumers.add(consumer)
        return consumer

    # -- topics -----------------------------------------------------------------------

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        validate_topic(topic)
        options = self.topic_options(dict(kwargs))
        _, bridge = await self._producer()
        await bridge.create_topic(topic, **options)
        await self.prepare_topic(bridge, topic)
        self._prepared.add(topic)

    async def delete_topic(self, topic: str) -> None:
        """Stop this adapter's consumers of *topic* (a live Kafka consumer would have the
        broker create the topic again; what they had not handled stays with the broker
        until the deletion), then remove what the facade created for it
        (:meth:`remove_topic`)."""
        validate_topic(topic)
        _, bridge = await self._producer()
        with trio.CancelScope(shield=True):
            await self._settle()
            for consumer in [c for c in self._consumers if c.topic == topic]:
                await consumer.aclose()
            for runner in [r for r, t in self._callback_topics.items() if t == topic]:
                del self._callback_topics[runner]
                self._callbacks.remove(runner)
                with trio.move_on_after(self.close_timeout + 5):
                    await runner.aclose()
        await self.remove_topic(bridge, topic, {self.group} | self._groups.pop(topic, set()))
        self._prepared.discard(topic)

    async def remove_topic(self, bridge: Bridge, topic: str, groups: set[str]) -> None:
        """Delete *topic* on the broker with what the facade made for it: the topic
        (stream) and, where the broker has them, the queues or subscriptions of *groups*
        (the default group and those this adapter's consumers used)."""
        await bridge.delete_topic(topic)

    async def list_topics(self) -> list[str]:
        _, bridge = await self._producer()
        return sorted(await bridge.list_topics())


class Consumer(ClosesOnExit):
    """What :meth:`BridgeAdapter.consume` returns: messages of one topic from the broker.

    It reads what its group had waiting when it started, then ends (see the module
    docstring); with ``follow=True`` it follows the topic until you stop: ``break`` and
    ``aclose()`` (or ``async with``), or the adapter's ``disconnect()``. A message is
    acknowledged to the broker once you ask for the next one (or call ``commit()``); the
    one in hand when the consumer closes is not, so the broker delivers it again.
    """

    def __init__(
        self, adapter: BridgeAdapter, topic: str, group: str, from_beginning: bool, *,
        follow: bool = False,
    ):
        self._adapter = adapter
        self.topic = topic
        self._group = group
        self._from_beginning = from_beginning
        self._follow = follow
        self._remaining: int | None = None
        """Messages left to read before the end, where the broker said how many."""
        self._signalled = False
        """The bridge reports when it caught up (:class:`CatchesUp`)."""
        self._end_at: int | None = None
        """Messages the consumer's bus had received when the bridge caught up."""
        self._taken = 0
        self._waiting: trio.CancelScope | None = None
        self._runner: BusRunner | None = None
        self._receive: trio.MemoryReceiveChannel[tuple[Envelope[Any], _InHand]] | None = None
        self._pending: _InHand | None = None
        self._last: _InHand | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def _open(self) -> trio.MemoryReceiveChannel[tuple[Envelope[Any], _InHand]]:
        adapter, topic = self._adapter, validate_topic(self.topic)
        adapter._check_open()
        await adapter._settle()
        _, producer = await adapter._producer()
        waiting = await adapter.start_group(producer, topic, self._group, self._from_beginning)
        if not self._follow:
            self._remaining = waiting
        send, receive = trio.open_memory_channel[tuple[Envelope[Any], _InHand]](0)
        bridge = adapter.make_bridge(
            name=f"{adapter.backend}-pull{next(_serial)}", group=self._group, topic=topic,
            from_beginning=self._from_beginning,
        )
        if not self._follow and waiting is None and isinstance(bridge, CatchesUp):
            self._signalled = True
            # weakly: the bridge must not keep this consumer alive (a `break` drops it,
            # and __del__ stops it at once, handing back what it held)
            caught_up = weakref.WeakMethod(self._caught_up)

            def report() -> None:
                method = caught_up()
                if method is not None:
                    method()

            bridge.on_caught_up(report)

        async def hand_over(env: Envelope[Any]) -> None:
            item = _InHand()
            await send.send((env, item))
            try:
                await item.handled.wait()  # done (and acknowledged) only once handled
            finally:
                item.returned.set()

        async def setup(bus: Bus) -> None:
            _declare(bus, topic)
            bus.subscribe(topic, hand_over, name=f"{topic}:pull", retry=_CALLBACK_RETRY)
            await bus.attach(
                bridge, import_=[topic], connect_timeout=adapter.connect_timeout,
                close_timeout=adapter.close_timeout,
            )

        self._runner = BusRunner(
            setup, name=f"events.{bridge.name}", strict=False, drain_timeout=0.0
        )
        await self._runner.start()
        return receive

    async def __anext__(self) -> EventMessage:
        self.commit()
        if self._closed:
            raise StopAsyncIteration
        if self._receive is None:
            self._receive = await self._open()
        try:
            if self._follow:
                env, handled = await self._receive.receive()
            elif self._signalled:
                while self._end_at is None or self._taken < self._end_at:
                    with trio.CancelScope() as self._waiting:
                        env, handled = await self._receive.receive()
                        break
                else:
                    await self._end()
                self._waiting = None
                self._taken += 1
            elif self._remaining is not None:
                if self._remaining <= 0:
                    await self._end()
                env, handled = await self._receive.receive()
                self._remaining -= 1
            else:
                with trio.move_on_after(self._adapter.end_idle):
                    env, handled = await self._receive.receive()
                    self._pending = self._last = handled
                    return to_message(env)
                await self._end()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        self._pending = self._last = handled
        return to_message(env)

    def _caught_up(self) -> None:
        """The bridge delivered what its broker held (called in its ingress task): the
        pull ends after what the consumer's bus received on the topic until now."""
        runner = self._runner
        if self._end_at is not None or runner is None or not runner.running:
            return
        stats = runner.bus.stats().topics.get(self.topic)
        self._end_at = 0 if stats is None else stats.published
        if self._waiting is not None:
            self._waiting.cancel()  # a receive() waiting for more wakes up to end

    async def _end(self) -> NoReturn:
        """The end of what the group had waiting: once the last message handled is done
        on the consumer's bus (its bridge acknowledges it when closing), close."""
        if self._last is not None:
            with trio.move_on_after(self._adapter.close_timeout):
                await self._last.returned.wait()
        await self.aclose()
        raise StopAsyncIteration

    def commit(self) -> None:
        """Count the message last handed out as handled: the bridge may acknowledge it."""
        if self._pending is not None:
            self._pending.handled.set()
            self._pending = None

    async def aclose(self) -> None:
        """Stop consuming; a message in hand and not committed is not acknowledged."""
        self._closed = True
        self._pending = None
        runner, self._runner = self._runner, None
        if runner is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(
                self._adapter.close_timeout + 5
            ):
                await runner.aclose()
        if self._receive is not None:
            await self._receive.aclose()


    def __del__(self) -> None:
        # A consumer abandoned by `break` must not keep consuming (and holding a message
        # back from its group) until the adapter disconnects: like a Kafka consumer
        # leaving its group, it stops, and what it held is delivered again.
        # The adapter's next consumer waits for it to have left (BridgeAdapter._settle).
        runner = self._runner
        if runner is not None:
            try:
                runner.cancel()
                self._adapter._leaving.add(runner)
            except Exception:  # interpreter shutdown: trio may be half torn down
                pass


class _InHand:
    """A message handed to the iterator: *handled* once the caller asked for the next
    one, *returned* once the bus-side handler finished with it (so it is done)."""

    __slots__ = ("handled", "returned")

    def __init__(self) -> None:
        self.handled = trio.Event()
        self.returned = trio.Event()


def _options(cls: str, method: str, given: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigurationError(
            f"{cls}.{method}: unknown option(s) {sorted(unknown)}; it takes "
            f"{', '.join(k for k in defaults if k != 'nursery')}"
        )
    return {**defaults, **given}


def _group(group: object, default: str) -> str:
    if group is None:
        return default
    if isinstance(group, str) and group:
        return group
    raise ConfigurationError(f"group must be a non-empty str or None, got {group!r}")

