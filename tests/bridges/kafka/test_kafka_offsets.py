"""The Kafka consumer's commit rule across out-of-order completions and revocations.

Sans-IO: drives bridges.kafka._ingress.Consumer's bookkeeping directly (no client, no
runtime); the end-to-end rule is checked against the broker in test_kafka.py.
"""

from __future__ import annotations

from typing import Any

from bridges.kafka._ingress import Consumer

TP = ("orders", 0)
OTHER = ("orders", 1)


def consumer() -> Consumer:
    c = Consumer(rt=None, bridge_name="k", poll_ms=100, max_records=10, commit_interval=1.0)  # type: ignore[arg-type]
    c.assigned.update({TP, OTHER})
    return c


def start(c: Consumer, tp: Any, *offsets: int) -> None:
    for offset in offsets:
        c.tracker.started(tp, offset)


def done(c: Consumer, tp: Any, *offsets: int) -> None:
    tracker = c.tracker
    for offset in offsets:
        c._on_done(tracker, tp, offset, None)  # type: ignore[arg-type]


def test_commit_stops_below_the_first_record_not_done() -> None:
    c = consumer()
    start(c, TP, 0, 1, 2, 3, 4)
    done(c, TP, 0, 1, 3, 4)  # out of order, 2 still in work
    assert c._to_commit() == {TP: 2}
    assert c._to_commit() == {}  # nothing moved since
    done(c, TP, 2)
    assert c._to_commit() == {TP: 5}


def test_revoked_partitions_commit_what_is_done_then_ignore_late_completions() -> None:
    c = consumer()
    start(c, TP, 10, 11, 12)
    start(c, OTHER, 0, 1)
    done(c, TP, 10, 12)
    tracker_then = c.tracker
    assert c._revoke([TP]) == {TP: 11}  # never past 11, which is not done
    assert TP not in c.assigned and TP not in c.tracker.partitions()
    c._on_done(tracker_then, TP, 11, None)  # type: ignore[arg-type]  # a late completion
    assert c._to_commit() == {}  # nothing for TP: it belongs to another member now
    done(c, OTHER, 0, 1)
    assert c._to_commit() == {OTHER: 2}


def test_a_reassigned_partition_starts_afresh() -> None:
    c = consumer()
    start(c, TP, 5, 6)
    done(c, TP, 5)
    assert c._revoke([TP]) == {TP: 6}
    c.assigned.add(TP)  # assigned again: records come again from the committed offset 6
    start(c, TP, 6, 7)
    done(c, TP, 7)
    assert c._to_commit() == {}  # 6 is where it starts again: nothing to move
    done(c, TP, 6)
    assert c._to_commit() == {TP: 8}


class FlakyCommits:
    """Stands in for the runtime: records the offsets each commit carries; the first fails."""

    def __init__(self) -> None:
        self.calls: list[dict[Any, int]] = []

    async def run(self, fn: Any, client: Any, offsets: dict[Any, int]) -> None:
        self.calls.append(dict(offsets))
        if len(self.calls) == 1:
            raise ConnectionError("coordinator moved")


async def test_a_failed_commit_is_retried_with_the_next() -> None:
    c = consumer()
    c.rt = FlakyCommits()  # type: ignore[assignment]
    start(c, TP, 0, 1)
    start(c, OTHER, 0)
    done(c, TP, 0)
    await c.commit()  # fails: kept for the next one
    assert c.committed == {}
    done(c, OTHER, 0)
    await c.commit()
    assert c.rt.calls == [{TP: 1}, {TP: 1, OTHER: 1}]  # type: ignore[attr-defined]
    assert c.committed == {TP: 1, OTHER: 1}
    await c.commit()  # nothing moved: no request
    assert len(c.rt.calls) == 2  # type: ignore[attr-defined]
