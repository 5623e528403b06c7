"""The scale-out tests' checks, without brokers: what counts as lost, as a duplicate, and
as per-key order within one process (a redelivery after a rebalance is not a break)."""

from __future__ import annotations

from tests.scaleout.scale_kit import (
    Handled,
    Member,
    longest_pause,
    lost_and_duplicates,
    order_breaks,
    out_of_order,
    stall,
)


def test_lost_and_duplicates_count_numbers_in_range() -> None:
    assert lost_and_duplicates([0, 1, 2, 2, 3], 4) == (0, 1)
    assert lost_and_duplicates([0, 2, 2, 2], 4) == (2, 2)
    assert lost_and_duplicates([], 3) == (3, 0)


def test_in_order_and_interleaved_keys_have_no_breaks() -> None:
    handled = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert order_breaks(handled) == []


def test_a_gap_is_not_a_break() -> None:
    # the key's partition went to another member and came back later
    assert order_breaks([("a", 0), ("a", 1), ("a", 7), ("a", 8)]) == []


def test_a_redelivery_from_an_earlier_offset_is_not_a_break() -> None:
    # the partition came back from a committed offset below what this member handled
    assert order_breaks([("a", 3), ("a", 4), ("a", 5), ("a", 4), ("a", 5), ("a", 6)]) == []


def test_a_later_seq_handled_first_is_a_break() -> None:
    assert order_breaks([("a", 0), ("a", 2), ("a", 1), ("b", 0)]) == [
        "key a: seq 1 after 2, not handled here before"
    ]


def test_keys_are_judged_apart() -> None:
    # b's seq 1 after a's seq 5: different keys, no break
    assert order_breaks([("a", 5), ("b", 1), ("b", 0)]) == [
        "key b: seq 0 after 1, not handled here before"
    ]


def test_longest_pause_spans_the_edges() -> None:
    def at(t: float) -> Handled:
        return Handled(0, "a", 0, t)

    assert longest_pause([at(1.0), at(1.5), at(4.0)], 0.5, 4.2) == 2.5
    assert longest_pause([], 0.0, 3.0) == 3.0


def test_out_of_order_returns_the_records_that_broke() -> None:
    records = [Handled(0, "a", 0, 0.0), Handled(2, "a", 2, 0.1), Handled(1, "a", 1, 0.2)]
    assert out_of_order(records) == [records[2]]


def test_stall_is_the_last_of_the_dead_members_keys_to_be_served_again() -> None:
    dead = Member("m0", None, [Handled(0, "a", 0, 0.5), Handled(1, "b", 0, 0.9)],  # type: ignore[arg-type]
                  killed_at=1.0)
    alive = Member("m1", None, [Handled(2, "c", 0, 1.1), Handled(3, "a", 1, 2.0),  # type: ignore[arg-type]
                                Handled(4, "b", 1, 4.0), Handled(5, "a", 2, 5.0)])
    assert stall([dead, alive], 1.0) == 3.0
    assert stall([dead, Member("m1", None, alive.handled[:2])], 1.0) == float("inf")  # type: ignore[arg-type]
