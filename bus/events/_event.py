"""``BaseEvent[Model]``: the seed's typed facade over one adapter and one topic prefix.

``push(name, obj)`` encodes any model instance that encodes to a JSON object and
publishes it to ``f"{topic_prefix}.{name}"``; ``pull(name)`` iterates models decoded
into the event's model; ``pull(name, callback=cb)`` subscribes. The adapter comes from
:class:`EventFactory` (backend from ``event_type`` or settings) and connects on first
use. ``async with`` connects, gives adapters that want one a nursery for background
delivery, and on a clean exit waits until deliveries caught up (``adapter.drain()``),
then disconnects.

Data that does not decode into the model (on ``pull`` or for a callback) goes, unchanged,
to the dead-letter topic — the bus's, ``bus.dead_letter`` — with the bus's dead-letter
headers (``x-bus-error`` the reason, ``x-bus-error-type``, ``x-bus-original-topic``,
``x-bus-failed-subscriber``, ``x-bus-attempts``), and reading goes on: a poison message
must not block a topic. With ``dead_letter=False`` the :class:`~bus.DecodeError` is
raised instead. What the user's callback raises is the backend's to handle; on the bus
backends the message is dead-lettered the same way and a waiting ``push`` raises
:class:`~bus.NotDeliveredError`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

import trio

from bus import BusClosedError, ConfigurationError, DecodeError, TopicError
from bus.abc import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_ORIGINAL_TOPIC,
    get_logger,
    validate_topic,
)

from ._adapter import EventAdapter
from ._factory import EventFactory
from ._message import EventMessage
from ._model_codec import ModelCodec
from ._settings import Settings
from ._stream import EventStream

__all__ = ["BaseEvent", "ModelCallback"]

ModelT = TypeVar("ModelT")
ModelCallback = Callable[[ModelT], Awaitable[None] | None]
"""What ``pull(name, callback=...)`` calls with each decoded model (async or not)."""

_log = get_logger("bus.events")
DEFAULT_DEAD_LETTER_TOPIC = "bus.dead_letter"

# Cleanup must not hang forever on a broker that stopped answering.
_DISCONNECT_TIMEOUT = 10.0


class BaseEvent(Generic[ModelT]):
    """Typed events of one model under one topic prefix, on any backend.

    ``event_type`` names the backend (default ``settings.event_type``); extra keyword
    arguments go to the adapter's constructor, over the values from ``settings``.
    ``adapter=`` uses an adapter you built instead (e.g. a metrics wrapper).
    ``topic_prefix`` defaults to the model's name in lower case.
    """

    def __init__(
        self,
        model: type[ModelT],
        event_type: str | None = None,
        topic_prefix: str | None = None,
        *,
        settings: Settings | None = None,
        adapter: EventAdapter | None = None,
        dead_letter: bool = True,
        **adapter_kwargs: Any,
    ) -> None:
        self.model = model
        self._codec = ModelCodec(model)
        prefix = topic_prefix if topic_prefix is not None else _default_prefix(model)
        if not isinstance(prefix, str) or not prefix or prefix.endswith("."):
            raise ConfigurationError(
                f"topic_prefix must be a non-empty str not ending in '.', got {prefix!r}"
            )
        self.topic_prefix = prefix
        self.dead_letter = dead_letter
        if adapter is not None:
            if event_type is not None or adapter_kwargs:
                raise ConfigurationError(
                    "pass either adapter= or event_type/adapter options, not both"
                )
            if not isinstance(adapter, EventAdapter):
                raise ConfigurationError(f"adapter must be an EventAdapter, got {adapter!r}")
            self.event_adapter = adapter
        else:
            self.event_adapter = EventFactory.create_adapter(
                event_type, settings=settings, **adapter_kwargs
            )
        self._connected = False
        self._closed = False
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._codec.name} prefix={self.topic_prefix!r} "
            f"adapter={type(self.event_adapter).__name__}>"
        )

    @property
    def dead_letter_topic(self) -> str:
        """Where undecodable data goes: the adapter's ``dead_letter_topic`` if it has
        one (the bus backends: their bus's), else ``bus.dead_letter``."""
        topic = getattr(self.event_adapter, "dead_letter_topic", None)
        return topic if isinstance(topic, str) and topic else DEFAULT_DEAD_LETTER_TOPIC

    def topic(self, name: str) -> str:
        """The full topic for ``name``: ``f"{topic_prefix}.{name}"``.

        Raises:
            TopicError: ``name`` is empty, not a str, or the topic is not a valid name
                (dot-separated segments of letters, digits, ``_`` and ``-``: the bus's
                rule, which every broker accepts).
        """
        if not isinstance(name, str) or not name:
            raise TopicError(f"event name must be a non-empty str, got {name!r}")
        return validate_topic(f"{self.topic_prefix}.{name}")

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Connect the adapter now (otherwise it happens on first use); reopens."""
        self._closed = False
        await self.event_adapter.connect()
        self._connected = True

    async def _ensure_connected(self) -> EventAdapter:
        if self._closed:
            raise BusClosedError(
                f"{type(self).__name__} ({self.topic_prefix}) was disconnected; "
                "call connect() to reopen it"
            )
        if not self._connected:
            await self.event_adapter.connect()
            self._connected = True
        return self.event_adapter

    async def disconnect(self) -> None:
        """Disconnect the adapter. Later ``push``/``pull`` raise BusClosedError."""
        self._closed = True
        if self._connected:
            self._connected = False
            await self.event_adapter.disconnect()

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ConfigurationError(f"{self!r} is already open in an async with block")
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        try:
            await self._ensure_connected()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        stack, nursery = self._stack, self._nursery
        self._stack = self._nursery = None
        assert stack is not None and nursery is not None, "__aexit__ without __aenter__"
        drain_error: BaseException | None = None
        try:
            if exc is None:
                # A clean exit lets background subscriptions finish what was published
                # inside the block; only then are their (endless) tasks cancelled.
                try:
                    await self.event_adapter.drain()
                except BaseException as error:
                    drain_error = error
                    exc_type, exc, tb = type(error), error, error.__traceback__
            nursery.cancel_scope.cancel()
            suppressed = await stack.__aexit__(exc_type, exc, tb)
            if drain_error is not None and not suppressed:
                raise drain_error
            return bool(suppressed) and drain_error is None
        finally:
            with trio.move_on_after(_DISCONNECT_TIMEOUT) as scope:
                scope.shield = True
                await self.disconnect()

    # -- topics ------------------------------------------------------------------

    async def create_topic(self, name: str, **kwargs: Any) -> None:
        """Create ``f"{topic_prefix}.{name}"``; ``kwargs`` are backend options."""
        adapter = await self._ensure_connected()
        await adapter.create_topic(self.topic(name), **kwargs)

    async def delete_topic(self, name: str) -> None:
        """Delete ``f"{topic_prefix}.{name}"``."""
        adapter = await self._ensure_connected()
        await adapter.delete_topic(self.topic(name))

    async def list_topics(self) -> list[str]:
        """Full names of the backend's topics under this prefix, sorted."""
        adapter = await self._ensure_connected()
        start = f"{self.topic_prefix}."
        return sorted(t for t in await adapter.list_topics() if t.startswith(start))

    # -- publish / consume -------------------------------------------------------

    async def push(
        self,
        name: str,
        obj: ModelT,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> EventMessage:
        """Publish ``obj`` to ``f"{topic_prefix}.{name}"`` and return the message sent.

        ``obj`` is any model instance that encodes to a JSON object (the event's model,
        a newer version of it, a related model); readers decode it into their model.

        Raises:
            PayloadTypeError: ``obj`` does not encode to a JSON object.
            ConfigurationError: ``key`` is not a str or ``headers`` not str → str.
            BusClosedError: after ``disconnect()``.
            BackendError: the backend failed.
        """
        topic = self.topic(name)
        data = self._codec.encode(topic, obj)
        if key is not None and not isinstance(key, str):
            raise ConfigurationError(f"topic {topic!r}: key must be a str, got {key!r}")
        if headers is not None and not (
            isinstance(headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ConfigurationError(
                f"topic {topic!r}: headers must be a dict of str to str, got {headers!r}"
            )
        message = EventMessage(topic=topic, data=data, key=key, headers=dict(headers or {}))
        adapter = await self._ensure_connected()
        await adapter.publish(message)
        return message

    @overload
    def pull(self, name: str, callback: None = None, **kwargs: Any) -> EventStream[ModelT]: ...
    @overload
    def pull(
        self, name: str, callback: ModelCallback[ModelT], **kwargs: Any
    ) -> Awaitable[None]: ...
    def pull(
        self, name: str, callback: ModelCallback[ModelT] | None = None, **kwargs: Any
    ) -> EventStream[ModelT] | Awaitable[None]:
        """Models from ``f"{topic_prefix}.{name}"``.

        Without ``callback``: an :class:`EventStream` to ``async for`` over. With
        ``callback``: a subscription to ``await``; it returns once registered, and
        the callback then gets each model (inline, or in the ``async with`` nursery).
        ``kwargs`` are backend options (memory: ``group``, ``from_beginning``,
        ``follow``; see the adapter). On memory the stream ends once the stored messages
        are read; ``follow=True`` waits for new ones.

        Leaving early (``break``, an exception, a cancellation), on every backend: a
        message counts as handled when the loop asks for the next one (or on
        ``stream.commit()``); the one in hand is not acknowledged, so a later
        ``pull(name, group=g)`` or ``pull(name, callback=cb, group=g)`` of the same
        group gets it again first (docs/facade.md, "Leaving a pull early").
        """
        topic = self.topic(name)
        if callback is None:
            return EventStream(
                topic,
                self._codec,
                lambda: self._open_stream(topic, kwargs),
                self._dead_letter_from(f"pull({name!r})") if self.dead_letter else None,
            )
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        return self._subscribe(topic, callback, kwargs)

    async def _open_stream(self, topic: str, kwargs: dict[str, Any]) -> AsyncIterator[EventMessage]:
        adapter = await self._ensure_connected()
        return adapter.consume(topic, **kwargs)

    async def _subscribe(
        self, topic: str, callback: ModelCallback[ModelT], kwargs: dict[str, Any]
    ) -> None:
        adapter = await self._ensure_connected()

        callback_name = getattr(callback, "__qualname__", type(callback).__qualname__)
        send_to_dead_letter = self._dead_letter_from(callback_name)

        async def on_message(message: EventMessage) -> None:
            try:
                model = self._codec.decode(topic, message.data)
            except DecodeError as exc:
                if not self.dead_letter:
                    raise
                await send_to_dead_letter(message, exc)
                return
            result = callback(model)
            if inspect.isawaitable(result):
                await result

        on_message.__qualname__ = callback_name  # names the subscriber in stats/headers
        if self._nursery is not None:
            kwargs = {"nursery": self._nursery, **kwargs}
        await adapter.subscribe(topic, on_message, **kwargs)

    def _dead_letter_from(
        self, subscriber: str
    ) -> Callable[[EventMessage, Exception], Awaitable[None]]:
        async def send(message: EventMessage, error: Exception) -> None:
            await self._send_to_dead_letter(message, error, subscriber)

        return send

    async def _send_to_dead_letter(
        self, message: EventMessage, error: Exception, subscriber: str
    ) -> None:
        """Republish ``message`` unchanged to the dead-letter topic, with the bus's
        dead-letter headers saying why (the convention of ``bus.dead_letter``)."""
        topic = self.dead_letter_topic
        _log.warning("events.dead_letter", topic=message.topic, dead_letter_topic=topic,
                     error=str(error))
        headers = {
            **message.headers,
            H_ERROR: str(error)[:1000],
            H_ERROR_TYPE: f"{type(error).__module__}.{type(error).__qualname__}",
            H_ORIGINAL_TOPIC: message.topic,
            H_FAILED_SUBSCRIBER: subscriber,
            H_ATTEMPTS: "1",
        }
        await self.event_adapter.publish(
            EventMessage(
                topic=topic,
                data=message.data,
                key=message.key,
                headers=headers,
                timestamp=message.timestamp,
            )
        )


def _default_prefix(model: object) -> str:
    name = getattr(model, "__name__", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"pass topic_prefix=: cannot derive one from {model!r}")
    return name.lower()
