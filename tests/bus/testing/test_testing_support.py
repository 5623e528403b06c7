"""bus.testing: the recorder and the fixtures users put in their own tests."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio

from bus import Bus, Envelope, RetryPolicy
from bus.testing import Recorder


class Paid(msgspec.Struct):
    order: str
    amount: int


async def test_fixtures_give_an_open_bus_and_a_recorder(bus: Bus, recorder: Recorder) -> None:
    bus.topic("payment.paid", Paid)
    bus.topic("audit.log", str)
    await bus.publish("payment.paid", Paid("o1", 5), key="o1")
    await bus.publish("audit.log", "paid o1")
    await recorder.wait_for("#", count=2)
    recorder.assert_published("payment.paid", Paid("o1", 5), key="o1", count=1)
    assert recorder.payloads("audit.*") == ["paid o1"]
    assert [e.topic for e in recorder.messages()] == ["payment.paid", "audit.log"]


async def test_assert_published_explains_what_it_saw(bus: Bus, recorder: Recorder) -> None:
    bus.topic("t", int)
    await bus.publish("t", 1, key="k")
    await recorder.wait_for("t")
    with pytest.raises(AssertionError, match=r"found 0; recorded .*\('t', 'k', 1\)"):
        recorder.assert_published("t", 2)
    with pytest.raises(AssertionError, match="exactly 2"):
        recorder.assert_published("t", count=2)
    recorder.clear()
    assert recorder.messages() == []


async def test_recorder_sees_dead_letters_under_the_mock_clock(
    bus: Bus, recorder: Recorder, autojump_clock: Any
) -> None:
    def always_fails(env: Envelope[int]) -> None:
        raise RuntimeError("nope")

    bus.topic("job", int)
    bus.subscribe(
        "job", always_fails, retry=RetryPolicy(attempts=4, base_delay=10, max_delay=60, jitter=0)
    )
    start = trio.current_time()
    await bus.publish("job", 7)
    with trio.fail_after(100):
        [letter] = await recorder.wait_for(bus.dead_letter_topic)
    assert letter.payload == 7 and letter.attempt == 4
    assert trio.current_time() - start == pytest.approx(10 + 20 + 40)
