"""``EventStream``: what ``BaseEvent.pull(name)`` returns — typed models from a topic.

It wraps the adapter's ``consume`` iterator, connecting lazily on the first
``__anext__`` and decoding each message's data into the event's model. The raw
:class:`EventMessage` of the last model stays available as :attr:`EventStream.message`
(key, headers, timestamp). It does not decide where iteration starts or whether it ends:
that is the adapter's ``consume`` (the memory one follows live messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._message import EventMessage
from ._model_codec import ModelCodec

__all__ = ["EventStream"]

ModelT = TypeVar("ModelT")


class EventStream(Generic[ModelT]):
    """Async iterator of decoded models from one topic.

    ``__anext__`` raises :class:`~bus.DecodeError` for a message whose data does not fit
    the model; the message is consumed, so catching the error and iterating again moves
    on to the next one. ``aclose()`` / ``async with`` close the underlying iterator.
    """

    def __init__(
        self,
        topic: str,
        codec: ModelCodec[ModelT],
        open_iterator: Callable[[], Awaitable[AsyncIterator[EventMessage]]],
    ) -> None:
        self.topic = topic
        self._codec = codec
        self._open_iterator = open_iterator
        self._iterator: AsyncIterator[EventMessage] | None = None
        self.message: EventMessage | None = None
        """The raw message behind the model most recently yielded."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ModelT:
        if self._iterator is None:
            self._iterator = await self._open_iterator()
        message = await anext(self._iterator)
        self.message = message
        return self._codec.decode(self.topic, message.data)

    def commit(self) -> None:
        """Commit the last message now, if the backend's iterator supports it."""
        commit: Any = getattr(self._iterator, "commit", None)
        if callable(commit):
            commit()

    async def aclose(self) -> None:
        aclose: Any = getattr(self._iterator, "aclose", None)
        if callable(aclose):
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
