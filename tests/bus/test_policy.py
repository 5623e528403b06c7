"""Sans-IO policies: retry backoff, supervision window, retention, dedup, overflow parsing;
and inconsistent policies refused, naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bus import ConfigurationError, DedupWindow, Overflow, Retention, RetryPolicy, Supervision
from bus._policy import RestartTracker, RetentionLog


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, factor=2, max_delay=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.25)
    assert policy.delay(1, rand=lambda: 0.0) == pytest.approx(0.75)
    assert policy.delay(1, rand=lambda: 1.0) == pytest.approx(1.25)
    assert policy.delay(1, rand=lambda: 0.5) == pytest.approx(1.0)


def test_retry_gives_up_after_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=3)
    assert [policy.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"attempts": 0}, "attempts must be an int >= 1 or None"),
        ({"base_delay": -1}, "base_delay must be >= 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"jitter": 2}, "jitter must be within"),
    ],
)
def test_retry_policy_rejects_bad_values(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_restart_tracker_counts_within_the_window() -> None:
    tracker = RestartTracker(Supervision(max_restarts=2, window=10))
    assert tracker.record(0.0) == 1
    assert tracker.record(1.0) == 2
    assert tracker.record(2.0) is None  # third crash inside 10 s: give up
    fresh = RestartTracker(Supervision(max_restarts=2, window=10))
    assert [fresh.record(t) for t in (0.0, 11.0, 22.0, 33.0)] == [1, 1, 1, 1]
    assert Supervision(base_delay=0.1, max_delay=0.3).delay(3) == pytest.approx(0.3)


def test_retention_needs_a_bound_and_trims_by_count_bytes_and_age() -> None:
    with pytest.raises(ConfigurationError, match="at least one bound"):
        Retention()
    by_count: RetentionLog[int] = RetentionLog(Retention(max_count=2))
    for i in range(5):
        by_count.append(i, now=0.0)
    assert by_count.items(now=0.0) == [3, 4]

    by_bytes: RetentionLog[str] = RetentionLog(Retention(max_bytes=10))
    for word in ("aaaa", "bbbb", "cccc"):
        by_bytes.append(word, now=0.0, size=4)
    assert by_bytes.items(now=0.0) == ["bbbb", "cccc"]
    assert by_bytes.bytes == 8

    by_age: RetentionLog[str] = RetentionLog(Retention(max_age=5))
    by_age.append("old", now=0.0)
    by_age.append("new", now=4.0)
    assert by_age.items(now=4.0) == ["old", "new"]
    assert by_age.items(now=5.5) == ["new"]


def test_dedup_window_forgets_by_ttl_and_size() -> None:
    window = DedupWindow(size=2, ttl=10)
    window.add("a", now=0.0)
    assert window.seen("a", now=5.0)
    assert not window.seen("a", now=10.0)
    window.add("x", now=20.0)
    window.add("y", now=20.0)
    window.add("z", now=20.0)
    assert not window.seen("x", now=20.0)
    assert window.seen("z", now=20.0) and len(window) == 2


def test_overflow_parse() -> None:
    assert Overflow.parse("drop_oldest") is Overflow.DROP_OLDEST
    assert Overflow.parse(Overflow.ERROR) is Overflow.ERROR
    with pytest.raises(ConfigurationError, match="use one of 'block'"):
        Overflow.parse("spill")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_delay": 60}, "RetryPolicy.base_delay"),  # > the default max_delay=30
        ({"base_delay": 5, "max_delay": 1}, "RetryPolicy.base_delay"),
        ({"base_delay": -0.1}, "RetryPolicy.base_delay"),
        ({"base_delay": math.nan}, "RetryPolicy.base_delay"),
        ({"base_delay": "1"}, "RetryPolicy.base_delay"),
        ({"max_delay": -1, "base_delay": 0}, "RetryPolicy.max_delay"),
        ({"max_delay": math.inf}, "RetryPolicy.max_delay"),
        ({"attempts": 0}, "RetryPolicy.attempts"),
        ({"attempts": -3}, "RetryPolicy.attempts"),
        ({"attempts": 2.5}, "RetryPolicy.attempts"),
        ({"attempts": True}, "RetryPolicy.attempts"),
        ({"factor": 0.5}, "RetryPolicy.factor"),
        ({"factor": math.inf}, "RetryPolicy.factor"),
        ({"jitter": -0.1}, "RetryPolicy.jitter"),
        ({"jitter": 1.5}, "RetryPolicy.jitter"),
        ({"jitter": math.nan}, "RetryPolicy.jitter"),
    ],
)
def test_inconsistent_retry_policy_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{field} "):
        RetryPolicy(**kwargs)


def test_consistent_retry_policies_are_accepted() -> None:
    RetryPolicy(base_delay=60, max_delay=60)
    RetryPolicy(base_delay=0, max_delay=0, jitter=0)
    RetryPolicy(attempts=None, base_delay=0.5, max_delay=10, factor=1, jitter=1)
    assert RetryPolicy(base_delay=60, max_delay=120).delay(1, lambda: 0.5) == 60


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_delay": 10}, "Supervision.base_delay"),  # > the default max_delay=5
        ({"base_delay": -1}, "Supervision.base_delay"),
        ({"max_delay": math.nan}, "Supervision.max_delay"),
        ({"max_restarts": -1}, "Supervision.max_restarts"),
        ({"max_restarts": 1.5}, "Supervision.max_restarts"),
        ({"window": 0}, "Supervision.window"),
        ({"window": math.inf}, "Supervision.window"),
    ],
)
def test_inconsistent_supervision_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{field} "):
        Supervision(**kwargs)


def test_base_above_max_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(base_delay=60)
    assert "greater than RetryPolicy.max_delay (30.0)" in str(caught.value)
    assert "raise max_delay" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_count": 0}, "Retention.max_count"),
        ({"max_count": 2.5}, "Retention.max_count"),
        ({"max_bytes": -1}, "Retention.max_bytes"),
        ({"max_age": math.nan}, "Retention.max_age"),
        ({"max_age": 0}, "Retention.max_age"),
    ],
)
def test_inconsistent_retention_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{field} "):
        Retention(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"size": 0}, "DedupWindow.size"), ({"ttl": -1}, "DedupWindow.ttl")],
)
def test_inconsistent_dedup_window_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{field} "):
        DedupWindow(**kwargs)
