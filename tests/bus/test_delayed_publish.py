"""``publish(..., delay=)`` and ``not_before=``: held on trio's clock, then routed.

All on the mock clock (the ``autojump_clock`` fixture): a delay of minutes takes no real
time, and the instant a message arrives is exact.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio

from bus import ConfigurationError, Envelope, PayloadTypeError, open_bus


class Order(msgspec.Struct):
    n: int


async def _collect(bus: Any, into: list[tuple[float, int]], done: trio.Event, count: int) -> None:
    def handler(env: Envelope[Order]) -> None:
        into.append((trio.current_time(), env.payload.n))
        if len(into) == count:
            done.set()

    bus.subscribe("orders", handler)


async def test_a_delayed_message_arrives_when_due_and_not_before(autojump_clock: Any) -> None:
    got: list[tuple[float, int]] = []
    done = trio.Event()
    async with open_bus() as bus:
        orders = bus.topic("orders", Order)
        await _collect(bus, got, done, 1)
        start = trio.current_time()
        env = await orders.publish(Order(1), delay=300)
        assert env.payload == Order(1)  # the envelope is made at once
        await trio.sleep(299)
        assert got == []
        await done.wait()
    assert got == [(start + 300, 1)]


async def test_delayed_messages_go_out_in_due_order_then_publish_order(
    autojump_clock: Any,
) -> None:
    got: list[tuple[float, int]] = []
    done = trio.Event()
    async with open_bus() as bus:
        bus.topic("orders", Order)
        await _collect(bus, got, done, 5)
        t0 = trio.current_time()
        await bus.publish("orders", Order(1), delay=30)
        await bus.publish("orders", Order(2), delay=10)  # a new, earlier head
        await bus.publish("orders", Order(3), not_before=t0 + 20)
        await bus.publish("orders", Order(4), delay=10)  # same due as 2: after it
        await bus.publish("orders", Order(5))  # no delay: at once
        await done.wait()
    assert got == [(t0, 5), (t0 + 10, 2), (t0 + 10, 4), (t0 + 20, 3), (t0 + 30, 1)]


async def test_not_before_in_the_past_and_delay_zero_are_now(autojump_clock: Any) -> None:
    got: list[tuple[float, int]] = []
    done = trio.Event()
    async with open_bus() as bus:
        bus.topic("orders", Order)
        await _collect(bus, got, done, 2)
        t0 = trio.current_time()
        await bus.publish("orders", Order(1), not_before=t0 - 5)
        await bus.publish("orders", Order(2), delay=0)
        await done.wait()
    assert sorted(got) == [(t0, 1), (t0, 2)]


async def test_confirm_waits_until_the_delayed_message_was_handled(autojump_clock: Any) -> None:
    handled: list[float] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", lambda env: handled.append(trio.current_time()))
        t0 = trio.current_time()
        await bus.publish("orders", Order(1), delay=7, confirm=True)
        assert handled == [t0 + 7]
        assert trio.current_time() == t0 + 7


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"delay": 1, "not_before": 2}, ConfigurationError, "not both"),
        ({"delay": -1}, ConfigurationError, "delay must be >= 0"),
        ({"delay": float("nan")}, ConfigurationError, "finite number"),
        ({"not_before": float("inf")}, ConfigurationError, "finite number"),
        ({"delay": True}, ConfigurationError, "finite number"),
        ({"delay": "5"}, ConfigurationError, "finite number"),
    ],
)
async def test_bad_delays_fail_at_once_naming_the_problem(
    autojump_clock: Any, kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    got: list[Any] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        with pytest.raises(error, match=words):
            await bus.publish("orders", Order(1), **kwargs)
        await trio.sleep(10)
    assert got == []


async def test_a_wrong_payload_fails_when_published_not_when_due(autojump_clock: Any) -> None:
    async with open_bus() as bus:
        bus.topic("orders", Order)
        with pytest.raises(PayloadTypeError, match="orders"):
            await bus.publish("orders", {"n": 1}, delay=60)


async def test_a_message_still_held_when_the_bus_closes_is_counted_undelivered(
    autojump_clock: Any,
) -> None:
    got: list[Any] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        await bus.publish("orders", Order(1), delay=3600)
        await bus.publish("orders", Order(2), delay=1)
        await trio.sleep(2)
    assert [env.payload for env in got] == [Order(2)]
    assert dict(bus.undelivered) == {"(delayed)": 1}


async def test_an_earlier_message_wakes_the_waiting_runner_earlier(autojump_clock: Any) -> None:
    got: list[tuple[float, int]] = []
    done = trio.Event()
    async with open_bus() as bus:
        bus.topic("orders", Order)
        await _collect(bus, got, done, 2)
        t0 = trio.current_time()
        await bus.publish("orders", Order(1), delay=60)
        await trio.sleep(1)  # virtual: the runner is now waiting for message 1
        await bus.publish("orders", Order(2), delay=5)
        await done.wait()
    assert got == [(t0 + 6, 2), (t0 + 60, 1)]


class _Stamp:
    """A publish hook that adds a header and records the clock when it ran."""

    def __init__(self) -> None:
        self.ran: list[float] = []

    async def publish(self, env: Envelope[Any], call_next: Any) -> Envelope[Any]:
        self.ran.append(trio.current_time())
        out: Envelope[Any] = await call_next(
            msgspec.structs.replace(env, headers={**env.headers, "x-stamp": "1"})
        )
        return out


async def test_with_publish_middleware_the_hooks_run_now_and_the_message_when_due(
    autojump_clock: Any,
) -> None:
    stamp = _Stamp()
    seen: list[tuple[float, str | None]] = []
    done = trio.Event()
    async with open_bus(middleware=[stamp]) as bus:
        bus.topic("orders", Order)

        def handler(env: Envelope[Order]) -> None:
            seen.append((trio.current_time(), env.headers.get("x-stamp")))
            done.set()

        bus.subscribe("orders", handler)
        start = trio.current_time()
        await bus.publish("orders", Order(1), delay=60, confirm=True)
        assert seen == [(start + 60, "1")]  # confirm waited; the hook's header went out
        assert stamp.ran == [start]  # at the publisher's call, not when due
        with pytest.raises(PayloadTypeError):
            await bus.publish("orders", "not an order", delay=5)
