"""Kafka ingress on confluent-kafka: a librdkafka consumer driven from trio's worker threads.

:class:`ConfluentConsumer` fills in the client side of
:class:`~bridges.kafka._ingress.TrackedConsumer` (delivery, done-tracking, periodic commits
and pausing live there). Every blocking call — ``consume``, ``commit``, ``close`` — runs
in a worker thread (``trio.to_thread.run_sync``), one crossing per batch; the records of
a batch are grouped per partition in that thread, not in trio's.

Rebalance callbacks run inside ``consume()`` (or ``close()``), in the worker thread: they
reach trio's state with ``trio.from_thread.run_sync`` and, on revoke, commit synchronously
what is done for the revoked partitions before they go to another member.

Partitions are keyed ``(topic, partition)`` on the trio side. Does not translate errors
(the bridge does).
"""

from __future__ import annotations

from typing import Any

import trio

from bus._log import get_logger

from ._ingress import PAUSED_POLL_MS, Fields, TrackedConsumer
from ._patterns import posix_regex

__all__ = ["ConfluentConsumer"]

log = get_logger("bus.bridges")

Key = tuple[str, int]


def _keys(partitions: list[Any]) -> list[Key]:
    return [(tp.topic, tp.partition) for tp in partitions]


class ConfluentConsumer(TrackedConsumer):
    """One ``confluent_kafka.Consumer``, subscribed to the bridge's imports."""

    def start(self, options: dict[str, Any], topics: list[str], pattern: str | None) -> None:
        """Create and subscribe (no network yet: the group is joined by ``consume``)."""
        from confluent_kafka import Consumer as Client

        client = Client(options)
        try:
            client.subscribe(
                [posix_regex(pattern)] if pattern is not None else topics,  # '^...': a regex
                on_assign=self._on_assign, on_revoke=self._on_revoke,
            )
        except BaseException:
            client.close()
            raise
        self.client = client

    # -- rebalance (in the worker thread that called consume/close) ---------------------

    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        try:
            trio.from_thread.run_sync(self.assigned.update, _keys(partitions))
        except trio.RunFinishedError:
            pass

    def _on_revoke(self, client: Any, partitions: list[Any]) -> None:
        try:
            offsets = trio.from_thread.run_sync(self._revoke, _keys(partitions))
        except trio.RunFinishedError:
            return
        if offsets:
            try:
                self._commit_now(client, offsets)
            except Exception as exc:  # the new owner redelivers from the last commit
                log.warning("kafka.revoke_commit_failed", bridge=self.name, error=repr(exc))

    @staticmethod
    def _commit_now(client: Any, offsets: dict[Any, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        result = client.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )
        for tp in result or ():
            if tp.error is not None:
                raise KafkaException(tp.error)

    # -- the client side of TrackedConsumer ---------------------------------------------

    @staticmethod
    def _group(client: Any, messages: list[Any]) -> dict[Any, list[Any]]:
        """Records per partition; error events that end consuming raise, others are
        logged (an unknown topic of a subscription, a broker down: librdkafka retries)."""
        from confluent_kafka import KafkaException

        batch: dict[Any, list[Any]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.info(
                    "kafka.consumer_event", topic=msg.topic(),
                    error=err.name(), detail=err.str(),
                )
                continue
            key = (msg.topic(), msg.partition())
            records = batch.get(key)
            if records is None:
                batch[key] = [msg]
            else:
                records.append(msg)
        return batch

    def _consume(self, timeout: float, pause: bool) -> dict[Any, list[Any]]:
        client = self.client
        if pause:
            assigned = client.assignment()
            if assigned:
                client.pause(assigned)
        return self._group(client, client.consume(self._max_records, timeout))

    async def _fetch(self) -> dict[Any, list[Any]]:
        return await trio.to_thread.run_sync(self._consume, self._poll_ms / 1000, False)

    async def _fetch_paused(self) -> dict[Any, list[Any]]:
        return await trio.to_thread.run_sync(self._consume, PAUSED_POLL_MS / 1000, True)

    async def _resume(self) -> None:
        client = self.client

        def resume() -> None:
            assigned = client.assignment()
            if assigned:
                client.resume(assigned)

        await trio.to_thread.run_sync(resume)

    async def _send_commit(self, offsets: dict[Any, int]) -> None:
        await trio.to_thread.run_sync(self._commit_now, self.client, offsets)

    async def _stop(self, client: Any) -> None:
        # close() leaves the group (on_revoke runs in this thread) and frees librdkafka
        await trio.to_thread.run_sync(client.close)

    @staticmethod
    def _fields(rec: Any) -> Fields:
        kind, ts = rec.timestamp()
        return (rec.topic(), rec.partition(), rec.offset(), ts if kind else None,
                rec.headers() or (), rec.key(), rec.value())
