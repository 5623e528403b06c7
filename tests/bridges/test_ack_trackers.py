"""The sans-IO bookkeeping behind every ack point: what may be acknowledged, once.

- RabbitMQ's :class:`AckTracker` against a model of the broker's book (an ack of a tag
  that is not outstanding closes the channel: "unknown delivery tag");
- the :class:`OffsetTracker` of Kafka and Kinesis: a committed offset never passes a
  record that is not done, and the same offset is never reported twice;
- Pub/Sub's :class:`Leases` and the Kinesis :class:`Checkpointer`: a done reported twice,
  late or for an id never received sends nothing.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from bridges.kinesis import MemoryCheckpointStore
from bridges.kinesis._checkpointer import Checkpointer
from bridges.pubsub._ingress import Leases
from bridges.rabbitmq._ingress import AckTracker
from bus.abc import OffsetTracker

# -- RabbitMQ: delivery tags -----------------------------------------------------------------


class Broker:
    """RabbitMQ's book of one channel: delivered tags not acknowledged yet."""

    def __init__(self) -> None:
        self.outstanding: set[int] = set()
        self.acked: list[int] = []

    def ack(self, frames: list[tuple[int, bool]]) -> None:
        for tag, multiple in frames:
            assert tag in self.outstanding, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
            covered = {t for t in self.outstanding if t <= tag} if multiple else {tag}
            self.outstanding -= covered
            self.acked += sorted(covered)


def test_done_twice_or_unknown_tags_send_no_frame() -> None:
    tracker, broker = AckTracker(), Broker()
    for tag in (1, 2, 3):
        tracker.delivered(tag)
        broker.outstanding.add(tag)
    tracker.done(2)
    tracker.done(2)
    tracker.done(9)  # never delivered
    assert tracker.take() == [(2, False)]  # 1 is not done: no multiple ack over it
    tracker.done(2)  # acknowledged already
    assert tracker.pending and tracker.take() == []
    tracker.done(1)
    tracker.done(1)
    frames = tracker.take()
    broker.ack([(2, False), *frames])
    assert frames == [(1, True)] and broker.acked == [2, 1]
    assert tracker.unacked == 1  # tag 3, in hand


def test_done_tags_above_one_in_hand_are_acknowledged_one_by_one() -> None:
    tracker = AckTracker()
    for tag in range(1, 6):
        tracker.delivered(tag)
    for tag in (5, 1, 2, 4):
        tracker.done(tag)
    assert tracker.take() == [(2, True), (4, False), (5, False)]  # 3 is in hand
    tracker.done(3)
    assert tracker.take() == [(3, True)]  # covers only 3: the others are gone already


@given(st.data())
def test_any_order_of_completions_acknowledges_each_done_tag_once(data: Any) -> None:
    # Deliveries, completions (with repeats and unknown tags) and flushes interleaved at
    # random; the broker model fails on any ack of a tag that is not outstanding.
    tracker, broker = AckTracker(), Broker()
    n = data.draw(st.integers(1, 30), label="deliveries")
    order = data.draw(st.permutations(range(1, n + 1)), label="completion order")
    extra = data.draw(st.lists(st.integers(1, n + 5), max_size=10), label="repeats/unknown")
    done: set[int] = set()
    delivered = 0
    for tag in [*order, *extra]:
        while delivered < min(tag, n):  # delivered in tag order, before being done
            delivered += 1
            tracker.delivered(delivered)
            broker.outstanding.add(delivered)
        if tag <= n:
            done.add(tag)
        tracker.done(tag)
        if data.draw(st.booleans(), label="flush now"):
            broker.ack(tracker.take())
            assert set(broker.acked) <= done  # nothing in hand is acknowledged
    broker.ack(tracker.take())
    assert sorted(broker.acked) == list(range(1, n + 1)) and tracker.unacked == 0


# -- Kafka and Kinesis: offsets --------------------------------------------------------------


@given(st.data())
def test_a_commit_never_passes_a_record_not_done_nor_repeats(data: Any) -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    offsets = data.draw(
        st.lists(st.integers(0, 60), min_size=1, max_size=30, unique=True).map(sorted),
        label="offsets handed out",
    )
    for offset in offsets:
        tracker.started("p", offset)
    order = data.draw(st.permutations(offsets), label="completion order")
    extra = data.draw(st.lists(st.integers(0, 70), max_size=10), label="repeats/unknown")
    done: set[int] = set()
    reported: list[int] = []
    for offset in [*order, *extra]:
        tracker.done("p", offset)
        done.add(offset)
        moved = tracker.to_commit()
        if moved:
            reported.append(moved["p"])
            first_not_done = min((o for o in offsets if o not in done), default=offsets[-1] + 1)
            assert moved["p"] <= first_not_done
    assert reported == sorted(set(reported))  # rising, each value once
    assert reported[-1] == offsets[-1] + 1 and tracker.to_commit() == {}


# -- Pub/Sub: ack ids ------------------------------------------------------------------------


def test_pubsub_acks_each_done_message_once_and_nothing_it_let_go() -> None:
    leases = Leases()
    for ack_id in ("a", "b", "c", "d"):
        leases.received("s", ack_id, now=0.0)
    for ack_id in ("b", "b", "zz"):  # twice, and never received
        leases.done("s", ack_id)
    leases.done("other", "a")  # a subscription it never pulled from
    assert leases.take_done() == {"s": ["b"]}
    leases.done("s", "b")  # acknowledged already
    leases.forget("s", ["c"])  # handed back to the service undone
    leases.done("s", "c")
    assert leases.to_extend(now=100.0, max_lease=50.0) == {}  # a, d held too long: given up
    leases.done("s", "a")
    assert not leases.pending and leases.take_done() == {} and leases.outstanding == 0


# -- Kinesis: saved checkpoints --------------------------------------------------------------


class Saves(MemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves: list[dict[tuple[str, str], str]] = []

    def save(self, group: str, checkpoints: Any) -> None:
        super().save(group, checkpoints)
        self.saves.append(dict(checkpoints))


async def test_kinesis_saves_a_position_once_even_when_its_record_is_done_again() -> None:
    key = ("orders", "shard-0")
    store = Saves()
    cp = Checkpointer(store, "g", interval=0.01)
    first = [cp.delivered(key, seq) for seq in ("100", "110")]
    for index in (*first, first[0], 5):  # 100 twice, and an index never handed out
        cp.done(key, index, None)  # type: ignore[arg-type]
    assert await cp.flush() == {key: "110"}
    # A restarted reader hands 100 and 110 over again (from an older checkpoint) under
    # new indexes; done again, they move nothing that was saved.
    again = [cp.delivered(key, seq) for seq in ("100", "110")]
    for index in again:
        cp.done(key, index, None)  # type: ignore[arg-type]
    assert await cp.flush() == {}
    assert store.saves == [{key: "110"}]
