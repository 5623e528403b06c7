"""Kafka ingress on confluent-kafka: a librdkafka consumer driven from trio's worker threads.

:class:`ConfluentConsumer` fills in the client side of
:class:`~bridges.kafka._ingress.TrackedConsumer` (delivery, done-tracking, periodic commits
and pausing live there). Every call that can block — ``consume``, ``commit``, ``close`` —
runs in a worker thread (``trio.to_thread.run_sync``), one crossing per batch; the
records of a batch are grouped per partition in that thread, not in trio's.

Commits are asynchronous: librdkafka reports each one to ``on_commit``, which runs inside
``consume()`` (or ``close()``) and hands the outcome to the trio task waiting for it,
for at most ``COMMIT_RESULT_SECONDS``. Not synchronous commits: measured here, a
synchronous commit issued while another thread keeps calling ``consume()`` never
returned once the broker was down (over 60 s, 2 of 2 runs; alone it fails after about
``session.timeout.ms``), and it held up ingress, then the bus, until the broker came back.
The final commit is handed over without waiting: ``close()`` sends it and waits for it,
within ``session.timeout.ms`` (10 s here), and a failure is logged from ``on_commit``.

Rebalance callbacks run inside ``consume()`` (or ``close()``), in the worker thread: they
reach trio's state with ``trio.from_thread.run_sync`` and, on revoke, commit what is done
for the revoked partitions, asynchronously too: librdkafka sends it before it rejoins
the group (in ``close()`` the final commit already carries them). No commit here is
synchronous: in the one failed run of five of the restart case under load, a synchronous
commit inside ``on_revoke`` had failed and the consumer never rejoined the group after.

Partitions are keyed ``(topic, partition)`` on the trio side. Does not translate errors
(the bridge does).
"""

from __future__ import annotations

from typing import Any

import trio

from bus.abc import get_logger

from ._ingress import PAUSED_POLL_MS, Fields, TrackedConsumer
from ._patterns import posix_regex

__all__ = ["ConfluentConsumer"]

log = get_logger("bus.bridges")

Key = tuple[str, int]
CommitKey = frozenset[tuple[str, int, int]]

COMMIT_RESULT_SECONDS = 10.0
"""How long a periodic commit waits for librdkafka's report; then it counts as failed and
its offsets go out with the next commit."""


def _keys(partitions: list[Any]) -> list[Key]:
    return [(tp.topic, tp.partition) for tp in partitions]


class _Outcome:
    """The report of one asynchronous commit, awaited in trio."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.error: Exception | None = None


class ConfluentConsumer(TrackedConsumer):
    """One ``confluent_kafka.Consumer``, subscribed to the bridge's imports."""

    def __init__(
        self, bridge_name: str, *, poll_ms: int, max_records: int, commit_interval: float,
    ) -> None:
        super().__init__(bridge_name, poll_ms=poll_ms, max_records=max_records,
                         commit_interval=commit_interval)
        self._waiting: dict[CommitKey, _Outcome] = {}
        self._closing = False
        self._handed_over = False
        """Set once ingress stops: no ``consume()`` call is left to report a commit, so a
        commit sent counts as handed over to ``close()``, which waits for its report."""
        self._session_timeout = 45.0  # librdkafka's default, until start() reads the config

    def start(self, options: dict[str, Any], topics: list[str], pattern: str | None) -> None:
        """Create and subscribe (no network yet: the group is joined by ``consume``)."""
        from confluent_kafka import Consumer as Client

        client = Client({**options, "on_commit": self._on_commit})
        self._session_timeout = int(options.get("session.timeout.ms", 45_000)) / 1000
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
        if offsets and not self._closing:
            try:  # librdkafka sends it before it rejoins; a failure comes to on_commit
                self._commit_async(client, offsets)
            except Exception as exc:  # the new owner redelivers from the last commit
                log.warning("kafka.revoke_commit_failed", bridge=self.name, error=repr(exc))

    # -- commits --------------------------------------------------------------------------

    def _on_commit(self, err: Any, partitions: list[Any] | None) -> None:
        """librdkafka's report of an asynchronous commit (in the consume/close thread)."""
        from confluent_kafka import KafkaException

        error = None
        if err is not None:
            error = KafkaException(err)
        else:
            failed = [tp.error for tp in partitions or () if tp.error is not None]
            if failed:
                error = KafkaException(failed[0])
        key = frozenset((tp.topic, tp.partition, tp.offset) for tp in partitions or ())
        try:
            trio.from_thread.run_sync(self._commit_reported, key, error)
        except trio.RunFinishedError:
            pass

    def _commit_reported(self, key: CommitKey, error: Exception | None) -> None:
        outcome = self._waiting.pop(key, None)
        if outcome is not None:
            outcome.error = error
            outcome.arrived.set()
        elif error is not None:  # the final commit, or one nobody waits for any more
            log.warning("kafka.commit_failed", bridge=self.name, error=repr(error))

    @staticmethod
    def _commit_async(client: Any, offsets: dict[Any, int]) -> None:
        from confluent_kafka import TopicPartition

        client.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=True,
        )

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
        key = frozenset((t, p, o) for (t, p), o in offsets.items())
        outcome = self._waiting[key] = _Outcome()
        try:
            await trio.to_thread.run_sync(self._commit_async, self.client, offsets)
            if self._handed_over:
                return
            with trio.fail_after(COMMIT_RESULT_SECONDS):  # TooSlowError: retried later
                await outcome.arrived.wait()
        finally:
            if self._waiting.get(key) is outcome:
                del self._waiting[key]
        if outcome.error is not None:
            raise outcome.error

    def _stopping(self) -> None:
        """Ingress stops, and with it the ``consume()`` calls that bring librdkafka's
        reports: a commit still waiting for its report would wait out the bound and go out
        again with the final commit. It counts as handed over instead; ``close()`` waits
        for its report and a failure is logged from ``on_commit``."""
        super()._stopping()
        self._handed_over = True
        waiting, self._waiting = self._waiting, {}
        for outcome in waiting.values():
            outcome.arrived.set()

    async def _final_commit(self) -> None:
        """Hand the final commit to librdkafka without waiting: ``close()`` sends it and
        waits for its report (bounded by ``session.timeout.ms``)."""
        self._closing = True
        offsets = self._to_commit()
        if offsets:
            await trio.to_thread.run_sync(self._commit_async, self.client, offsets)

    async def _stop(self, client: Any) -> None:
        """``close()`` leaves the group (on_revoke runs in its thread) and frees librdkafka.
        It first waits for the commits still out, about ``session.timeout.ms`` when the
        broker is down, and measured here once in five it waited past 60 s: after
        ``session.timeout.ms`` + 2 s the bridge goes on and leaves the close to finish in
        its worker thread (the consumer is used no more)."""
        self._closing = True
        within = self._session_timeout + 2.0
        with trio.move_on_after(within) as scope:
            await trio.to_thread.run_sync(client.close, abandon_on_cancel=True)
        if scope.cancelled_caught:
            log.warning("kafka.consumer_close_left_running", bridge=self.name, seconds=within)

    @staticmethod
    def _fields(rec: Any) -> Fields:
        kind, ts = rec.timestamp()
        return (rec.topic(), rec.partition(), rec.offset(), ts if kind else None,
                rec.headers() or (), rec.key(), rec.value())
