"""The seed's backend contract: the :class:`EventAdapter` ABC.

Every backend of the facade — the in-process memory broker today, Kafka, RabbitMQ,
Kinesis and Pub/Sub bridges later, anything a user registers — implements these eight
methods. The docstrings are the contract: what each method guarantees and raises.
This module holds no backend code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from ._message import EventMessage

__all__ = ["EventAdapter", "MessageCallback"]

MessageCallback = Callable[[EventMessage], Awaitable[None]]
"""What :meth:`EventAdapter.subscribe` calls for each message."""


class EventAdapter(ABC):
    """A connection to one messaging backend, speaking :class:`EventMessage`.

    Adapters connect lazily: ``publish``, ``subscribe``, ``consume`` and the topic
    methods connect on first use if ``connect`` was never called. After
    ``disconnect`` they refuse work with :class:`~bus.BusClosedError` until
    ``connect`` is called again. Broker client exceptions never leak: they are raised
    as :class:`~bus.BackendError` with the original as ``__cause__``.

    ``async with adapter:`` connects and disconnects.
    """

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection. Idempotent; reopens an adapter that was disconnected.

        Raises:
            MissingDependencyError: the backend's client library is not installed.
            ConfigurationError: a required setting (URL, credentials) is missing.
            BackendUnavailableError: the broker cannot be reached.
        """

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the connection, end open ``consume`` iterators and drop subscriptions.

        Idempotent; never raises for an adapter that is already closed.
        """

    @abstractmethod
    async def publish(self, message: EventMessage) -> None:
        """Publish ``message`` to ``message.topic``; return once the backend accepted it.

        Raises:
            BusClosedError: the adapter was disconnected.
            PayloadTypeError: the message is malformed (non-string headers, data that is
                not JSON-serializable).
            TopicError: the topic name is not valid for this backend.
            BackendError: the broker refused or failed.
        """

    @abstractmethod
    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        """Call ``callback`` for every message on ``topic``; return once registered.

        Delivery is at-least-once: a message counts as handled only after ``callback``
        returned. ``kwargs`` are backend options (consumer group, start position, a
        ``nursery`` for background delivery tasks); unknown options raise.

        Raises:
            BusClosedError: the adapter was disconnected.
            ConfigurationError: an unknown or invalid option.
            TopicError: the topic name is not valid.
        """

    @abstractmethod
    def consume(self, topic: str, **kwargs: Any) -> AsyncIterator[EventMessage]:
        """Iterate over the messages of ``topic``.

        Every built-in adapter takes ``group``, ``from_beginning`` and ``follow``: by
        default iteration reads what the topic (or the group) holds when it starts, then
        ends; ``follow=True`` waits for new messages. A message counts as handled when the
        next one is asked for; the one in hand when iteration stops early is not
        acknowledged, and the group gets it again. An option an adapter cannot honour
        raises ``ConfigurationError`` saying why. Errors are raised from the
        iterator's ``__anext__``: ``BusClosedError``, ``ConfigurationError``,
        ``TopicError``, ``BackendError``.
        """

    @abstractmethod
    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        """Create ``topic`` (topic, queue/exchange, stream...). Creating one that exists
        is not an error.

        Raises:
            BusClosedError: the adapter was disconnected.
            ConfigurationError: an unknown or invalid option.
            TopicError: the topic name is not valid.
            BackendError: the broker refused.
        """

    @abstractmethod
    async def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` and its stored messages.

        Raises:
            BusClosedError: the adapter was disconnected.
            TopicError: no such topic.
            BackendError: the broker refused or does not support deletion.
        """

    @abstractmethod
    async def list_topics(self) -> list[str]:
        """Return the names of existing topics, sorted.

        Raises:
            BusClosedError: the adapter was disconnected.
            BackendError: the broker failed.
        """

    async def drain(self) -> None:
        """Wait until background deliveries started by ``subscribe`` caught up.

        :class:`~bus.events.BaseEvent` calls this when its ``async with`` block ends cleanly,
        before cancelling delivery tasks. Adapters without background delivery have
        nothing to wait for.
        """
        return None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()
