"""publish_nowait (trio's send_nowait convention), publish_batch (routing crossed once
for many payloads), and request timeouts without a cancel scope per request (the bus's
request clock)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import BusClosedError, Envelope, PayloadTypeError, RequestTimeoutError, open_bus


async def test_publish_nowait_delivers_without_a_schedule_point() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload))
        with trio.testing.assert_no_checkpoints():
            env = bus.publish_nowait("t", 1, key="k", headers={"a": "b"})
        assert (env.topic, env.payload, env.key, env.headers) == ("t", 1, "k", {"a": "b"})
    assert got == [1]
    assert bus.stats().topics["t"].published == 1


@pytest.mark.parametrize("subscribers", [1, 2])
async def test_publish_nowait_raises_would_block_and_delivers_to_nobody(subscribers: int) -> None:
    """A full ``block`` mailbox: WouldBlock, and no other subscriber got the message."""
    got: dict[str, list[int]] = {"small": [], "big": []}
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got["small"].append(env.payload), name="small",
                      capacity=1)
        if subscribers == 2:
            bus.subscribe("t", lambda env: got["big"].append(env.payload), name="big",
                          capacity=10)
        bus.publish_nowait("t", 1)  # the worker has not run: the small mailbox is full
        with pytest.raises(trio.WouldBlock):
            bus.publish_nowait("t", 2)
        assert bus.stats().topics["t"].published == 1
        await bus.publish("t", 3)  # waits for room instead
    assert got["small"] == [1, 3]
    assert got["big"] == ([1, 3] if subscribers == 2 else [])


async def test_publish_nowait_applies_the_other_overflow_policies() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload), capacity=1,
                      overflow="drop_newest")
        bus.publish_nowait("t", 1)
        bus.publish_nowait("t", 2)  # dropped, not WouldBlock
    assert got == [1]


async def test_publish_nowait_refuses_bad_input_and_a_closed_bus() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        with pytest.raises(PayloadTypeError):
            bus.publish_nowait("t", "one")
        with pytest.raises(PayloadTypeError, match="key must be a str"):
            bus.publish_nowait("t", 1, key=1)  # type: ignore[arg-type]
    with pytest.raises(BusClosedError):
        bus.publish_nowait("t", 1)


async def test_a_shorter_timeout_after_a_longer_one_fires_on_time(autojump_clock: Any) -> None:
    """The request clock sleeps until the earliest deadline it knows; a request with an
    earlier deadline than that must move the wake-up."""
    ended: dict[str, float] = {}
    async with open_bus() as bus:
        bus.topic("q", int)
        bus.subscribe("q", lambda env: None)  # never replies

        async def ask(name: str, seconds: float) -> None:
            with pytest.raises(RequestTimeoutError):
                await bus.request("q", 1, timeout=seconds)
            ended[name] = trio.current_time()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "long", 10.0)
            await trio.sleep(1)
            nursery.start_soon(ask, "short", 2.0)
    assert ended == {"long": start + 10.0, "short": start + 3.0}


async def test_a_request_outliving_its_bus_still_times_out(autojump_clock: Any) -> None:
    ended: list[float] = []
    async with trio.open_nursery() as outer:
        async with open_bus() as bus:
            bus.topic("q", int)
            bus.subscribe("q", lambda env: None)

            async def ask() -> None:
                with pytest.raises(RequestTimeoutError):
                    await bus.request("q", 1, timeout=5.0)
                ended.append(trio.current_time())

            start = trio.current_time()
            outer.start_soon(ask)
            await trio.sleep(1)
        assert not ended  # the bus closed with the request still waiting
    assert ended == [start + 5.0]


async def test_answered_requests_behind_a_slow_one_are_not_kept(autojump_clock: Any) -> None:
    """One request that waits long must not keep every later answered one in memory."""
    async with open_bus() as bus:
        bus.topic("slow", int)
        bus.topic("fast", int)
        bus.subscribe("slow", lambda env: None)

        async def echo(env: Envelope[int]) -> None:
            await bus.reply(env, env.payload)

        bus.subscribe("fast", echo)
        async with trio.open_nursery() as nursery:
            nursery.cancel_scope.deadline = trio.current_time() + 50

            async def slow() -> None:
                with pytest.raises(RequestTimeoutError):
                    await bus.request("slow", 0, timeout=100.0)

            nursery.start_soon(slow)
            await trio.sleep(0.1)
            for i in range(1000):
                assert (await bus.request("fast", i, timeout=100.0)).payload == i
            queued = sum(len(q) for q in bus._clock.queues.values())
            assert queued <= 2 * 2 + 64 + 1
            nursery.cancel_scope.cancel()
        assert bus.stats().pending_requests == 0


async def test_a_cancelled_request_leaves_nothing_pending() -> None:
    async with open_bus() as bus:
        bus.topic("q", int)
        bus.subscribe("q", lambda env: None)
        with trio.move_on_after(0.01):
            await bus.request("q", 1, timeout=60.0)
        assert bus.stats().pending_requests == 0


async def test_publish_batch_delivers_in_order_with_one_publish_time() -> None:
    got: list[Envelope[int]] = []
    async with open_bus() as bus:
        numbers = bus.topic("t", int)
        bus.subscribe("t", got.append)
        envs = await numbers.publish_batch(range(10), key="k", headers={"h": "v"})
    assert got == envs
    assert [e.payload for e in got] == list(range(10))
    assert len({e.time for e in got}) == 1 and len({e.id for e in got}) == 10
    assert [e.id for e in got] == sorted(e.id for e in got)
    assert all(e.key == "k" and e.headers == {"h": "v"} for e in got)
    assert bus.stats().topics["t"].published == 10


async def test_publish_batch_checks_every_payload_before_publishing_any() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload))
        with pytest.raises(PayloadTypeError):
            await bus.publish_batch("t", [1, 2, "three", 4])
    assert got == []
    assert bus.stats().topics["t"].published == 0


async def test_publish_batch_larger_than_the_mailbox_waits_for_room() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", lambda env: got.append(env.payload), capacity=4)
        await bus.publish_batch("t", range(10))
        assert len(sub.lanes[0].items) <= 4
    assert got == list(range(10))


async def test_publish_batch_fans_out_retains_and_keeps_key_order() -> None:
    from bus import Retention

    seen: dict[str, list[int]] = {"a": [], "b": []}
    async with open_bus() as bus:
        bus.topic("t", int, retain=Retention(max_count=100))
        bus.subscribe("t", lambda env: seen["a"].append(env.payload), name="a")
        bus.subscribe(
            "t", lambda env: seen["b"].append(env.payload), name="b", concurrency=2
        )
        await bus.publish_batch("t", range(6), key="one")
        await bus.drain()
        assert [e.payload for e in bus.retained("t")] == list(range(6))
    assert seen == {"a": list(range(6)), "b": list(range(6))}


async def test_publish_batch_applies_drop_policies_past_the_room() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload), name="h", capacity=3,
                      overflow="drop_newest")
        await bus.publish_batch("t", range(8))
    assert got == [0, 1, 2]
    assert bus.stats().actors["h"].dropped == 5


async def test_topic_handle_publishes_nowait() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        numbers = bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload))
        numbers.publish_nowait(7)
    assert got == [7]


async def _fan_out(
    mailboxes: list[tuple[int, str]], count: int, batch: bool
) -> tuple[dict[str, list[int]], dict[str, int]]:
    got: dict[str, list[int]] = {f"s{i}": [] for i in range(len(mailboxes))}
    async with open_bus() as bus:
        bus.topic("t", int)
        for i, (capacity, overflow) in enumerate(mailboxes):
            bus.subscribe(
                "t", lambda env, name=f"s{i}": got[name].append(env.payload), name=f"s{i}",
                capacity=capacity, overflow=overflow,
            )
        if batch:
            await bus.publish_batch("t", range(count))
        else:
            for n in range(count):
                await bus.publish("t", n)
    return got, {name: actor.dropped for name, actor in bus.stats().actors.items()}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=2, max_size=4),
    st.sampled_from(["block", "drop_newest", "drop_oldest"]),
    st.integers(0, 20),
)
def test_publish_batch_fanning_out_leaves_what_publishing_in_turn_does(
    capacities: list[int], overflow: str, count: int
) -> None:
    """publish_batch to several plain mailboxes (one extend each for what fits in all,
    then one envelope at a time) ends as publish of each payload in turn would."""
    mailboxes = [(capacity, overflow) for capacity in capacities]
    assert trio.run(_fan_out, mailboxes, count, True) == trio.run(
        _fan_out, mailboxes, count, False
    )
