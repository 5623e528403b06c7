"""Request/reply: typed replies, failures sent back, private reply topics (issue 6, item 13)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from bus import (
    Bus,
    Envelope,
    PayloadTypeError,
    RequestFailedError,
    RequestTimeoutError,
    RetryPolicy,
    open_bus,
)
from bus._routing import Pattern
from bus.testing import Recorder


class Ask(msgspec.Struct):
    sku: str


class Price(msgspec.Struct):
    cents: int


def quoter(bus: Bus, answer: Any) -> Any:
    async def handle(env: Envelope[Ask]) -> None:
        await bus.reply(env, answer(env.payload))

    return handle


async def test_a_typed_request_returns_the_declared_type() -> None:
    async with open_bus() as bus:
        bus.topic("quote", Ask)
        bus.subscribe("quote", quoter(bus, lambda ask: Price(len(ask.sku))), name="quoter")
        with trio.fail_after(5):
            reply = await bus.request("quote", Ask("abc"), timeout=1, reply_type=Price)
    assert reply.payload == Price(3)


async def test_a_reply_of_the_wrong_type_fails_the_replier_and_the_requester(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_bus(retry=RetryPolicy(attempts=2, base_delay=1, jitter=0)) as bus:
        bus.topic("quote", Ask)
        bus.subscribe("quote", quoter(bus, lambda ask: "free"), name="quoter")
        start = trio.current_time()
        with pytest.raises(RequestFailedError) as caught:
            await bus.request("quote", Ask("abc"), timeout=60, reply_type=Price)
        assert trio.current_time() - start == pytest.approx(1)  # one retry, not the timeout
        await bus.drain()
        [dead] = bus.retained("bus.dead_letter")
    failed = caught.value
    assert failed.subscriber == "quoter"
    assert failed.error_type == "bus._errors.PayloadTypeError"
    assert "must be Price (its reply_type), got str" in failed.error
    assert failed.attempts == 2
    assert "subscriber 'quoter' raised bus._errors.PayloadTypeError" in str(failed)
    assert dead.headers["x-bus-original-topic"] == "quote"


async def test_a_replier_that_raises_makes_the_request_raise_not_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def boom(ask: Ask) -> Price:
        raise ValueError(f"no price for {ask.sku}")

    async with open_bus() as bus:
        bus.topic("quote", Ask)
        bus.subscribe("quote", quoter(bus, boom), name="quoter", retry=RetryPolicy(attempts=1))
        start = trio.current_time()
        with pytest.raises(RequestFailedError, match=r"'quoter' raised builtins\.ValueError"):
            await bus.request("quote", Ask("x"), timeout=30)
        assert trio.current_time() == start  # no retry, no waiting for the timeout
        assert bus.stats().pending_requests == 0
        # and with nobody answering at all, it is still a timeout
        bus.topic("void", Ask)
        with pytest.raises(RequestTimeoutError):
            await bus.request("void", Ask("x"), timeout=2)


async def test_reply_topics_are_private() -> None:
    async with open_bus() as bus:
        rec = Recorder.attach(bus)  # on '#'
        star = Recorder.attach(bus, "bus.*.*")
        bus.topic("quote", Ask)
        bus.subscribe("quote", quoter(bus, lambda ask: Price(1)), name="quoter")
        with trio.fail_after(5):
            await bus.request("quote", Ask("a"), timeout=1)
        await bus.drain()
        assert bus.reply_topic.startswith("bus.reply.")
        assert [name for name in bus.topics() if name.startswith("bus.reply")] == []
        assert [name for name in bus.stats().topics if name.startswith("bus.reply")] == []
        assert [env.topic for env in rec.envelopes] == ["quote"]
        assert star.envelopes == []


def test_only_patterns_naming_the_reply_prefix_match_reply_topics() -> None:
    topic = "bus.reply.0001"
    assert not Pattern("#").matches(topic)
    assert not Pattern("bus.#").matches(topic)
    assert not Pattern("*.*.*").matches(topic)
    assert Pattern("bus.reply.#").matches(topic)
    assert Pattern("bus.reply.*").matches(topic)
    assert Pattern("bus.#").matches("bus.dead_letter")  # other bus.* topics are ordinary


async def test_replies_and_failures_cross_to_another_bus() -> None:
    """The requester's bus and the replier's bus joined by forwarding subscriptions, as
    bridges join them: the reply travels on the requester's reply topic."""
    with trio.fail_after(10):
        async with open_bus(name="a") as a, open_bus(name="b") as b:
            for bus in (a, b):
                bus.topic("quote", Ask)
            b.subscribe("bus.reply.#", a.route, name="back")  # b -> a
            a.subscribe("quote", b.route, name="over")  # a -> b

            async def answer(env: Envelope[Ask]) -> None:
                if env.payload.sku == "boom":
                    raise KeyError(env.payload.sku)
                await b.reply(env, Price(5) if env.payload.sku == "ok" else "free")

            b.subscribe("quote", answer, name="remote", retry=RetryPolicy(attempts=1))
            reply = await a.request("quote", Ask("ok"), timeout=5, reply_type=Price)
            assert reply.payload == Price(5) and reply.source == "b"
            with pytest.raises(PayloadTypeError, match="must be Price"):
                await a.request("quote", Ask("free"), timeout=5, reply_type=Price)
            with pytest.raises(RequestFailedError, match=r"'remote' raised builtins\.KeyError"):
                await a.request("quote", Ask("boom"), timeout=5)
