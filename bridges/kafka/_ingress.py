"""Kafka ingress: a consumer group member that commits only what the bus is done with.

One :class:`Consumer` per run of ``KafkaBridge.ingest``. Each ``getmany`` batch is one
crossing into asyncio; each record goes to ``port.deliver_nowait`` with an ``on_done``
callback that marks its offset done in an :class:`~bus.abc.OffsetTracker`. Commits:

- periodically (``commit_interval``), from a task of its own, so consuming never waits
  for the ~5 ms a commit takes; only partitions whose committable offset moved;
- when partitions are revoked (rebalance): what is done for them, then they are
  forgotten, and records of theirs still in hand are not delivered (the new owner
  reads them from the committed offset); late completions for them are ignored;
- once more in :meth:`close`, after the bus drained, before the consumer leaves.

Backpressure: when ``deliver_nowait`` says a mailbox is full, every assigned partition
is paused and a side task keeps calling ``getmany`` (so the group does not evict us)
while ``port.deliver`` waits for room; then the partitions resume.

Does not translate or log errors for the bridge (``_bridge.py`` does).
"""

from __future__ import annotations

import functools
from typing import Any

import trio

from bus._log import get_logger
from bus.abc import Delivery, OffsetTracker, Port

from .._cloudevents import KAFKA, from_headers
from .._runtime import Runtime
from . import _aio

__all__ = ["Consumer"]

log = get_logger("bus.bridges")


class Consumer:
    """The trio side of one aiokafka consumer: delivery, done-tracking and commits."""

    def __init__(
        self, rt: Runtime, bridge_name: str, *, poll_ms: int, max_records: int,
        commit_interval: float,
    ) -> None:
        self.rt = rt
        self.name = bridge_name
        self.client: Any = None
        self.tracker: OffsetTracker[Any] = OffsetTracker()
        self.assigned: set[Any] = set()
        self.committed: dict[Any, int] = {}
        """Offsets the broker acknowledged as committed, per partition."""
        self.commits = 0
        self.pauses = 0
        self._poll_ms = poll_ms
        self._max_records = max_records
        self._commit_interval = commit_interval
        self._commit_lock = trio.Lock()

    async def start(self, options: dict[str, Any], topics: list[str], pattern: str | None) -> None:
        self.client = await self.rt.run(
            _aio.start_consumer, options, topics, pattern, self._on_revoked, self._on_assigned
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

    def _revoke(self, partitions: list[Any]) -> dict[Any, int]:
        offsets = {}
        for tp in partitions:
            offset = self.tracker.committable(tp)
            if offset is not None and offset > self.committed.get(tp, -1):
                offsets[tp] = offset
            self.tracker.forget(tp)
            self.assigned.discard(tp)
            self.committed.pop(tp, None)
        return offsets

    # -- commits ------------------------------------------------------------------------

    def _to_commit(self) -> dict[Any, int]:
        moved = {}
        for tp in self.tracker.partitions():
            offset = self.tracker.committable(tp)
            if offset is not None and tp in self.assigned and offset > self.committed.get(tp, -1):
                moved[tp] = offset
        return moved

    async def commit(self) -> None:
        """Commit the done offsets that moved; a failure is logged and retried later."""
        async with self._commit_lock:
            offsets = self._to_commit()
            if not offsets:
                return
            try:
                await self.rt.run(_aio.commit, self.client, offsets)
            except Exception as exc:
                log.warning("kafka.commit_failed", bridge=self.name, error=repr(exc))
                return
            self.commits += 1
            for tp, offset in offsets.items():
                if tp in self.assigned:
                    self.committed[tp] = max(offset, self.committed.get(tp, -1))

    async def _committer(self) -> None:
        while True:
            await trio.sleep(self._commit_interval)
            await self.commit()

    # -- consuming ----------------------------------------------------------------------

    async def run(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._committer)
            task_status.started()
            rt, client = self.rt, self.client
            while True:
                batch = await rt.run(_aio.poll, client, self._poll_ms, self._max_records)
                await self._deliver_batch(port, batch)

    async def _deliver_batch(self, port: Port, batch: dict[Any, list[Any]]) -> None:
        for tp, records in batch.items():
            for rec in records:
                if tp not in self.assigned:  # revoked while in hand: the new owner has it
                    break
                await self._deliver(port, tp, rec)

    def _on_done(self, tracker: OffsetTracker[Any], tp: Any, offset: int, _: Delivery) -> None:
        tracker.done(tp, offset)

    async def _deliver(self, port: Port, tp: Any, rec: Any) -> None:
        inc = from_headers(
            KAFKA, rec.headers, topic=rec.topic,
            fallback_id=f"{rec.topic}-{rec.partition}-{rec.offset}", key=rec.key,
            time=rec.timestamp / 1000 if rec.timestamp is not None else 0.0,
        )
        self.tracker.started(tp, rec.offset)
        on_done = functools.partial(self._on_done, self.tracker, tp, rec.offset)
        data = rec.value if rec.value is not None else b""  # a tombstone: dead-lettered
        args = (inc.topic, data)
        kwargs: dict[str, Any] = dict(
            id=inc.id, key=inc.key, headers=inc.headers, time=inc.time, attempt=inc.attempt,
            source=inc.source, on_done=on_done,
        )
        try:
            port.deliver_nowait(*args, **kwargs)
        except trio.WouldBlock:
            await self._deliver_paused(port, args, kwargs)

    async def _deliver_paused(
        self, port: Port, args: tuple[str, bytes], kwargs: dict[str, Any]
    ) -> None:
        self.pauses += 1
        came: list[dict[Any, list[Any]]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll_while_paused, came)
            await port.deliver(*args, **kwargs)
            nursery.cancel_scope.cancel()
        await self.rt.run(_aio.resume_all, self.client)
        for batch in came:  # records of partitions assigned during the pause
            await self._deliver_batch(port, batch)

    async def _poll_while_paused(self, came: list[dict[Any, list[Any]]]) -> None:
        while True:
            batch = await self.rt.run(_aio.poll_paused, self.client, self._poll_ms)
            if batch:
                came.append(batch)

    async def close(self) -> None:
        """Commit what is done, leave the group, stop the client."""
        if self.client is None:
            return
        try:
            await self.commit()
        finally:
            client, self.client = self.client, None
            await self.rt.run(client.stop)
