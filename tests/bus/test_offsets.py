"""OffsetTracker: commit only below the first record not done."""

from bus.abc import OffsetTracker


def test_commits_only_below_the_first_record_not_done() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    for offset in (10, 11, 12, 13):
        t.started(0, offset)
    assert t.to_commit() == {}
    t.done(0, 12)
    t.done(0, 11)
    assert t.committable(0) == 10 and t.to_commit() == {}
    t.done(0, 10)
    assert t.to_commit() == {0: 13}
    assert t.to_commit() == {}  # only what moved
    t.done(0, 13)
    assert t.to_commit() == {0: 14} and t.in_flight() == 0


def test_partitions_are_independent_and_forgotten_ones_ignore_late_completions() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.started("a", 0)
    t.started("b", 5)
    t.done("b", 5)
    assert t.to_commit() == {"b": 6}
    t.forget("a")
    t.done("a", 0)
    assert t.committable("a") is None and t.partitions() == ["b"]


def test_gaps_in_offsets_are_allowed() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    t.started(0, 3)
    t.started(0, 7)
    t.done(0, 3)
    assert t.to_commit() == {0: 7}
    t.done(0, 7)
    assert t.to_commit() == {0: 8}
