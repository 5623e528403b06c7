"""Retained topics read as logs: readers from an offset, consumer-group positions.

A topic declared with ``retain=Retention(...)`` keeps a bounded log whose entries have
absolute offsets (:class:`~bus._policy.RetentionLog`). ``bus.read(topic, ...)`` returns a
:class:`LogReader` over it:

- from the beginning of what is retained (``from_beginning=True``, the default), from
  the end (only what is published from now on), or from an absolute ``offset``;
- until the end of the log (the default), or following new messages (``follow=True``);
- alone, or in a named consumer ``group``: the group has one committed position per
  topic, shared by every reader of that group and kept after they are gone, so the next
  reader of the group resumes where the last one stopped. Readers of one group share the
  messages (each goes to one of them). A message counts as handled, and the position
  moves past it, only when the reader asks for the next message or calls ``commit()``;
  a reader closed, cancelled or dropped (``break``) while holding a message gives it
  back to its group, which hands it out again first: at-least-once.

Retention still rules: a position overtaken by trimming jumps to the oldest retained
message, as a Kafka consumer does when its offset is out of range. This module holds no
routing and no mailbox: readers pull from the log, publishers never wait for them.
"""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Callable
from typing import Any, Self

import trio

from ._closing import ClosesOnExit
from ._envelope import Envelope
from ._errors import ConfigurationError
from ._policy import RetentionLog

__all__ = ["GroupPosition", "LogReader", "open_position"]

_Log = RetentionLog[Envelope[Any]]
_lots: weakref.WeakKeyDictionary[_Log, trio.lowlevel.ParkingLot] = weakref.WeakKeyDictionary()


def _lot(log: _Log) -> trio.lowlevel.ParkingLot:
    """The parking lot readers of *log* wait on; the log wakes it on every append."""
    lot = _lots.get(log)
    if lot is None:
        lot = _lots[log] = trio.lowlevel.ParkingLot()
        unpark = lot.unpark_all

        def wake() -> None:
            unpark()

        log.wake = wake
    return lot


def wake_readers(log: _Log) -> None:
    """Wake every reader waiting on *log* (after a deletion, or a message given back)."""
    lot = _lots.get(log)
    if lot is not None:
        lot.unpark_all()


class GroupPosition:
    """One consumer group's position in one retained log.

    ``claim`` hands out the next unhandled offset (offsets given back first, oldest
    first), ``ack`` marks one handled, ``release`` gives one back. ``committed`` is the
    Kafka committed offset: every offset below it was handled.
    """

    def __init__(self, log: _Log, name: str | None, start: int) -> None:
        self.log = log
        self.name = name
        self.committed = start
        self._next = start
        self._acked: set[int] = set()
        self._redeliver: list[int] = []

    def __repr__(self) -> str:
        return f"<GroupPosition {self.name or 'private'} committed={self.committed}>"

    def claim(self, now: float) -> int | None:
        log = self.log
        log.trim(now)
        begin = log.begin
        while self._redeliver:
            offset = heapq.heappop(self._redeliver)
            if offset >= begin:
                return offset
            self.ack(offset)  # retention dropped it meanwhile: skip it
        if self._next < begin:
            # Retention overtook the group: jump, counting what was dropped as handled.
            for offset in range(self._next, begin):
                self.ack(offset)
            self._next = begin
        if self._next < log.end:
            offset = self._next
            self._next += 1
            return offset
        return None

    def ack(self, offset: int) -> None:
        if offset < self.committed:
            return
        self._acked.add(offset)
        while self.committed in self._acked:
            self._acked.remove(self.committed)
            self.committed += 1

    def release(self, offset: int) -> None:
        heapq.heappush(self._redeliver, offset)
        wake_readers(self.log)


def open_position(
    log: _Log, topic: str, group: str | None, *, from_beginning: bool, offset: int | None
) -> GroupPosition:
    """The position a new reader starts from: its group's, or a private one."""
    if group is not None and (not isinstance(group, str) or not group):
        raise ConfigurationError(f"group must be a non-empty str or None, got {group!r}")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigurationError(f"offset must be an int >= 0 or None, got {offset!r}")
        if group is not None:
            raise ConfigurationError(
                f"read({topic!r}): pass group= or offset=, not both; a group resumes at "
                "its committed position"
            )
        return GroupPosition(log, None, max(offset, log.begin))
    start = log.begin if from_beginning else log.end
    if group is None:
        return GroupPosition(log, None, start)
    position: GroupPosition | None = log.groups.get(group)
    if position is None:
        position = log.groups[group] = GroupPosition(log, group, start)
    return position


class LogReader(ClosesOnExit):
    """Async iterator of the envelopes of one retained topic (made by ``bus.read``).

    Ends at the end of the log unless ``follow``; always ends when the reader is closed,
    the topic deleted or the bus closed. Use it in ``async with`` (or call ``aclose``) to
    give an unhandled message back to the group at once.
    """

    def __init__(
        self,
        topic: str,
        open_: Callable[[], GroupPosition],
        *,
        follow: bool,
        closed: Callable[[], bool],
    ) -> None:
        self.topic = topic
        self._open = open_
        self._follow = follow
        self._bus_closed = closed
        self._position: GroupPosition | None = None
        self._pending: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<LogReader {self.topic!r} {self._position!r}>"

    @property
    def position(self) -> GroupPosition | None:
        """The group position read from (None before the first message is asked for)."""
        return self._position

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Envelope[Any]:
        # The checkpoint comes first so that a cancellation never strands a claim.
        await trio.lowlevel.checkpoint()
        self.commit()
        if self._position is None and not self._closed:
            self._position = self._open()
        while True:
            position = self._position
            if self._closed or position is None or position.log.deleted or self._bus_closed():
                raise StopAsyncIteration
            offset = position.claim(trio.current_time())
            if offset is not None:
                self._pending = offset
                return position.log.get(offset)
            if not self._follow:
                raise StopAsyncIteration
            await _lot(position.log).park()

    def commit(self) -> None:
        """Mark the message last handed out as handled (the next ``__anext__`` does too)."""
        if self._pending is not None and self._position is not None:
            self._position.ack(self._pending)
        self._pending = None

    def close(self) -> None:
        """Stop: give an uncommitted message back, wake a waiting ``__anext__``."""
        if self._closed:
            return
        self._closed = True
        position = self._position
        if position is not None:
            if self._pending is not None:
                position.release(self._pending)
                self._pending = None
            wake_readers(position.log)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


    def __del__(self) -> None:
        # A reader abandoned by `break` must not keep its message claimed for ever: like
        # a Kafka consumer leaving its group, it gives it back.
        try:
            self.close()
        except Exception:  # interpreter shutdown: trio may be half torn down
            pass
