"""``InMemoryAdapter``: the ``memory`` backend of the facade, on the bus itself.

Facade topics are bus topics carrying JSON objects with a retained log
(``retain=Retention(max_count=...)``); ``consume`` reads that log (``bus.read``),
``subscribe`` is ``bus.subscribe`` (an actor), ``publish`` is a publish with
done-tracking. There is no second broker: whatever the bus offers (stats, recorder,
other subscribers, bridges attached to it) sees the facade's messages, and the other
way round.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bus import (
    Bus,
    BusClosedError,
    ConfigurationError,
    Envelope,
    LogReader,
    RetryPolicy,
    Subscription,
)
from bus.abc import validate_topic

from ._adapter import EventAdapter, MessageCallback
from ._memory_group import Tracker, catch_up
from ._message import EventMessage
from ._on_bus import (
    MessageReader,
    declare,
    done_handling,
    handling,
    publish_and_wait,
    to_message,
)
from ._runner import BusRunner

__all__ = ["InMemoryAdapter", "shared_bus"]

# Options real brokers take when creating a topic: accepted and ignored here, so code
# written for Kafka or Kinesis (`create_topic("t", shard_count=2)`) runs on memory.
_PORTABLE_TOPIC_OPTIONS = frozenset(
    {"partitions", "num_partitions", "replication_factor", "shard_count", "durable", "config"}
)
_CALLBACK_RETRY = RetryPolicy(attempts=1)
"""A callback that raises is not retried by default: the message is dead-lettered and a
waiting publisher gets :class:`~bus.NotDeliveredError`. ``subscribe(retry=...)`` changes it."""

_shared: trio.lowlevel.RunVar[dict[str, BusRunner]] = trio.lowlevel.RunVar("bus_events_shared")


def _runner(name: str) -> BusRunner:
    try:
        runners = _shared.get()
    except LookupError:
        runners = {}
        _shared.set(runners)
    runner = runners.get(name)
    if runner is None:
        runner = runners[name] = BusRunner(name=f"events.{name}", strict=False)
    return runner


async def shared_bus(name: str = "default") -> Bus:
    """The shared bus *name* of this trio run, opened on first use.

    Every ``InMemoryAdapter(bus=name)`` of the run uses it; it closes when the run ends.
    """
    return await _runner(name).start()


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class InMemoryAdapter(EventAdapter):
    """The ``memory`` backend: the facade on a :class:`~bus.Bus` in this process.

    ``bus`` is a bus you opened (``async with open_bus() as bus``: the facade's topics are
    then ordinary topics of your application's bus) or the name of a shared one (default
    ``"default"``: one per trio run, opened on first use, seen by every adapter of the run).

    - ``publish(message)`` returns once every callback subscription of the topic handled
      the message (see ``bus.events._on_bus``); a failed callback makes it raise
      :class:`~bus.NotDeliveredError`.
    - ``subscribe(topic, callback, *, group=None, from_beginning=False, retry=None,
      name=None)``: a bus actor; ``group`` makes competing consumers, ``from_beginning``
      replays what the topic retains first, ``retry`` is its :class:`~bus.RetryPolicy`
      (default: one attempt, then the bus's dead-letter topic).
    - ``consume(topic, *, group=None, from_beginning=True, offset=None, follow=False)``:
      the topic's retained log (``bus.read``): the stored messages, then it ends, unless
      ``follow=True``. A ``group`` commits its position only after each message was
      handled (when the next one is asked for, or on ``commit()``).
    - ``create_topic(topic, max_length=None)`` bounds the log (default
      ``DEFAULT_MAX_LENGTH`` messages); other brokers' options are accepted and ignored.
    """

    def __init__(self, bus: Bus | str = "default") -> None:
        if isinstance(bus, str):
            if not bus:
                raise ConfigurationError("bus name must be a non-empty str")
        elif not isinstance(bus, Bus):
            raise ConfigurationError(f"bus must be a Bus or the name of a shared one, got {bus!r}")
        self._target = bus
        self._bus: Bus | None = bus if isinstance(bus, Bus) else None
        self._state = _State.NEW
        self._subscriptions: list[Subscription] = []
        self._readers: weakref.WeakSet[MessageReader] = weakref.WeakSet()

    def __repr__(self) -> str:
        where = self._target if isinstance(self._target, str) else self._target.name
        return f"<InMemoryAdapter {self._state.value} on bus {where!r}>"

    @property
    def is_connected(self) -> bool:
        return self._state is _State.OPEN

    @property
    def dead_letter_topic(self) -> str:
        """Where failed callbacks' messages and undecodable data go (the bus's)."""
        return self._bus.dead_letter_topic if self._bus is not None else "bus.dead_letter"

    async def connect(self) -> None:
        if isinstance(self._target, str):
            self._bus = await shared_bus(self._target)
        elif self._target.closed:
            raise BusClosedError(f"bus {self._target.name!r} is closed")
        else:
            await trio.lowlevel.checkpoint()
        self._state = _State.OPEN

    async def _open(self) -> Bus:
        if self._state is _State.CLOSED:
            raise BusClosedError(
                "this InMemoryAdapter was disconnected; call connect() to reopen it"
            )
        if self._state is _State.NEW or self._bus is None or self._bus.closed:
            await self.connect()  # lazy connect
        assert self._bus is not None
        return self._bus

    async def disconnect(self) -> None:
        self._state = _State.CLOSED
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        for reader in list(self._readers):
            reader.close()
        await trio.lowlevel.checkpoint()

    async def publish(self, message: EventMessage) -> None:
        bus = await self._open()
        if not isinstance(message, EventMessage):
            raise ConfigurationError(f"publish takes an EventMessage, got {message!r}")
        declare(bus, validate_topic(message.topic))
        await publish_and_wait(bus, message)

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        options = _options(
            "subscribe", kwargs, group=None, from_beginning=False, retry=None, name=None,
            nursery=None,
        )
        group = _group_option(options["group"])
        retry = options["retry"] or _CALLBACK_RETRY
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        validate_topic(topic)
        bus = await self._open()
        declare(bus, topic)
        cell: list[Subscription] = []
        name = _unique_name(bus, options["name"] or _callback_name(topic, callback))
        tracker = None if group is None else Tracker(bus, topic, group)

        async def run_callback(env: Envelope[Any]) -> None:
            token = handling(env, cell[0] if cell else None)
            try:
                await callback(to_message(env))
            finally:
                done_handling(token)

        async def deliver(env: Envelope[Any]) -> None:
            if tracker is None:
                return await run_callback(env)
            try:
                await run_callback(env)
            except Exception:
                if retry.attempts is not None and env.attempt >= retry.attempts:
                    await tracker.handled()  # dead-lettered next: handled for the group
                raise
            await tracker.handled()

        if group is not None:
            # The group's position first (what a `break` left in hand included), as a
            # broker's group resumes at its committed offset; then live, with nothing
            # between (see _memory_group).
            await catch_up(bus, topic, group, from_beginning=bool(options["from_beginning"]),
                           handle=run_callback, subscriber=name)
        subscription = bus.subscribe(
            topic,
            deliver,
            name=name,
            group=None if group is None else f"{group}@{topic}",
            replay=group is None and bool(options["from_beginning"]),
            retry=retry,
        )
        cell.append(subscription)
        self._subscriptions.append(subscription)
        await trio.lowlevel.checkpoint()

    def consume(self, topic: str, **kwargs: Any) -> MessageReader:
        options = _options(
            "consume", kwargs, group=None, from_beginning=True, offset=None, follow=False
        )
        group = _group_option(options["group"])

        async def open_reader() -> LogReader:
            bus = await self._open()
            declare(bus, validate_topic(topic))
            return bus.read(
                topic,
                group=group,
                from_beginning=bool(options["from_beginning"]),
                offset=options["offset"],
                follow=bool(options["follow"]),
            )

        reader = MessageReader(open_reader)
        self._readers.add(reader)
        return reader

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        max_length = kwargs.pop("max_length", None)
        unknown = set(kwargs) - _PORTABLE_TOPIC_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"create_topic({topic!r}): unknown option(s) {sorted(unknown)} for the "
                f"memory backend; it takes max_length and ignores "
                f"{sorted(_PORTABLE_TOPIC_OPTIONS)}"
            )
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigurationError(f"max_length must be a positive int, got {max_length!r}")
        validate_topic(topic)
        declare(await self._open(), topic, max_length)

    async def delete_topic(self, topic: str) -> None:
        (await self._open()).delete_topic(topic)

    async def list_topics(self) -> list[str]:
        return (await self._open()).topics()

    async def drain(self) -> None:
        if self._bus is not None and not self._bus.closed:
            await self._bus.drain()


def _options(method: str, given: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigurationError(
            f"InMemoryAdapter.{method}: unknown option(s) {sorted(unknown)}; "
            f"it takes {', '.join(defaults)}"
        )
    return {**defaults, **given}


def _group_option(group: object) -> str | None:
    if group is None or (isinstance(group, str) and group):
        return group
    raise ConfigurationError(f"group must be a non-empty str or None, got {group!r}")


def _callback_name(topic: str, callback: Callable[..., Awaitable[None]]) -> str:
    return f"{topic}:{getattr(callback, '__qualname__', type(callback).__qualname__)}"


def _unique_name(bus: Bus, base: str) -> str:
    taken = {s.name for s in bus.subscriptions() if not (s.closed and s.stopped)}
    name, n = base, 2
    while name in taken:
        name, n = f"{base}#{n}", n + 1
    return name
