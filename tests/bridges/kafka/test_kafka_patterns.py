"""Import patterns as Kafka subscriptions agree with the bus's own matcher."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridges.kafka._patterns import pattern_regex, posix_regex, subscription
from bus._routing import Pattern

SEGMENTS = ["a", "b", "c-1", "d_2"]
topics = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5).map(".".join)
patterns = st.lists(st.sampled_from([*SEGMENTS, "*", "#"]), min_size=1, max_size=5).map(
    ".".join
)


@given(patterns, topics)
def test_regex_agrees_with_the_bus_matcher(pattern: str, topic: str) -> None:
    regex = re.compile(rf"^(?:{pattern_regex(pattern)})$")
    assert bool(regex.match(topic)) == Pattern(pattern).matches(topic), (pattern, topic)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("order.*", ["order.created"], ["order", "order.a.b", "orders.x"]),
        ("order.#", ["order", "order.a", "order.a.b"], ["orders", "x.order"]),
        ("#.done", ["done", "pay.done", "a.b.done"], ["done.x", "undone"]),
        ("a.#.z", ["a.z", "a.b.z", "a.b.c.z"], ["a", "az", "a.z.b"]),
        ("#", ["x", "x.y"], []),
        ("#.#", ["x", "x.y"], []),
    ],
)
def test_examples(pattern: str, yes: list[str], no: list[str]) -> None:
    _, regex = subscription([pattern])
    if regex is None:
        pytest.fail("a wildcard pattern must give a regex")
    for topic in yes:
        assert re.match(regex, topic), topic
    for topic in no:
        assert not re.match(regex, topic), topic


def test_literal_patterns_subscribe_by_name() -> None:
    assert subscription(["b.x", "a", "b.x"]) == (["a", "b.x"], None)
    topics_, regex = subscription(["a", "b.*"])
    assert topics_ == [] and regex is not None
    assert re.match(regex, "a") and re.match(regex, "b.c") and not re.match(regex, "c")


@given(st.lists(patterns, min_size=1, max_size=3), topics)
def test_the_posix_form_for_librdkafka_selects_the_same_topics(
    pats: list[str], topic: str
) -> None:
    _, regex = subscription([*pats, "x.*"])  # one wildcard at least: a regex
    assert regex is not None
    posix = posix_regex(regex)
    assert "(?" not in posix and "\\-" not in posix
    assert bool(re.match(posix, topic)) == bool(re.match(regex, topic)), (posix, topic)


def test_librdkafka_compiles_the_posix_form() -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    _, regex = subscription(["a-1.#", "*.b_2", "c.#.d"])
    assert regex is not None
    consumer = confluent_kafka.Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"})
    try:
        consumer.subscribe([posix_regex(regex)])  # raises _INVALID_ARG on "(?:"
        with pytest.raises(confluent_kafka.KafkaException):
            consumer.subscribe([regex])
    finally:
        consumer.close()
