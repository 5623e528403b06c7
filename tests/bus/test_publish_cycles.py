"""The publish cycle under ``block`` and the ways out documented in docs/design.md
(issue 6, item 15).

``ping``'s handler publishes to ``pong`` and back, three messages per message received,
for a few hops: a bounded burst of 3 + 9 + 27 + 81 = 120 messages, more than two small
mailboxes hold.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from bus import Bus, Envelope, open_bus

HOPS = 4
FAN = 3
TOTAL = sum(FAN**i for i in range(1, HOPS + 1))  # 120 messages after the first


def bouncer(bus: Bus, other: str, publish: Any = None) -> Any:
    async def handle(env: Envelope[int]) -> None:
        if env.payload > 0:
            for _ in range(FAN):
                if publish is None:
                    await bus.publish(other, env.payload - 1)
                else:
                    publish(other, env.payload - 1)

    return handle


async def _run(capacity: int, overflow: str = "block", spawn: bool = False) -> tuple[Bus, float]:
    async with trio.open_nursery() as nursery, open_bus(drain_timeout=30) as bus:
        start = trio.current_time()
        for name in ("ping", "pong"):
            bus.topic(name, int)
        publish = (lambda topic, n: nursery.start_soon(bus.publish, topic, n)) if spawn else None
        for name, other in (("ping", "pong"), ("pong", "ping")):
            bus.subscribe(
                name, bouncer(bus, other, publish), name=name, capacity=capacity,
                overflow=overflow if name == "pong" else "block",
            )
        await bus.publish("ping", HOPS)
    return bus, trio.current_time() - start


def _handled(bus: Bus) -> int:
    actors = bus.stats().actors
    return actors["ping"].delivered + actors["pong"].delivered


async def test_a_cycle_of_full_block_mailboxes_waits_until_the_drain_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, elapsed = await _run(capacity=2)
    assert elapsed == 30  # deadlocked: only the drain timeout ended it
    assert _handled(bus) == 2  # one message each side, then each blocks on the other


async def test_way_out_a_mailbox_that_holds_the_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, elapsed = await _run(capacity=TOTAL)
    assert elapsed == 0
    assert _handled(bus) == 1 + TOTAL


async def test_way_out_a_dropping_subscriber_in_the_cycle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, elapsed = await _run(capacity=2, overflow="drop_newest")
    assert elapsed == 0
    pong = bus.stats().actors["pong"]
    assert pong.dropped == 17  # of the 34 published; the other 17 handled
    topics = bus.stats().topics
    published = topics["ping"].published + topics["pong"].published
    assert _handled(bus) + pong.dropped == published  # every message handled or dropped


async def test_way_out_publishing_from_a_separate_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, elapsed = await _run(capacity=2, spawn=True)
    assert elapsed == 0
    assert _handled(bus) == 1 + TOTAL
