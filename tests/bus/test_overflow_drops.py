"""Overflow drops are all counted, and logged as bounded-rate summaries (issue 6, item 12)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from bus import Envelope, open_bus
from bus._policy import RateLimitedCount


def test_rate_limited_count_reports_first_then_at_most_once_per_interval() -> None:
    rate = RateLimitedCount(1.0)
    assert rate.note(10.0) == 1  # the first one at once
    assert [rate.note(10.0 + i / 100) for i in range(1, 50)] == [0] * 49
    assert rate.note(10.999) == 0
    assert rate.note(11.0) == 51  # the interval passed: everything since the last report
    assert rate.note(11.5) == 0
    assert rate.flush() == 1
    assert rate.flush() == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_overload_logs_summaries_not_a_line_per_drop(
    policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()

    async def stuck(env: Envelope[int]) -> None:
        await gate.wait()

    with capture_logs() as logs, trio.fail_after(30):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", stuck, name="slow", capacity=1, overflow=policy)
            for second in range(3):  # 3 seconds of overload, 1,000 publishes each
                for _ in range(1000):
                    await bus.publish("t", second)
                await trio.sleep(1.0)
            gate.set()
    dropped = bus.stats().actors["slow"].dropped
    # the worker holds one message and the mailbox one more: every other publish dropped
    assert dropped == 3000 - 2
    reports = [e for e in logs if e["event"] == "message.dropped"]
    assert 3 <= len(reports) <= 4  # one per second of overload, plus the flush at close
    assert sum(e["dropped"] for e in reports) == dropped  # every drop is in some summary
    assert reports[-1]["total"] == dropped
    assert {e["subscriber"] for e in reports} == {"slow"}
    assert {e["policy"] for e in reports} == {policy}
    assert all(e["log_level"] == "warning" for e in reports)
