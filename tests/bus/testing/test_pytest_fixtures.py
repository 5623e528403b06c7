"""The pytest fixtures are repeatable and configurable (issue 6, item 6)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from bus import Bus, Envelope, RetryPolicy, UnknownTopicError
from bus.testing import DEFAULT_TEST_OPTIONS, Recorder

pytest_plugins = ["pytester"]

JITTERY = RetryPolicy(attempts=5, base_delay=1.0, factor=2.0, jitter=0.5)


async def _retry_times(bus: Bus) -> list[float]:
    """The trio-clock times of every attempt of a handler that always fails."""
    times: list[float] = []

    def fail(env: Envelope[int]) -> None:
        times.append(trio.current_time())
        raise ValueError("again")

    bus.topic("t", int)
    bus.subscribe("t", fail, name="fail", retry=JITTERY)
    await bus.publish("t", 1)
    with trio.fail_after(60):
        await bus.drain()
    return times


def _expected_times(seed: int, start: float) -> list[float]:
    rand = random.Random(seed)
    times, now = [start], start
    for attempt in range(1, JITTERY.attempts or 0):
        now += JITTERY.delay(attempt, rand.random)
        times.append(now)
    return times


async def test_event_bus_is_seeded_so_jitter_repeats(
    event_bus: Bus, autojump_clock: trio.testing.MockClock
) -> None:
    assert event_bus.seed == DEFAULT_TEST_OPTIONS["seed"] == 0
    start = trio.current_time()
    times = await _retry_times(event_bus)
    assert times == pytest.approx(_expected_times(0, start))
    assert len({round(b - a, 6) for a, b in itertools.pairwise(times)}) == 4


async def test_bus_is_the_same_fixture_under_its_old_name(bus: Bus, event_bus: Bus) -> None:
    assert bus is event_bus
    assert bus.seed == 0 and bus.strict


async def test_recorder_records_the_event_bus(event_bus: Bus, recorder: Recorder) -> None:
    event_bus.topic("t", int)
    await event_bus.publish("t", 3)
    with trio.fail_after(5):
        await recorder.wait_for("t")
    assert recorder.payloads() == [3]


@pytest.mark.bus(seed=7, capacity=3, strict=False, drain_timeout=2.5)
async def test_the_bus_marker_configures_the_fixture(
    event_bus: Bus, bus_options: dict[str, Any], autojump_clock: trio.testing.MockClock
) -> None:
    assert bus_options == {
        "name": "test-bus",
        "seed": 7,
        "capacity": 3,
        "strict": False,
        "drain_timeout": 2.5,
    }
    assert (event_bus.seed, event_bus.default_capacity, event_bus.strict) == (7, 3, False)
    await event_bus.publish("undeclared.topic", 1)  # not strict
    start = trio.current_time()
    times = await _retry_times(event_bus)
    assert times == pytest.approx(_expected_times(7, start))


async def test_bus_factory_opens_more_buses_with_the_same_defaults(
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    first = await bus_factory()
    second = await bus_factory(seed=3, capacity=2)
    assert (first.name, first.seed, first.strict) == ("test-bus", 0, True)
    assert (second.name, second.seed, second.default_capacity) == ("test-bus-2", 3, 2)
    with pytest.raises(UnknownTopicError):
        await first.publish("nope", 1)
    got: list[int] = []
    second.topic("t", int)
    second.subscribe("t", lambda env: got.append(env.payload), name="h")
    await second.publish("t", 1)
    with trio.fail_after(5):
        await second.drain()
    assert got == [1]
    assert not first.closed and not second.closed


async def test_bus_factory_refuses_unknown_options(
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    with pytest.raises(ValueError, match=r"unknown bus option\(s\) \['capcity'\]"):
        await bus_factory(capcity=3)


def test_marker_drain_timeout_reaches_open_bus(pytester: pytest.Pytester) -> None:
    """End to end in a pytest run: the marker's drain_timeout bounds the fixture's drain
    (a handler stuck forever; under autojump the 10 s default would be instant too, so
    the bus.undelivered record says which timeout fired)."""
    pytester.makeconftest(
        """
        import pytest
        from structlog.testing import capture_logs

        pytest_plugins = ["bus.testing"]

        @pytest.fixture(autouse=True)
        def logs():
            with capture_logs() as logs:
                yield logs
            for event in logs:
                if event["event"] == "bus.undelivered":
                    print(f"UNDELIVERED drain_timeout={event['drain_timeout']}")
        """
    )
    pytester.makepyfile(
        """
        import pytest, trio

        @pytest.mark.bus(drain_timeout=3)
        async def test_stuck(event_bus, autojump_clock):
            async def stuck(env):
                await trio.sleep_forever()
            event_bus.topic("t", int)
            event_bus.subscribe("t", stuck, name="stuck")
            await event_bus.publish("t", 1)
            await event_bus.publish("t", 2)
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "trio", "-o", "trio_mode=true")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*UNDELIVERED drain_timeout=3*"])
