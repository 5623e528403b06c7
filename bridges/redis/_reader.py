"""What ``RedisStreamsAdapter.consume`` returns: the messages of one stream, iterated.

Without a group it reads the stream (``XREAD``) after a position of its own; with one it
reads as a member (``XREADGROUP``: its own pending entries first, then new ones) and
acknowledges a message when the next one is asked for.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Self

import trio

from bus import TopicError
from bus.events import EventMessage

from . import _client
from ._wire import decode_entry

if TYPE_CHECKING:
    from ._adapter import RedisStreamsAdapter

__all__ = ["Reader", "check_topic"]


class Reader:
    """What ``consume`` returns: an async iterator of the messages of one stream."""

    def __init__(
        self, adapter: RedisStreamsAdapter, topic: str, group: str | None, consumer: str,
        from_beginning: bool, follow: bool,
    ) -> None:
        self._adapter = adapter
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self._from_beginning = from_beginning
        self._follow = follow
        self._buffer: deque[_client.Entry] = deque()
        self._after = "0-0"
        self._held: bytes | None = None
        self._own_pending = True
        self._opened = False
        self._closed = False

    def start_after(self, last_id: str) -> None:
        """Read the entries after stream id *last_id* (the seed's ``last_id=`` option)."""
        self._after = last_id
        self._from_beginning = True  # a position of our own: do not move it to the end

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EventMessage:
        if self._closed:
            raise StopAsyncIteration
        a = self._adapter
        if not self._opened:
            check_topic(self.topic)  # errors surface from the iterator, as documented
            await a._open()
            if self.group is not None:
                start = "0" if self._from_beginning else "$"
                await a._call(_client.create_group, self.topic, self.group, start)
            elif not self._from_beginning:
                newest = await a._call(_client.last_id, self.topic)
                self._after = newest.decode() if newest else "0-0"
            self._opened = True
        if self._held is not None and self.group is not None:
            held, self._held = self._held, None
            await a._call(_client.ack, self.topic, self.group, [held])
        while not self._buffer:
            block = a.block_ms if self._follow else None
            if self.group is None:
                entries = await a._call(_client.read, self.topic, self._after, a.batch, block)
            else:
                start = "0" if self._own_pending else ">"
                entries = await a._call(
                    _client.read_group, self.topic, self.group, self.consumer, start,
                    a.batch, None if self._own_pending else block,
                )
                if self._own_pending and not entries:
                    self._own_pending = False
                    continue
            self._buffer.extend(entries)
            if not entries and not self._follow:
                self._closed = True
                raise StopAsyncIteration
        raw_id, fields = self._buffer.popleft()
        if self.group is None:
            self._after = raw_id.decode()
        else:
            self._held = raw_id
        return decode_entry(self.topic, raw_id, fields)

    async def aclose(self) -> None:
        """Stop; a message taken but not acknowledged stays pending for the group."""
        self._closed = True
        self._buffer.clear()
        await trio.lowlevel.checkpoint()


def check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise TopicError(f"a Redis stream name must be a non-empty str, got {topic!r}")
