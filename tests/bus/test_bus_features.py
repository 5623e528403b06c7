"""Retention and replay, request/reply, dedup, drain and close."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.lowlevel
from structlog.testing import capture_logs

from bus import (
    ConfigurationError,
    DedupWindow,
    Envelope,
    RequestTimeoutError,
    Retention,
    open_bus,
)


class Event(msgspec.Struct):
    n: int



async def test_retention_added_after_publishing_retains_the_next_message() -> None:
    """A topic with one plain subscriber takes publish's shortest path; gaining a
    retention log later must put it back on the path that retains."""
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got.append(env.payload))
        await bus.publish("t", 1)
        bus.topic("t", int, retain=Retention(max_count=10))
        await bus.publish("t", 2)
        await bus.drain()
        assert [e.payload for e in bus.retained("t")] == [2]
    assert got == [1, 2]

async def test_replay_delivers_retained_messages_first_then_live_ones() -> None:
    got: list[tuple[str, int]] = []
    async with open_bus() as bus:
        bus.topic("acct.opened", Event, retain=Retention(max_count=100))
        bus.topic("acct.closed", Event, retain=Retention(max_count=100))
        bus.topic("other", Event, retain=Retention(max_count=100))
        await bus.publish("acct.opened", Event(1))
        await bus.publish("other", Event(99))
        await bus.publish("acct.closed", Event(2))
        bus.subscribe("acct.*", lambda env: got.append((env.topic, env.payload.n)), replay=True)
        await bus.publish("acct.opened", Event(3))
    assert got == [("acct.opened", 1), ("acct.closed", 2), ("acct.opened", 3)]


async def test_late_subscriber_without_replay_sees_only_new_messages() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int, retain=Retention(max_count=10))
        await bus.publish("t", 1)
        bus.subscribe("t", lambda env: got.append(env.payload))
        await bus.publish("t", 2)
    assert got == [2]


async def test_retention_by_age_uses_trios_clock(autojump_clock: Any) -> None:
    async with open_bus() as bus:
        bus.topic("t", int, retain=Retention(max_age=60))
        await bus.publish("t", 1)
        await trio.sleep(45)
        await bus.publish("t", 2)
        assert [e.payload for e in bus.retained("t")] == [1, 2]
        await trio.sleep(30)
        assert [e.payload for e in bus.retained("t")] == [2]
        assert bus.stats().topics["t"].retained == 1


async def test_retention_by_bytes_counts_the_encoded_payload() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_bytes=20))
        for i in range(5):
            await bus.publish("t", Event(i))  # b'{"n":0}' is 7 bytes
        assert [e.payload.n for e in bus.retained("t")] == [3, 4]
        assert bus.stats().topics["t"].retained_bytes == 14


async def test_request_reply_round_trip() -> None:
    async def doubler(env: Envelope[Event]) -> None:
        await bus.reply(env, Event(env.payload.n * 2), headers={"by": "doubler"})

    async with open_bus() as bus:
        bus.topic("math.double", Event)
        bus.subscribe("math.double", doubler)
        replies = [await bus.request("math.double", Event(i), timeout=1) for i in range(3)]
    assert [r.payload.n for r in replies] == [0, 2, 4]
    assert replies[0].headers["by"] == "doubler"
    assert bus.stats().pending_requests == 0


async def test_request_times_out_on_trios_clock(autojump_clock: Any) -> None:
    async with open_bus() as bus:
        bus.topic("void", Event)
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match="no reply to request on 'void' within 5"):
            await bus.request("void", Event(1), timeout=5)
        assert trio.current_time() - start == pytest.approx(5)
        assert bus.stats().pending_requests == 0


async def test_reply_to_a_non_request_and_bad_timeout_are_rejected() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event)
        env = await bus.publish("t", Event(1))
        with pytest.raises(ConfigurationError, match="is not a request"):
            await bus.reply(env, Event(2))
        with pytest.raises(ConfigurationError, match="timeout must be"):
            await bus.request("t", Event(1), timeout=0)


async def test_dedup_skips_repeated_ids_and_idempotency_keys(autojump_clock: Any) -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("pay", int)
        bus.subscribe(
            "pay", lambda env: got.append(env.payload), name="p", dedup=DedupWindow(ttl=60)
        )
        await bus.publish("pay", 1, headers={"idempotency-key": "order-7"})
        await bus.publish("pay", 2, headers={"idempotency-key": "order-7"})  # duplicate
        await bus.publish("pay", 3)
        await bus.drain()
        await trio.sleep(61)
        await bus.publish("pay", 4, headers={"idempotency-key": "order-7"})  # window expired
    assert got == [1, 3, 4]
    assert bus.stats().actors["p"].duplicates == 1


async def test_leaving_the_block_drains_chains_of_handlers() -> None:
    got: list[str] = []

    async def step1(env: Envelope[str]) -> None:
        await trio.lowlevel.checkpoint()
        await bus.publish("s2", env.payload + ">2")

    async def step2(env: Envelope[str]) -> None:
        await bus.publish("s3", env.payload + ">3")

    async with open_bus() as bus:
        for t in ("s1", "s2", "s3"):
            bus.topic(t, str)
        bus.subscribe("s1", step1)
        bus.subscribe("s2", step2)
        bus.subscribe("s3", lambda env: got.append(env.payload))
        for i in range(3):
            await bus.publish("s1", f"m{i}")
    assert got == ["m0>2>3", "m1>2>3", "m2>2>3"]


async def test_drain_timeout_reports_undelivered_messages(autojump_clock: Any) -> None:
    async def stuck(env: Envelope[int]) -> None:
        await trio.sleep_forever()

    with capture_logs() as logs:
        async with open_bus(drain_timeout=3) as bus:
            bus.topic("t", int)
            bus.subscribe("t", stuck)
            for i in range(4):
                await bus.publish("t", i)
    [report] = [e for e in logs if e["event"] == "bus.undelivered"]
    assert report["messages"] == 4  # three queued, one put back by the cancelled handler
