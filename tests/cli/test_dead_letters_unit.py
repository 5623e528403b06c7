"""The parts of ``bus dead-letters`` that need no broker: the headers of a replayed copy,
the filters, and how a dead letter is shown (issue 19 item 3)."""

from __future__ import annotations

import argparse
import json

from bus import Envelope
from bus.cli._dead_letters import DeadLetter, _Filter, replay_headers

DEAD = {
    "x-bus-error": "out of stock", "x-bus-error-type": "builtins.ValueError",
    "x-bus-original-topic": "orders.created", "x-bus-failed-subscriber": "inventory",
    "x-bus-attempts": "3", "x-bus-dead-letter-origin": "kafka", "x-bus-origin": "bus-cli",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tenant": "eu",
}


def _env(headers: dict[str, str], payload: bytes = b'{"n": 1}') -> Envelope[bytes]:
    return Envelope(id="0xdead", topic="bus.dead_letter", payload=payload, key="k1",
                    headers=headers)


def test_a_replayed_copy_starts_afresh_and_says_it_was_replayed() -> None:
    copy = replay_headers(DEAD, "0xdead")
    assert copy == {
        "traceparent": DEAD["traceparent"], "tenant": "eu",
        "x-bus-replayed": "0xdead", "x-bus-replays": "1",
    }
    again = replay_headers({**copy, **DEAD}, "0xbeef")  # failed again after a replay
    assert (again["x-bus-replayed"], again["x-bus-replays"]) == ("0xbeef", "2")


def test_filters_by_original_topic_and_error_type() -> None:
    dl = DeadLetter.of(_env(DEAD))

    def keeps(topic: str | None = None, error_type: str | None = None) -> bool:
        return _Filter(argparse.Namespace(original_topic=topic, error_type=error_type))(dl)

    assert keeps() and keeps("orders.created") and not keeps("orders.paid")
    assert keeps(error_type="ValueError") and keeps(error_type="builtins.ValueError")
    assert not keeps(error_type="Error") and not keeps("orders.created", "KeyError")


def test_a_dead_letter_is_shown_with_its_reason_and_raw_bytes_survive() -> None:
    line = DeadLetter.of(_env(DEAD)).render(as_json=False)
    assert line == ('0xdead  orders.created  key=k1  attempts=3  builtins.ValueError: '
                    'out of stock  {"n": 1}')
    raw = json.loads(DeadLetter.of(_env(DEAD, b"\xff not json")).render(as_json=True))
    assert raw["payload"] == "\\xff not json" and raw["failed_subscriber"] == "inventory"
