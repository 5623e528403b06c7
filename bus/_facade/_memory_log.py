"""Sans-IO state of the memory broker: one topic's log and its consumer groups.

Kafka's model, reduced to one partition per topic: an append-only log addressed by
absolute offsets (optionally bounded, dropping the oldest like retention does), and
consumer groups that each own a cursor. A group hands every offset to exactly one of its
members (``claim``), remembers which were handled (``ack``) and gives unhandled ones
back for redelivery (``release``). ``committed`` is the Kafka committed offset: every
offset below it was handled. No trio here beyond the parking lot consumers wait on;
the tasks live in :mod:`._memory_broker`.
"""

from __future__ import annotations

import heapq
from collections import deque

import trio

from ._adapter import MessageCallback

__all__ = ["Group", "Subscription", "TopicLog"]


class TopicLog:
    """The retained messages of one topic, as encoded bytes, and its groups."""

    def __init__(self, name: str, max_length: int | None) -> None:
        self.name = name
        self.max_length = max_length
        self._log: deque[bytes] = deque(maxlen=max_length)
        self.end = 0
        """The offset the next message will get (Kafka's high-water mark)."""
        self.groups: dict[str, Group] = {}
        """Named consumer groups: their committed offsets outlive any one consumer."""
        self.inline_groups: list[Group] = []
        """Groups with inline subscriptions, in subscription order."""
        self.deleted = False
        self.lot = trio.lowlevel.ParkingLot()
        """Consumers waiting for a new message (or a deletion, or a redelivery)."""

    @property
    def begin(self) -> int:
        """The oldest offset still retained."""
        return self.end - len(self._log)

    def append(self, payload: bytes) -> int:
        offset = self.end
        self._log.append(payload)
        self.end += 1
        self.wake()
        return offset

    def read(self, offset: int) -> bytes:
        """The payload at ``offset``; the caller claimed it, so it is retained."""
        return self._log[offset - self.begin]

    def payloads(self) -> list[bytes]:
        return list(self._log)

    def wake(self) -> None:
        self.lot.unpark_all()

    def delete(self) -> None:
        self.deleted = True
        self._log.clear()
        self.wake()


class Group:
    """One consumer group's position in a :class:`TopicLog`."""

    def __init__(self, log: TopicLog, name: str | None, start: int) -> None:
        self.log = log
        self.name = name
        self.committed = start
        """Every offset below this one was handled (acked) by the group."""
        self._next = start
        self._acked: set[int] = set()
        self._redeliver: list[int] = []
        self.inline: list[Subscription] = []
        """Inline subscriptions of this group, served round-robin."""
        self.rr = 0
        self.draining = False

    def has_work(self) -> bool:
        """Whether ``claim`` would return an offset now."""
        return bool(self._redeliver) or self._next < self.log.end

    def claim(self) -> int | None:
        """Hand out the next unhandled offset (redeliveries first, oldest first)."""
        begin = self.log.begin
        while self._redeliver:
            offset = heapq.heappop(self._redeliver)
            if offset >= begin:
                return offset
            self.ack(offset)  # retention dropped it, as Kafka would: skip
        if self._next < begin:
            # Retention overtook the group: jump, acknowledging what was dropped.
            if self.committed == self._next and not self._acked:
                self.committed = begin
            else:
                for offset in range(self._next, begin):
                    self.ack(offset)
            self._next = begin
        if self._next < self.log.end:
            offset = self._next
            self._next += 1
            return offset
        return None

    def ack(self, offset: int) -> None:
        """Mark ``offset`` handled and advance ``committed`` over the handled prefix."""
        if offset < self.committed:
            return
        self._acked.add(offset)
        while self.committed in self._acked:
            self._acked.remove(self.committed)
            self.committed += 1

    def release(self, offset: int) -> None:
        """Give a claimed but unhandled ``offset`` back for redelivery."""
        heapq.heappush(self._redeliver, offset)
        self.log.wake()


class Subscription:
    """A callback attached to a group: inline (run by publishers) or background (a task)."""

    def __init__(self, group: Group, callback: MessageCallback, *, inline: bool) -> None:
        self.group = group
        self.callback = callback
        self.active = True
        self.busy = False
        """A background subscription is inside its callback."""
        if inline:
            group.inline.append(self)
            if group not in group.log.inline_groups:
                group.log.inline_groups.append(group)

    @property
    def topic(self) -> str:
        return self.group.log.name

    def cancel(self) -> None:
        """Stop delivering. A background task ends after its current callback."""
        self.active = False
        group = self.group
        if self in group.inline:
            group.inline.remove(self)
            if not group.inline and group in group.log.inline_groups:
                group.log.inline_groups.remove(group)
        group.log.wake()

    def is_idle(self) -> bool:
        """Nothing to deliver and not delivering (meaningful for background ones)."""
        if not self.active or self.group.log.deleted:
            return True
        return not self.busy and not self.group.has_work()
