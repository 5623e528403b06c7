"""The egress side of ``bridges._cloudevents``: what its shortcuts must leave unchanged.

:func:`format_time` reuses the text of the last second it formatted; it must equal what
``datetime.isoformat`` writes for every instant (rounding half-even to the microsecond,
no fraction at a whole microsecond count of zero, the next second when the fraction
rounds up). :func:`to_kafka_headers` shares the ``ce_source``/``ce_type`` pairs per topic
and source; each record must still carry its own.
"""

from __future__ import annotations

import datetime as dt
import random

from bridges import _cloudevents
from bridges._cloudevents import format_time, to_kafka_headers
from bus import Envelope


def isoformat(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def test_format_time_equals_isoformat_for_any_instant() -> None:
    rnd = random.Random(17)
    instants = [rnd.uniform(0, 4e9) for _ in range(20_000)]
    base = 1_700_000_000.0
    instants += [base + k * 1e-7 for k in range(20_000)]  # consecutive, same second
    instants += [base + 0.9999995, base + 0.9999994, base + 0.5e-6, base + 2.5e-6,
                 base, 0.0, 1.0, base - 1e-7, 1e9 + 0.25, -1.5, -0.25]
    for seconds in instants:
        assert format_time(seconds) == isoformat(seconds), seconds


def test_the_second_reused_is_the_right_one() -> None:
    assert format_time(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"
    assert format_time(1_700_000_001.0) == "2023-11-14T22:13:21Z"
    assert format_time(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"


def env(topic: str, source: str, n: int, attempt: int = 1) -> Envelope[None]:
    return Envelope(id=f"id-{n}", topic=topic, payload=None, source=source,
                    time=1_700_000_000.0 + n, attempt=attempt)


def test_each_record_carries_its_own_topic_source_id_and_attempt() -> None:
    seen = [env("a", "shop", 1), env("b", "shop", 2), env("a", "billing", 3),
            env("a", "shop", 4, attempt=3)]
    for e in seen:
        headers = dict(to_kafka_headers(e))
        assert headers["ce_type"] == e.topic.encode()
        assert headers["ce_source"] == e.source.encode()
        assert headers["ce_id"] == e.id.encode()
        assert headers["ce_deliveryattempt"] == str(e.attempt).encode()
        assert headers["ce_time"] == isoformat(e.time).encode()


def test_the_shared_pairs_are_bounded() -> None:
    for n in range(_cloudevents._KAFKA_CONSTANT_MAX + 10):
        to_kafka_headers(env(f"t{n}", "shop", n))
    assert len(_cloudevents._KAFKA_CONSTANT) <= _cloudevents._KAFKA_CONSTANT_MAX
    assert dict(to_kafka_headers(env("t1", "shop", 1)))["ce_type"] == b"t1"
