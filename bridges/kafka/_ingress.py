"""Kafka ingress: a consumer group member that commits only what the bus is done with.

One :class:`Consumer` per run of ``KafkaBridge.ingest``. Each ``getmany`` batch is one
crossing into asyncio; each record goes to ``port.deliver_nowait`` (CloudEvents headers
read by ``_wire.decode``) with an ``on_done``
callback that marks its offset done in an :class:`~bus.abc.OffsetTracker`. Commits:

- periodically (``commit_interval``), from a task of its own, so consuming never waits
  for the ~5 ms a commit takes; only partitions whose committable offset moved (a
  failed commit's offsets go out with the next one);
- when partitions are revoked (rebalance): what is done for them, then they are
  forgotten, and records of theirs still in hand are not delivered (the new owner
  reads them from the committed offset); late completions for them are ignored;
- once more in :meth:`close`, after the bus drained, before the consumer leaves.

A commit is never cut off mid-request by ingress stopping: aiokafka runs the request in
a shielded task of its own, and a cancelled commit leaves that task behind with nobody to
see it fail (after a broker restart it does fail: the group is still loading). So the
commit in flight when ingress stops may finish, for at most ``FINISH_COMMIT_SECONDS``;
the final commit has its own bound (``CLOSE_COMMIT_SECONDS``; the confluent client hands
it to ``close()`` instead), and the client's stop runs whatever happened to the commits.
Offsets of a commit that was cut off go out with the next one.

Two tasks: a poller keeps the next batch fetched while a deliverer hands the current
one to the bus, so the fetch crossing overlaps delivery. Backpressure: when a mailbox is
full the deliverer waits in ``port.deliver``; the poller sees its batch not taken, pauses
every assigned partition and keeps calling ``getmany`` (so the group does not evict us),
and resumes them once the deliverer took the batch.

:class:`TrackedConsumer` holds what does not depend on the client (delivery, done-tracking,
commits, pausing); :class:`Consumer` drives aiokafka through a runtime, and
``_confluent_ingress.py`` drives confluent-kafka from worker threads.

Does not translate or log errors for the bridge (``_bridge.py`` does).
"""

from __future__ import annotations

import collections
import functools
from typing import Any

import trio

from bus.abc import Delivery, OffsetTracker, Port, get_logger

from .._cloudevents import Incoming
from .._runtime import Runtime
from . import _client
from ._wire import decode

__all__ = ["Consumer", "TrackedConsumer"]

log = get_logger("bus.bridges")

PAUSE_AFTER = 0.1
"""Seconds a fetched batch may wait for the deliverer before the partitions pause."""
PAUSED_POLL_MS = 50
"""``getmany`` timeout while paused: how soon consuming resumes once there is room."""
FINISH_COMMIT_SECONDS = 2.0
"""When ingress stops: how long the periodic commit already in flight may still take."""
CLOSE_COMMIT_SECONDS = 2.0
"""How long the final commit of :meth:`TrackedConsumer.close` may take; after it the
client is stopped anyway (what was not committed is redelivered to the group)."""
STOP_SECONDS = 3.0
"""How long aiokafka's ``consumer.stop()`` (leaving the group) may take before its tasks
are cancelled and its connections closed (``_client.stop_consumer``)."""


class TrackedConsumer:
    """The trio side of one Kafka consumer: delivery, done-tracking and commits.

    Subclasses drive a client: :meth:`_fetch`, :meth:`_fetch_paused`, :meth:`_resume`,
    :meth:`_send_commit`, :meth:`_stop` and :meth:`_fields` (one record's parts).
    """

    def __init__(
        self, bridge_name: str, *, poll_ms: int, max_records: int, commit_interval: float,
    ) -> None:
        self.name = bridge_name
        self.client: Any = None
        self.tracker: OffsetTracker[Any] = OffsetTracker()
        self.assigned: set[Any] = set()
        self.committed: dict[Any, int] = {}
        """Offsets the broker acknowledged as committed, per partition."""
        self._retry: dict[Any, int] = {}  # offsets of a failed commit, sent with the next
        self.commits = 0
        self.pauses = 0
        self._poll_ms = poll_ms
        self._max_records = max_records
        self._commit_interval = commit_interval
        self._commit_lock = trio.Lock()
        self._committing: trio.CancelScope | None = None  # the periodic commit in flight
        self._finish_by: float | None = None  # set once ingress stops
        self._ready: collections.deque[dict[Any, list[Any]]] = collections.deque()
        self._arrived = trio.lowlevel.ParkingLot()  # a batch was added to _ready
        self._taken = trio.lowlevel.ParkingLot()  # the deliverer took one from _ready

    def _revoke(self, partitions: list[Any]) -> dict[Any, int]:
        offsets = {}
        for tp in partitions:
            offset = self.tracker.committable(tp)
            if offset is not None and offset > self.committed.get(tp, -1):
                offsets[tp] = offset
            self.tracker.forget(tp)
            self.assigned.discard(tp)
            self.committed.pop(tp, None)
            self._retry.pop(tp, None)
        return offsets

    # -- commits ------------------------------------------------------------------------

    def _to_commit(self) -> dict[Any, int]:
        """Offsets that moved since the last commit (and those whose commit failed)."""
        moved, self._retry = self._retry, {}
        moved.update(self.tracker.to_commit())
        return {tp: offset for tp, offset in moved.items() if tp in self.assigned}

    @property
    def commit_failed(self) -> bool:
        """The last commit failed: its offsets wait for the next one."""
        return bool(self._retry)

    async def commit(self) -> None:
        """Commit the done offsets that moved; a failure is logged and retried later."""
        async with self._commit_lock:
            offsets = self._to_commit()
            if not offsets:
                return
            try:
                await self._send_commit(offsets)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    log.warning(
                        "kafka.commit_failed", bridge=self.name,
                        topics=sorted({_topic(tp) for tp in offsets}), error=repr(exc),
                    )
                for tp, offset in offsets.items():  # newer offsets, if any, win later
                    self._retry.setdefault(tp, offset)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the offsets go out with the next commit
                return
            self.commits += 1
            for tp, offset in offsets.items():
                if tp in self.assigned:
                    self.committed[tp] = max(offset, self.committed.get(tp, -1))

    async def _committer(self) -> None:
        while True:
            await trio.sleep(self._commit_interval)
            # Not cancelled with ingress (see the module docstring): bounded from then on.
            with trio.CancelScope(shield=True) as self._committing:
                if self._finish_by is not None:
                    self._committing.deadline = self._finish_by
                await self.commit()
            self._committing = None

    def _stopping(self) -> None:
        """Ingress stops: a commit in flight may finish, for a bound."""
        self._finish_by = trio.current_time() + FINISH_COMMIT_SECONDS
        if self._committing is not None:
            self._committing.deadline = self._finish_by

    # -- consuming ----------------------------------------------------------------------

    async def run(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume until cancelled: a poller fetches the next batch while a deliverer
        hands the current one to the bus; a committer commits what is done."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._committer)
            nursery.start_soon(self._poller)
            task_status.started()
            ready, arrived, taken = self._ready, self._arrived, self._taken
            try:
                while True:
                    while not ready:
                        await arrived.park()
                    batch = ready.popleft()
                    taken.unpark_all()
                    await self._deliver_batch(port, batch)
            finally:
                self._stopping()

    async def _poller(self) -> None:
        """Keep one batch ready ahead of the deliverer. While the deliverer is behind (the
        bus is full), pause every assigned partition and keep polling: aiokafka leaves
        the group when ``getmany`` is not called for ``max_poll_interval_ms``."""
        ready = self._ready
        paused = False
        while True:
            if ready:
                with trio.move_on_after(PAUSE_AFTER):
                    while ready:
                        await self._taken.park()
            if ready:
                if not paused:
                    self.pauses += 1
                    paused = True
                batch = await self._fetch_paused()
            else:
                if paused:
                    await self._resume()
                    paused = False
                batch = await self._fetch()
            if batch:
                ready.append(batch)
                self._arrived.unpark_all()

    async def _deliver_batch(self, port: Port, batch: dict[Any, list[Any]]) -> None:
        # The per-record path is synchronous (deliver_nowait); only a full mailbox awaits.
        assigned, tracker, offer = self.assigned, self.tracker, self._offer
        for tp, records in batch.items():
            for rec in records:
                if tp not in assigned:  # revoked while in hand: the new owner has it
                    break
                blocked = offer(port, tracker, tp, rec)
                if blocked is not None:
                    # A mailbox is full: wait for room. The poller notices that the next
                    # batch is not taken and pauses the partitions meanwhile.
                    topic, data, inc, on_done = blocked
                    await port.deliver(
                        topic, data, id=inc.id, key=inc.key, headers=inc.headers,
                        time=inc.time, attempt=inc.attempt, source=inc.source, on_done=on_done,
                    )

    def _on_done(self, tracker: OffsetTracker[Any], tp: Any, offset: int, _: Delivery) -> None:
        tracker.done(tp, offset)

    def _offer(
        self, port: Port, tracker: OffsetTracker[Any], tp: Any, rec: Any
    ) -> tuple[str, bytes, Incoming, Any] | None:
        """Deliver *rec* without waiting; if a mailbox is full, what to deliver instead."""
        topic, partition, offset, ts, headers, key, value = self._fields(rec)
        inc = decode(topic, partition, offset, ts, headers, key)
        tracker.started(tp, offset)
        on_done = functools.partial(self._on_done, tracker, tp, offset)
        data = value if value is not None else b""  # a tombstone: dead-lettered
        try:
            port.deliver_nowait(
                topic, data, id=inc.id, key=inc.key, headers=inc.headers, time=inc.time,
                attempt=inc.attempt, source=inc.source, on_done=on_done,
            )
        except trio.WouldBlock:
            return topic, data, inc, on_done
        return None

    async def close(self) -> None:
        """Commit what is done (bounded), then leave the group and stop the client
        (bounded by each client, and shielded: a client left running keeps its sockets)."""
        if self.client is None:
            return
        try:
            await self._final_commit()
        finally:
            client, self.client = self.client, None
            with trio.CancelScope(shield=True):
                await self._stop(client)

    async def _final_commit(self) -> None:
        """Commit what is done before the client stops, for at most CLOSE_COMMIT_SECONDS."""
        with trio.move_on_after(CLOSE_COMMIT_SECONDS) as scope:
            await self.commit()
        if scope.cancelled_caught:
            log.warning("kafka.final_commit_abandoned", bridge=self.name,
                        seconds=CLOSE_COMMIT_SECONDS)

    # -- what a client provides -------------------------------------------------------

    async def _fetch(self) -> dict[Any, list[Any]]:
        """The next batch of records per partition (empty after the poll timeout)."""
        raise NotImplementedError

    async def _fetch_paused(self) -> dict[Any, list[Any]]:
        """Pause every assigned partition, then poll (records may come anyway)."""
        raise NotImplementedError

    async def _resume(self) -> None:
        raise NotImplementedError

    async def _send_commit(self, offsets: dict[Any, int]) -> None:
        raise NotImplementedError

    async def _stop(self, client: Any) -> None:
        """Leave the group and close *client*, forcing it after a bound of its own."""
        raise NotImplementedError

    @staticmethod
    def _fields(rec: Any) -> Fields:
        raise NotImplementedError


Fields = tuple[str, int, int, "int | None", Any, Any, "bytes | None"]
"""One record's topic, partition, offset, timestamp (ms), headers, key and value."""


class Consumer(TrackedConsumer):
    """One aiokafka consumer, each call a crossing into its runtime."""

    def __init__(
        self, rt: Runtime, bridge_name: str, *, poll_ms: int, max_records: int,
        commit_interval: float,
    ) -> None:
        super().__init__(
            bridge_name, poll_ms=poll_ms, max_records=max_records,
            commit_interval=commit_interval,
        )
        self.rt = rt

    async def start(self, options: dict[str, Any], topics: list[str], pattern: str | None) -> None:
        self.client = await self.rt.run(
            _client.start_consumer, options, topics, pattern, self._on_revoked, self._on_assigned
        )

    # -- rebalance (called on the asyncio side) ---------------------------------------

    async def _on_revoked(self, client: Any, partitions: list[Any]) -> None:
        try:
            offsets = self.rt.call_trio_sync(self._revoke, partitions)
        except trio.RunFinishedError:
            return
        if offsets:
            try:
                await client.commit(offsets)
            except Exception as exc:  # the new owner redelivers from the last commit
                log.warning("kafka.revoke_commit_failed", bridge=self.name, error=repr(exc))

    def _on_assigned(self, partitions: list[Any]) -> None:
        try:
            self.rt.call_trio_sync(self.assigned.update, partitions)
        except trio.RunFinishedError:
            pass

    async def _fetch(self) -> dict[Any, list[Any]]:
        return await self.rt.run(_client.poll, self.client, self._poll_ms, self._max_records)

    async def _fetch_paused(self) -> dict[Any, list[Any]]:
        return await self.rt.run(_client.poll_paused, self.client, PAUSED_POLL_MS)

    async def _resume(self) -> None:
        await self.rt.run(_client.resume_all, self.client)

    async def _send_commit(self, offsets: dict[Any, int]) -> None:
        await self.rt.run(_client.commit, self.client, offsets)

    async def _stop(self, client: Any) -> None:
        stopped = await self.rt.run(_client.stop_consumer, client, STOP_SECONDS)
        if not stopped:
            log.warning("kafka.consumer_stop_forced", bridge=self.name, seconds=STOP_SECONDS)

    @staticmethod
    def _fields(rec: Any) -> Fields:
        return (rec.topic, rec.partition, rec.offset, rec.timestamp, rec.headers, rec.key,
                rec.value)


def _topic(tp: Any) -> str:
    """The topic of a partition key (aiokafka's or confluent's TopicPartition, or a pair)."""
    topic = getattr(tp, "topic", None)
    if isinstance(topic, str):
        return topic
    return str(tp[0]) if isinstance(tp, tuple) else str(tp)
