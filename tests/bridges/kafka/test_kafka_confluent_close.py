"""The confluent-kafka consumer's commits and close with a broker that does not answer,
without a broker: a fake client stands in for confluent_kafka.Consumer.

Measured against the harness's Kafka with the broker stopped (docs/bridges.md): a
synchronous commit issued while another thread kept consuming did not return within
60 s, and ``close()`` with a commit still out waited ``session.timeout.ms``, sometimes
for much longer. So commits are asynchronous and reported through ``on_commit``, and the
close is bounded.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from confluent_kafka import TopicPartition
from structlog.testing import capture_logs

from bridges.kafka import _confluent_ingress
from bridges.kafka._confluent_ingress import ConfluentConsumer

TP = ("orders", 0)


class FakeClient:
    """Records commits; reports them only when the test says so; close may block."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.closed = threading.Event()
        self.close_blocks = False
        self.release = threading.Event()
        self.on_revoke: Any = None

    def assignment(self) -> list[Any]:
        return [TopicPartition(TP[0], TP[1])]

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets],
                             asynchronous))

    def close(self) -> None:
        if self.close_blocks:
            self.release.wait(30)  # librdkafka waiting for a commit the broker never gets
        if self.on_revoke is not None:  # leaving the group revokes what we had
            self.on_revoke(self, self.assignment())
        self.closed.set()


def make(session_timeout_ms: int = 10_000) -> tuple[ConfluentConsumer, FakeClient]:
    c = ConfluentConsumer("k", poll_ms=10, max_records=10, commit_interval=0.01)
    fake = FakeClient()
    c.client = fake
    c._session_timeout = session_timeout_ms / 1000
    c.assigned.add(TP)
    c.tracker.started(TP, 0)
    c.tracker.done(TP, 0)
    return c, fake


async def report(c: ConfluentConsumer, offset: int, error: Any = None) -> None:
    """librdkafka calls on_commit from the thread that runs consume() or close()."""
    parts = [TopicPartition(TP[0], TP[1], offset)]
    await trio.to_thread.run_sync(c._on_commit, error, parts)


async def test_a_commit_is_asynchronous_and_done_when_librdkafka_reports_it() -> None:
    c, fake = make()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.commit)
            while not fake.commits:  # noqa: ASYNC110 - the commit call runs in a thread
                await trio.sleep(0.01)
            assert fake.commits == [([("orders", 0, 1)], True)]
            assert c.committed == {}  # not before the report
            await report(c, 1)
    assert c.committed == {TP: 1}


async def test_a_commit_never_reported_fails_and_goes_out_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_confluent_ingress, "COMMIT_RESULT_SECONDS", 0.05)
    c, fake = make()
    with capture_logs() as logs, trio.fail_after(10):
        await c.commit()  # no report: the broker is down
        assert c.committed == {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.commit)
            while len(fake.commits) < 2:  # noqa: ASYNC110 - the commit call runs in a thread
                await trio.sleep(0.01)
            await report(c, 1)
    assert [o for o, _ in fake.commits] == [[("orders", 0, 1)]] * 2
    assert c.committed == {TP: 1}
    assert [e["event"] for e in logs] == ["kafka.commit_failed"]


async def test_close_hands_over_the_final_commit_and_revoking_commits_nothing_more() -> None:
    c, fake = make()
    fake.on_revoke = c._on_revoke
    with capture_logs() as logs, trio.fail_after(10):
        await c.close()
    assert fake.closed.is_set()
    assert logs == []  # nothing waited for a report that only close() can bring
    # once, not waited for (close() sends it); the revocation in close() adds none
    assert fake.commits == [([("orders", 0, 1)], True)]


async def test_a_close_that_does_not_return_is_left_to_finish_after_its_bound() -> None:
    c, fake = make(session_timeout_ms=100)  # bound: 0.1 s + 2 s
    fake.close_blocks = True
    try:
        with capture_logs() as logs, trio.fail_after(10):  # the close blocks for 30 s
            await c.close()
        assert not fake.closed.is_set()
        assert [e["event"] for e in logs] == ["kafka.consumer_close_left_running"]
    finally:
        fake.release.set()
