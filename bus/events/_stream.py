"""``EventStream``: what ``BaseEvent.pull(name)`` returns — typed models from a topic.

It wraps the adapter's ``consume`` iterator, connecting lazily on the first
``__anext__`` and decoding each message's data into the event's model. The raw
:class:`EventMessage` of the last model stays available as :attr:`EventStream.message`
(key, headers, timestamp). Data that does not decode is handed to ``on_undecodable``
(``BaseEvent`` sends it to the dead-letter topic with the reason) and iteration goes on.
It does not decide where iteration starts or whether it ends: that is the adapter's
``consume`` (the memory one reads what is stored, then ends unless ``follow=True``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Self, TypeVar

from bus import DecodeError
from bus.abc import ClosesOnExit

from ._message import EventMessage
from ._model_codec import ModelCodec

__all__ = ["EventStream"]

ModelT = TypeVar("ModelT")


class EventStream(ClosesOnExit, Generic[ModelT]):
    """Async iterator of decoded models from one topic.

    A message whose data does not fit the model goes to ``on_undecodable(message,
    error)`` and is skipped; without ``on_undecodable``, ``__anext__`` raises
    :class:`~bus.DecodeError` (the message is consumed, so iterating again moves on).
    ``aclose()`` / ``async with`` close the underlying iterator.
    """

    def __init__(
        self,
        topic: str,
        codec: ModelCodec[ModelT],
        open_iterator: Callable[[], Awaitable[AsyncIterator[EventMessage]]],
        on_undecodable: Callable[[EventMessage, DecodeError], Awaitable[None]] | None = None,
    ) -> None:
        self.topic = topic
        self._codec = codec
        self._open_iterator = open_iterator
        self._on_undecodable = on_undecodable
        self._iterator: AsyncIterator[EventMessage] | None = None
        self.message: EventMessage | None = None
        """The raw message behind the model most recently yielded."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ModelT:
        if self._iterator is None:
            self._iterator = await self._open_iterator()
        while True:
            message = await anext(self._iterator)
            self.message = message
            try:
                return self._codec.decode(self.topic, message.data)
            except DecodeError as exc:
                if self._on_undecodable is None:
                    raise
                await self._on_undecodable(message, exc)

    def commit(self) -> None:
        """Commit the last message now, if the backend's iterator supports it."""
        commit: Any = getattr(self._iterator, "commit", None)
        if callable(commit):
            commit()

    async def aclose(self) -> None:
        aclose: Any = getattr(self._iterator, "aclose", None)
        if callable(aclose):
            await aclose()

