"""Inconsistent policies are refused, naming the field (issue 6, item 7)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bus import ConfigurationError, DedupWindow, Retention, RetryPolicy, Supervision


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
