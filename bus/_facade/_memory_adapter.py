"""``InMemoryAdapter``: the ``memory`` backend of the facade, over a :class:`MemoryBroker`.

This module maps the :class:`EventAdapter` contract onto the broker: lifecycle
(lazy connect, refusal after disconnect), option checking, and the choice between
inline and background delivery for ``subscribe``. Delivery semantics themselves are the
broker's (:mod:`._memory_broker`).
"""

from __future__ import annotations

import enum
import weakref
from typing import Any

import trio

from .._errors import BusClosedError, ConfigurationError
from ._adapter import EventAdapter, MessageCallback
from ._memory_broker import MemoryBroker, check_topic_name
from ._memory_log import Group, Subscription
from ._memory_reader import MemoryReader
from ._message import EventMessage

__all__ = ["InMemoryAdapter"]

# Options real brokers take when creating a topic. Accepted and ignored here so code
# written for Kafka or Kinesis (`create_topic("t", shard_count=2)`) runs on memory;
# anything else is a typo and is refused.
_PORTABLE_TOPIC_OPTIONS = frozenset(
    {"partitions", "num_partitions", "replication_factor", "shard_count", "durable", "config"}
)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class InMemoryAdapter(EventAdapter):
    """The ``memory`` backend: no dependencies, Kafka-like semantics, one process.

    ``broker`` is a :class:`MemoryBroker` or the name of a shared one (default
    ``"default"``: every adapter in the process sees the same topics).

    ``subscribe(topic, callback, *, group=None, from_beginning=False, nursery=None)``:
    without ``nursery`` the callback runs *inline*, in the task that publishes, before
    ``publish`` returns (no task of ours exists to run it, and inline keeps tests
    deterministic); with a nursery it runs in a background task there. Each subscription
    without ``group`` is its own group (gets every message); subscriptions and readers
    sharing a ``group`` share its messages. A new group starts at the end of the log
    unless ``from_beginning``; an existing group resumes at its committed offset.

    ``consume(topic, *, group=None, from_beginning=True, follow=True)`` returns a
    :class:`MemoryReader`: stored messages first, then new ones as they arrive
    (``follow=False`` stops at the end instead).
    """

    def __init__(self, broker: MemoryBroker | str = "default") -> None:
        if isinstance(broker, str):
            broker = MemoryBroker.named(broker)
        elif not isinstance(broker, MemoryBroker):
            raise ConfigurationError(
                f"broker must be a MemoryBroker or a broker name, got {broker!r}"
            )
        self.broker = broker
        self._state = _State.NEW
        self._subscriptions: list[Subscription] = []
        self._readers: weakref.WeakSet[MemoryReader] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<InMemoryAdapter {self._state.value} on {self.broker!r}>"

    @property
    def is_connected(self) -> bool:
        return self._state is _State.OPEN

    def _ensure_open(self) -> None:
        if self._state is _State.CLOSED:
            raise BusClosedError(
                "this InMemoryAdapter was disconnected; call connect() to reopen it"
            )
        self._state = _State.OPEN  # lazy connect: nothing to dial for memory

    async def connect(self) -> None:
        await trio.lowlevel.checkpoint()
        self._state = _State.OPEN

    async def disconnect(self) -> None:
        self._state = _State.CLOSED
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        for reader in list(self._readers):
            reader.close()
        await trio.lowlevel.checkpoint()

    async def publish(self, message: EventMessage) -> None:
        self._ensure_open()
        await self.broker.publish(message)

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        options = _options("subscribe", kwargs, group=None, from_beginning=False, nursery=None)
        group, from_beginning, nursery = (
            _group_option(options["group"]),
            bool(options["from_beginning"]),
            options["nursery"],
        )
        if nursery is not None and not isinstance(nursery, trio.Nursery):
            raise ConfigurationError(f"nursery must be a trio.Nursery, got {nursery!r}")
        self._ensure_open()
        check_topic_name(topic)
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        if nursery is None:
            subscription = await self.broker.subscribe(
                topic, callback, group=group, from_beginning=from_beginning
            )
        else:
            subscription = await nursery.start(
                _serve, self.broker, topic, callback, group, from_beginning
            )
        self._subscriptions.append(subscription)

    def consume(self, topic: str, **kwargs: Any) -> MemoryReader:
        options = _options("consume", kwargs, group=None, from_beginning=True, follow=True)
        group = _group_option(options["group"])
        from_beginning, follow = bool(options["from_beginning"]), bool(options["follow"])

        def open_group() -> Group:
            # Runs on the first __anext__, so errors surface from the iterator and a
            # reader made before connecting connects lazily, like the other methods.
            self._ensure_open()
            check_topic_name(topic)
            return self.broker.group(topic, group, from_beginning=from_beginning)

        reader = MemoryReader(open_group, follow=follow)
        self._readers.add(reader)
        return reader

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        self._ensure_open()
        max_length = kwargs.pop("max_length", None)
        unknown = set(kwargs) - _PORTABLE_TOPIC_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"create_topic({topic!r}): unknown option(s) {sorted(unknown)} for the "
                f"memory backend; it takes max_length and ignores "
                f"{sorted(_PORTABLE_TOPIC_OPTIONS)}"
            )
        self.broker.create_topic(topic, max_length=max_length)
        await trio.lowlevel.checkpoint()

    async def delete_topic(self, topic: str) -> None:
        self._ensure_open()
        self.broker.delete_topic(topic)
        await trio.lowlevel.checkpoint()

    async def list_topics(self) -> list[str]:
        self._ensure_open()
        await trio.lowlevel.checkpoint()
        return self.broker.list_topics()

    async def drain(self) -> None:
        await self.broker.wait_idle()


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


async def _serve(
    broker: MemoryBroker,
    topic: str,
    callback: MessageCallback,
    group: str | None,
    from_beginning: bool,
    *,
    task_status: trio.TaskStatus[Subscription] = trio.TASK_STATUS_IGNORED,
) -> None:
    # nursery.start passes positional arguments only; this adapts them to keywords.
    await broker.serve_subscription(
        topic, callback, group=group, from_beginning=from_beginning, task_status=task_status
    )
