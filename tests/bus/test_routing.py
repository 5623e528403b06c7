"""The sans-IO routing module: names, patterns, matching and the routing table."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import TopicError
from bus._routing import Pattern, RoutingTable, is_pattern, validate_pattern, validate_topic


@pytest.mark.parametrize("name", ["order", "order.created", "a-b.c_d.E9", "x" * 249])
def test_valid_topic_names(name: str) -> None:
    assert validate_topic(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("order..created", "bad segment ''"),
        ("order.*", "wildcards belong in subscription patterns"),
        ("order.#", "wildcards belong"),
        ("order created", "bad segment 'order created'"),
        (".order", "bad segment ''"),
        ("x" * 250, "limit is 249"),
    ],
)
def test_invalid_topic_names_say_why(name: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=re.escape(fragment)):
        validate_topic(name)


def test_non_str_topic_is_rejected() -> None:
    with pytest.raises(TopicError, match="must be a str"):
        validate_topic(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("pattern", ["#", "*", "order.*", "a.#.b", "*.created", "a.*.#"])
def test_valid_patterns(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern
    assert is_pattern(pattern)


@pytest.mark.parametrize("pattern", ["order.**", "order.#x", "a..b", "", "a.*b"])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(TopicError):
        validate_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.updated", False),
        ("order.*", "order.created", True),
        ("order.*", "order", False),
        ("order.*", "order.created.v2", False),
        ("order.#", "order", True),
        ("order.#", "order.created.v2", True),
        ("#", "anything.at.all", True),
        ("*.created", "order.created", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("#.z", "z", True),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
    ],
)
def test_pattern_matching(pattern: str, topic: str, expected: bool) -> None:
    assert Pattern(pattern).matches(topic) is expected


def _dp(segs: list[str], words: list[str]) -> bool:
    if not segs:
        return not words
    head, rest = segs[0], segs[1:]
    if head == "#":
        return any(_dp(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _dp(rest, words[1:])


words = st.sampled_from(["a", "b", "c"])
topics = st.lists(words, min_size=1, max_size=5).map(".".join)
patterns = st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=5).map(".".join)


@given(patterns, topics)
def test_matching_agrees_with_a_reference_matcher(pattern: str, topic: str) -> None:
    assert Pattern(pattern).matches(topic) == _dp(pattern.split("."), topic.split("."))


@given(topics)
def test_a_topic_used_as_pattern_matches_only_itself(topic: str) -> None:
    assert Pattern(topic).matches(topic)
    assert not Pattern(topic).matches(topic + ".x")
    assert Pattern("#").matches(topic)


def test_routing_table_keeps_subscription_order_and_dedups() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("order.*", "first")
    table.add("#", "second")
    table.add("order.created", "first")  # same target twice: delivered once
    assert table.route("order.created") == ("first", "second")
    assert table.route("payment.done") == ("second",)


def test_routing_table_memo_is_cleared_on_change() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("a.*", "x")
    assert table.route("a.b") == ("x",)
    table.add("a.b", "y")
    assert table.route("a.b") == ("x", "y")
    table.remove("x")
    assert table.route("a.b") == ("y",)
    assert len(table) == 1
