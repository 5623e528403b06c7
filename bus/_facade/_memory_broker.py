"""An in-process broker with Kafka-like semantics, behind the ``memory`` backend.

What it promises (the same the broker conformance suite will check on real servers):

- per-topic append-only log, optionally bounded (``max_length``: oldest dropped);
  messages stored as encoded bytes, so keys, headers, timestamp and data round-trip
  exactly as through a broker and consumers never share mutable objects;
- consumer groups with committed offsets: one delivery per group, every group gets
  every message; an offset is committed only after its callback returned
  (at-least-once) — a failed or cancelled callback gives the message back;
- waiting with trio parking lots, never polling;
- topics created on first use or explicitly, listed, deleted.

Subscriptions are *inline* — run by ``publish`` in the publisher's task, in order — or
*background* — a task in a nursery the caller provides (:meth:`serve_subscription`).
What it does not do: partitions, persistence, or anything across processes.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import trio

from .._errors import ConfigurationError, TopicError
from ._adapter import MessageCallback
from ._memory_log import Group, Subscription, TopicLog
from ._message import EventMessage, decode_message, encode_message

__all__ = ["MemoryBroker", "check_topic_name"]

_MAX_TOPIC_LENGTH = 249  # Kafka's limit; the strictest of the brokers we bridge to


def check_topic_name(topic: object) -> str:
    """Return ``topic`` if it is a valid name, else raise :class:`~bus.TopicError`."""
    if not isinstance(topic, str) or not topic:
        raise TopicError(f"topic must be a non-empty str, got {topic!r}")
    if len(topic) > _MAX_TOPIC_LENGTH or any(c.isspace() for c in topic):
        raise TopicError(
            f"invalid topic {topic!r}: at most {_MAX_TOPIC_LENGTH} characters, no whitespace"
        )
    return topic


def _check_max_length(max_length: object) -> int | None:
    if max_length is None:
        return None
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigurationError(f"max_length must be a positive int or None, got {max_length!r}")
    return max_length


class MemoryBroker:
    """Topics, logs and consumer groups of one in-process broker.

    ``MemoryBroker.named("default")`` returns the process-wide instance of that name, so
    every ``InMemoryAdapter`` on it sees the same topics; ``MemoryBroker()`` makes a
    private one. ``max_length`` bounds the topics this broker creates by default.
    """

    _named: ClassVar[dict[str, MemoryBroker]] = {}

    def __init__(self, name: str | None = None, *, max_length: int | None = None) -> None:
        self.name = name
        self.max_length = _check_max_length(max_length)
        self._topics: dict[str, TopicLog] = {}
        self._background: set[Subscription] = set()
        self._idle = trio.lowlevel.ParkingLot()
        self._anonymous = itertools.count()

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.name or 'private'} topics={sorted(self._topics)}>"

    @classmethod
    def named(cls, name: str = "default") -> MemoryBroker:
        """The shared broker called ``name``, created on first use."""
        if name not in cls._named:
            cls._named[name] = cls(name)
        return cls._named[name]

    @classmethod
    def reset_all(cls) -> None:
        """Reset and forget every named broker (for tests)."""
        for broker in cls._named.values():
            broker.reset()
        cls._named.clear()

    def reset(self) -> None:
        """Delete every topic and group; open readers end, background tasks return."""
        for log in self._topics.values():
            log.delete()
        self._topics.clear()
        self._idle.unpark_all()

    # -- topics ----------------------------------------------------------------

    def create_topic(self, topic: str, *, max_length: int | None = None) -> bool:
        """Create ``topic``; return False if it already existed (then nothing changes)."""
        check_topic_name(topic)
        max_length = _check_max_length(max_length)
        if topic in self._topics:
            return False
        limit = max_length if max_length is not None else self.max_length
        self._topics[topic] = TopicLog(topic, limit)
        return True

    def delete_topic(self, topic: str) -> None:
        """Delete ``topic``: its messages and groups go, its readers end.

        Raises:
            TopicError: no such topic.
        """
        log = self._topics.pop(check_topic_name(topic), None)
        if log is None:
            raise TopicError(f"cannot delete topic {topic!r}: it does not exist")
        log.delete()
        self._idle.unpark_all()

    def list_topics(self) -> list[str]:
        return sorted(self._topics)

    def log(self, topic: str) -> TopicLog:
        """The live log of ``topic``, created if missing (topics auto-create on use)."""
        self.create_topic(topic)
        return self._topics[topic]

    def messages(self, topic: str) -> list[EventMessage]:
        """The retained messages of ``topic``, oldest first (empty if it does not exist)."""
        log = self._topics.get(topic)
        return [] if log is None else [decode_message(p) for p in log.payloads()]

    def offsets(self, topic: str) -> tuple[int, int]:
        """``(begin, end)``: the oldest retained offset and the next offset to be written."""
        log = self._topics.get(topic)
        return (0, 0) if log is None else (log.begin, log.end)

    def committed(self, topic: str, group: str) -> int | None:
        """The committed offset of ``group`` on ``topic``, None if the group is unknown."""
        log = self._topics.get(topic)
        found = None if log is None else log.groups.get(group)
        return None if found is None else found.committed

    def group(self, topic: str, group: str | None, *, from_beginning: bool) -> Group:
        """The named group (created at the start or the end of the log), or a private one."""
        log = self.log(topic)
        if group is None:
            return Group(log, None, log.begin if from_beginning else log.end)
        if not isinstance(group, str) or not group:
            raise ConfigurationError(f"group must be a non-empty str or None, got {group!r}")
        if group not in log.groups:
            log.groups[group] = Group(log, group, log.begin if from_beginning else log.end)
        return log.groups[group]

    # -- publishing and inline delivery ---------------------------------------

    async def publish(self, message: EventMessage) -> int:
        """Append ``message``, run inline subscriptions, return its offset.

        Inline subscriptions of the topic are run in this task, in order, before this
        returns — unless a group is already being drained by another call (a callback
        that publishes again, or a concurrent publisher): that call delivers the new
        message too, in order, and this one does not wait, which keeps re-entrant
        publishing free of deadlocks. If callbacks raise, the messages stay
        uncommitted and are delivered again first next time; the error (one, or an
        ExceptionGroup for several groups) is raised here once every group was served.

        Raises:
            PayloadTypeError: the message cannot be encoded.
            TopicError: invalid topic name.
        """
        check_topic_name(message.topic)
        payload = encode_message(message)
        await trio.lowlevel.checkpoint()
        log = self.log(message.topic)
        offset = log.append(payload)
        errors: list[Exception] = []
        for group in list(log.inline_groups):
            try:
                await self.drain_inline(group)
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"subscribers of {message.topic!r} failed", errors)
        return offset

    async def drain_inline(self, group: Group) -> None:
        """Deliver ``group``'s backlog to its inline subscriptions, round-robin, in order."""
        if group.draining:
            return
        group.draining = True
        try:
            while group.inline and not group.log.deleted:
                offset = group.claim()
                if offset is None:
                    return
                subscription = group.inline[group.rr % len(group.inline)]
                group.rr += 1
                message = decode_message(group.log.read(offset))
                try:
                    await subscription.callback(message)
                except BaseException:
                    group.release(offset)
                    raise
                group.ack(offset)
        finally:
            group.draining = False

    async def subscribe(
        self,
        topic: str,
        callback: MessageCallback,
        *,
        group: str | None = None,
        from_beginning: bool = False,
    ) -> Subscription:
        """Attach an inline subscription; deliver its backlog (if any) before returning."""
        subscription = Subscription(
            self.group(topic, group, from_beginning=from_beginning), callback, inline=True
        )
        await trio.lowlevel.checkpoint()
        await self.drain_inline(subscription.group)
        return subscription

    # -- background delivery --------------------------------------------------

    async def serve_subscription(
        self,
        topic: str,
        callback: MessageCallback,
        *,
        group: str | None = None,
        from_beginning: bool = False,
        task_status: trio.TaskStatus[Subscription] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run a background subscription until it is cancelled or its topic deleted.

        For ``nursery.start``: reports the :class:`Subscription` once registered. A
        callback error ends the task (and so surfaces in the nursery) after giving the
        message back to the group.
        """
        subscription = Subscription(
            self.group(topic, group, from_beginning=from_beginning), callback, inline=False
        )
        log = subscription.group.log
        self._background.add(subscription)
        task_status.started(subscription)
        try:
            while subscription.active and not log.deleted:
                offset = subscription.group.claim()
                if offset is None:
                    self._idle.unpark_all()
                    await log.lot.park()
                    continue
                subscription.busy = True
                try:
                    await callback(decode_message(log.read(offset)))
                except BaseException:
                    subscription.group.release(offset)
                    raise
                finally:
                    subscription.busy = False
                subscription.group.ack(offset)
        finally:
            subscription.active = False
            self._background.discard(subscription)
            self._idle.unpark_all()

    async def wait_idle(self) -> None:
        """Return once every background subscription has caught up and is waiting."""
        await trio.lowlevel.checkpoint()
        while not all(s.is_idle() for s in self._background):
            await self._idle.park()
