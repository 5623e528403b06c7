"""The iterator behind ``InMemoryAdapter.consume``: one reader of one topic.

A reader claims messages from a consumer group (a named one, shared with other readers
and subscriptions, or a private one) and commits each message when the caller comes back
for the next one, or calls :meth:`MemoryReader.commit`. A reader closed, cancelled or
dropped while holding an uncommitted message gives it back to its group, so a named
group sees it again (at-least-once across a crashed consumer).

It is a class rather than an async generator on purpose: nothing is suspended between
messages, so there is no generator to finalize and no cancel scope held across a yield.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

import trio

from ._memory_log import Group
from ._message import EventMessage, decode_message

__all__ = ["MemoryReader"]


class MemoryReader:
    """Async iterator of :class:`EventMessage` over a memory topic.

    With ``follow`` (the default) it yields the stored messages, then waits for new
    ones; without, it stops at the end of the log. Iteration also ends when the topic
    is deleted, the broker reset, or the adapter disconnected.
    """

    def __init__(self, open_group: Callable[[], Group], *, follow: bool) -> None:
        self._open_group = open_group
        self._follow = follow
        self._group: Group | None = None
        self._pending: int | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EventMessage:
        # The checkpoint comes before claiming so a cancellation never strands a claim.
        await trio.lowlevel.checkpoint()
        self.commit()
        if self._group is None and not self._closed:
            self._group = self._open_group()
        while True:
            group = self._group
            if self._closed or group is None or group.log.deleted:
                raise StopAsyncIteration
            offset = group.claim()
            if offset is not None:
                self._pending = offset
                return decode_message(group.log.read(offset))
            if not self._follow:
                raise StopAsyncIteration
            await group.log.lot.park()

    def commit(self) -> None:
        """Mark the last message handed out as handled (also done by the next ``__anext__``)."""
        if self._pending is not None and self._group is not None:
            self._group.ack(self._pending)
        self._pending = None

    def close(self) -> None:
        """Stop: give an uncommitted message back to the group, wake a waiting ``__anext__``."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None and self._group is not None:
            self._group.release(self._pending)
            self._pending = None
        if self._group is not None:
            self._group.log.wake()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A reader abandoned by `break` must not keep its message claimed forever: like
        # a Kafka consumer leaving its group, it hands it back for redelivery.
        try:
            self.close()
        except Exception:  # interpreter shutdown: trio may be half torn down
            pass
