"""Middleware with batches, request/reply, ``publish_nowait``, ``publish_batch``, imports,
actors, trio's mock clock; bad middleware; and a bus without any (nothing composed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import pytest
import trio

from bus import (
    Actor,
    Bus,
    ConfigurationError,
    DedupWindow,
    Envelope,
    Middleware,
    PayloadTypeError,
    open_bus,
)
from bus._loopback import LoopbackBridge, LoopbackBroker, LoopbackRecord

replace = msgspec.structs.replace
Next = Callable[[Any], Awaitable[Any]]


class Order(msgspec.Struct):
    item: str
    qty: int


class Stamp(Middleware):
    """Adds ``x-stamp`` on publish; records what it handles."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.handled: list[str] = []
        self.batches: list[int] = []

    async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
        self.published.append(env.topic)
        out: Envelope[Any] = await call_next(replace(env, headers={**env.headers, "x-stamp": "1"}))
        return out

    async def handle(self, env: Envelope[Any], call_next: Next) -> None:
        self.handled.append(env.topic)
        await call_next(env)

    async def handle_batch(self, envs: Sequence[Envelope[Any]], call_next: Next) -> Any:
        self.batches.append(len(envs))
        return await call_next([replace(env, payload=env.payload * 2) for env in envs])


async def test_a_batch_subscription_runs_handle_batch_around_the_batch() -> None:
    stamp = Stamp()
    got: list[list[int]] = []
    async with open_bus() as bus:
        bus.topic("n", int)
        bus.subscribe(
            "n", lambda envs: got.append([e.payload for e in envs]), batch=10,
            middleware=[stamp],
        )
        await bus.publish_batch("n", [1, 2, 3])
        await bus.drain()
    assert got == [[2, 4, 6]] and stamp.batches == [3] and stamp.handled == []


async def test_handle_without_handle_batch_cannot_wrap_a_batch_subscription() -> None:
    class OnlyHandle:
        async def handle(self, env: Envelope[Any], call_next: Next) -> None:
            await call_next(env)

    async with open_bus(middleware=[OnlyHandle()]) as bus:
        bus.topic("n", int)
        with pytest.raises(ConfigurationError, match=r"has handle\(\) but no handle_batch"):
            bus.subscribe("n", lambda envs: None, batch=10, name="b")
        bus.subscribe("n", lambda env: None)  # a single-message subscription is fine


async def test_request_goes_through_publish_hooks_and_the_reply_does_not() -> None:
    stamp = Stamp()
    async with open_bus(middleware=[stamp]) as bus:
        bus.topic("ask", int)

        async def answer(env: Envelope[int]) -> None:
            assert env.headers["x-stamp"] == "1"  # the request was stamped
            await bus.reply(env, env.payload + 1)

        bus.subscribe("ask", answer)
        reply = await bus.request("ask", 41, timeout=5)
    assert reply.payload == 42 and "x-stamp" not in reply.headers
    assert stamp.published == ["ask"] and stamp.handled == ["ask"]


async def test_a_reply_to_another_bus_skips_the_repliers_publish_hooks() -> None:
    """Two buses joined by forwarding subscriptions, as bridges join them: the replier's
    bus publishes the reply on the requester's reply topic, without its publish hooks."""
    stamp = Stamp()
    async with open_bus(name="a") as a, open_bus(name="b", middleware=[stamp]) as b:
        for bus in (a, b):
            bus.topic("ask", int)
        b.subscribe("bus.reply.#", a.route, name="back")  # b -> a
        a.subscribe("ask", b.route, name="over")  # a -> b

        async def answer(env: Envelope[int]) -> None:
            await b.reply(env, env.payload + 1)

        b.subscribe("ask", answer)
        reply = await a.request("ask", 1, timeout=5)
    assert reply.payload == 2 and "x-stamp" not in reply.headers
    assert stamp.published == []  # b published only the reply
    assert sorted(stamp.handled) == ["ask", a.reply_topic]  # handle hooks: every handler


async def test_exports_carry_what_publish_hooks_passed_on_without_handle_hooks() -> None:
    broker = LoopbackBroker()
    stamp = Stamp()
    async with open_bus(middleware=[stamp]) as bus:
        bus.topic("n", int)
        await bus.attach(LoopbackBridge(broker), export=["n"])
        await bus.publish("n", 1, confirm=True)  # done: the broker has it
    [record] = broker.records("n")
    assert record.headers["x-stamp"] == "1" and record.data == b"1"
    assert stamp.published == ["n"] and stamp.handled == []  # the export is not a handler


async def test_publish_nowait_refuses_when_publish_hooks_are_installed() -> None:
    async with open_bus(middleware=[Stamp()]) as bus:
        bus.topic("n", int)
        with pytest.raises(ConfigurationError, match=r"publish_nowait cannot run .*Stamp"):
            bus.publish_nowait("n", 1)
        with pytest.raises(ConfigurationError, match=r"await bus\.publish"):
            bus.topic("n", int).publish_nowait(1)


async def test_publish_nowait_works_with_handle_hooks_only() -> None:
    class Handles:
        async def handle(self, env: Envelope[Any], call_next: Next) -> None:
            await call_next(replace(env, payload=env.payload + 100))

    got: list[int] = []
    async with open_bus(middleware=[Handles()]) as bus:
        assert type(bus) is Bus  # no publish hook: the plain bus
        bus.topic("n", int)
        bus.subscribe("n", lambda env: got.append(env.payload))
        bus.publish_nowait("n", 1)
        await bus.drain()
    assert got == [101]


async def test_publish_batch_sends_each_message_through_the_hooks() -> None:
    stamp = Stamp()
    got: list[Envelope[int]] = []
    async with open_bus(middleware=[stamp]) as bus:
        bus.topic("n", int)
        bus.subscribe("n", got.append)
        with pytest.raises(PayloadTypeError):
            await bus.publish_batch("n", [1, "two", 3])  # checked first: none goes out
        sent = await bus.publish_batch("n", [1, 2])
        await bus.drain()
    assert stamp.published == ["n", "n"]
    assert [e.payload for e in got] == [1, 2] and all(e.headers["x-stamp"] for e in got)
    assert sent == got


async def test_imports_skip_publish_hooks_and_go_through_handle_hooks() -> None:
    broker = LoopbackBroker()
    broker.append(LoopbackRecord("n", b"7", "id-1", None, {}, 0.0))
    stamp = Stamp()
    got: list[Envelope[int]] = []
    arrived = trio.Event()

    def handler(env: Envelope[int]) -> None:
        got.append(env)
        arrived.set()

    async with open_bus(middleware=[stamp]) as bus:
        bus.topic("n", int)
        bus.subscribe("n", handler)
        await bus.attach(LoopbackBridge(broker), import_=["n"])
        await arrived.wait()
    [env] = got
    assert env.payload == 7 and "x-stamp" not in env.headers
    assert stamp.published == [] and stamp.handled == ["n"]


async def test_an_actor_keeps_its_hooks_under_middleware() -> None:
    stamp = Stamp()

    class Counter(Actor):
        def __init__(self) -> None:
            self.started = 0
            self.seen: list[int] = []

        async def on_start(self) -> None:
            self.started += 1

        async def handle(self, env: Envelope[Any]) -> None:
            self.seen.append(env.payload)

    actor = Counter()
    async with open_bus() as bus:
        bus.topic("n", int)
        bus.subscribe("n", actor, middleware=[stamp])
        await bus.publish("n", 5)
        await bus.drain()
    assert actor.started == 1 and actor.seen == [5] and stamp.handled == ["n"]


async def test_a_metrics_hook_measures_handlers_in_virtual_time(autojump_clock: Any) -> None:
    took: list[float] = []

    class Timer:
        async def handle(self, env: Envelope[Any], call_next: Next) -> None:
            start = trio.current_time()
            try:
                await call_next(env)
            finally:
                took.append(trio.current_time() - start)

    async def slow(env: Envelope[int]) -> None:
        await trio.sleep(env.payload)

    async with open_bus(middleware=[Timer()]) as bus:
        bus.topic("n", int)
        bus.subscribe("n", slow)
        for seconds in (5, 60):
            await bus.publish("n", seconds)
        await bus.drain()
    assert took == [5.0, 60.0]


@pytest.mark.parametrize(
    ("middleware", "says"),
    [
        (Stamp(), "takes a list of middleware objects"),
        ([Stamp], "got the class Stamp, not an instance: pass Stamp()"),
        ([object()], "object is not a middleware: it has none of"),
    ],
)
async def test_bad_middleware_is_refused_at_open_with_the_fix(middleware: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        async with open_bus(middleware=middleware):
            pass


async def test_a_sync_hook_is_refused_at_subscribe() -> None:
    class Sync:
        def handle(self, env: Envelope[Any], call_next: Next) -> None:
            pass

    async with open_bus() as bus:
        bus.topic("n", int)
        with pytest.raises(ConfigurationError, match=r"Sync.handle must be an async def"):
            bus.subscribe("n", lambda env: None, middleware=[Sync()])


async def test_without_middleware_nothing_is_composed() -> None:
    def handler(env: Envelope[Any]) -> None:
        pass

    async with open_bus() as bus:
        assert type(bus) is Bus and bus.middleware == ()
        bus.topic("n", int)
        sub = bus.subscribe("n", handler)
        assert sub._fn is handler and not sub._is_async  # the sync fast path stays


async def test_trace_context_flows_through_hooks_to_a_handlers_publish() -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = f"00-{trace_id}-b7ad6b7169203331-01"
    seen: list[str] = []
    async with open_bus(middleware=[Stamp()]) as bus:
        bus.topic("first", int)
        bus.topic("second", int)

        async def forward(env: Envelope[int]) -> None:
            await bus.publish("second", env.payload)

        bus.subscribe("first", forward)
        bus.subscribe("second", lambda env: seen.append(env.headers["traceparent"]))
        await bus.publish("first", 1, headers={"traceparent": parent})
        await bus.drain()
    [child] = seen
    assert child.split("-")[1] == trace_id


async def test_a_publish_hook_may_move_a_message_to_another_declared_topic() -> None:
    class Quarantine:
        async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
            if env.payload < 0:
                env = replace(env, topic="n.quarantine")
            out: Envelope[Any] = await call_next(env)
            return out

    got: list[tuple[str, int]] = []
    async with open_bus(middleware=[Quarantine()]) as bus:
        bus.topic("n", int)
        bus.topic("n.quarantine", int)
        bus.subscribe("n.#", lambda env: got.append((env.topic, env.payload)))
        sent = await bus.publish("n", -1)
        await bus.publish("n", 1)
        await bus.drain()
        published = {t: s.published for t, s in bus.stats().topics.items() if t.startswith("n")}
    assert sent.topic == "n.quarantine"
    assert got == [("n.quarantine", -1), ("n", 1)]
    assert published == {"n": 1, "n.quarantine": 1}


async def test_dedup_runs_before_the_handle_hooks() -> None:
    stamp = Stamp()
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("n", int)
        bus.subscribe(
            "n", lambda env: got.append(env.payload), dedup=DedupWindow(),
            middleware=[stamp],
        )
        for _ in range(2):
            await bus.publish("n", 1, headers={"idempotency-key": "k"})
        await bus.drain()
    assert got == [1] and stamp.handled == ["n"]


@pytest.mark.bus(middleware=[Stamp()])
async def test_the_bus_marker_takes_middleware(event_bus: Bus) -> None:
    event_bus.topic("n", int)
    sent = await event_bus.publish("n", 1)
    assert sent.headers["x-stamp"] == "1"
