"""``bridges.pubsub._wire.encode_checked``: the egress fast path must say exactly what
``encode`` + ``problem`` say, for every envelope, and count no fewer characters than
the message has (requests are cut by that count)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bridges.pubsub import _wire
from bridges.pubsub._wire import MAX_MESSAGE_BYTES, encode, encode_checked, problem
from bus import Envelope

BODIES = [b"{}", b"x" * 5_000, b"x" * 5_950]
KEYS = [None, "k", "ü" * 200, "k" * 201, "k" * 1_500]
IDS = ["0192abc", "é" * 200, "i" * 300, "i" * 2_000]
HEADERS: list[dict[str, str]] = [
    {}, {"traceparent": "00-1-2-01", "tracestate": "a=b"}, {"goog-x": "1"},
    {"h": "v" * 2_000}, {f"h{n}": "v" for n in range(120)}, {"ce-extra": "dropped"},
]
TOPICS = ["orders", "o" * 300]
SOURCES = ["shop", "s" * 300]


def envelopes() -> list[Envelope[Any]]:
    out = []
    for n, (body, key, ident, headers, topic, source) in enumerate(
        itertools.product(BODIES, KEYS, IDS, HEADERS, TOPICS, SOURCES)
    ):
        out.append(Envelope(id=ident, topic=topic, payload=body, key=key, headers=headers,
                            time=1_700_000_000.0 + n / 7, attempt=1 + n % 3, source=source))
    return out


@pytest.mark.parametrize("max_bytes", [MAX_MESSAGE_BYTES, 6_000])
def test_the_fast_path_says_what_encode_and_problem_say(max_bytes: int) -> None:
    for env in envelopes():
        body = env.payload
        expected = encode(env, body)
        why = problem(expected, max_bytes)
        got = encode_checked(env, body, max_bytes)
        if why is not None:
            assert got == why, env
            continue
        assert not isinstance(got, str), (got, env)
        out, chars = got
        assert out == expected, env
        assert chars >= len(out.ordering_key) + sum(
            len(k) + len(v) for k, v in out.attributes.items()
        ), env


def test_the_attributes_shared_per_topic_are_not_shared_between_messages() -> None:
    a = Envelope(id="a", topic="t", payload=b"", source="s")
    b = Envelope(id="b", topic="t", payload=b"", source="s")
    out_a, _ = encode_checked(a, b"")  # type: ignore[misc]
    out_b, _ = encode_checked(b, b"")  # type: ignore[misc]
    assert out_a.attributes["ce-id"] == "a" and out_b.attributes["ce-id"] == "b"
    assert len(_wire._CONSTANT) <= _wire._CONSTANT_MAX
