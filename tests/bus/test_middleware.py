"""Middleware around publish and handle: order, transforms, headers, refusals, scope.

The variants (batches, request/reply, ``publish_nowait``, imports, the mock clock, bad
input, the no-middleware bus) are in ``test_middleware_variants.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from bus import ConfigurationError, Envelope, PayloadTypeError, RetryPolicy, open_bus
from bus.abc import H_ATTEMPTS, H_ERROR, H_ERROR_TYPE, H_FAILED_SUBSCRIBER

replace = msgspec.structs.replace
Next = Callable[[Envelope[Any]], Awaitable[Any]]


class Order(msgspec.Struct):
    item: str
    qty: int


class Trace:
    """Records when it runs: before and after call_next, for publish and handle."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
        self.log.append(f"{self.name}.publish>")
        out: Envelope[Any] = await call_next(env)
        self.log.append(f"{self.name}.publish<")
        return out

    async def handle(self, env: Envelope[Any], call_next: Next) -> None:
        self.log.append(f"{self.name}.handle>")
        await call_next(env)
        self.log.append(f"{self.name}.handle<")


async def test_bus_wide_run_outermost_then_per_subscription_first_in_the_list_first() -> None:
    log: list[str] = []
    async with open_bus(middleware=[Trace("a", log), Trace("b", log)]) as bus:
        bus.topic("orders", Order)
        bus.subscribe(
            "orders", lambda env: log.append("handler"),
            middleware=[Trace("c", log), Trace("d", log)],
        )
        await bus.publish("orders", Order("tea", 1))
        log.append("published")
        await bus.drain()
    assert log == [
        "a.publish>", "b.publish>", "b.publish<", "a.publish<", "published",
        "a.handle>", "b.handle>", "c.handle>", "d.handle>", "handler",
        "d.handle<", "c.handle<", "b.handle<", "a.handle<",
    ]


async def test_per_subscription_middleware_wraps_only_its_own_subscription() -> None:
    log: list[str] = []
    async with open_bus(middleware=[Trace("bus", log)]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", lambda env: log.append("plain"), name="plain")
        bus.subscribe(
            "orders", lambda env: log.append("wrapped"), name="wrapped",
            middleware=[Trace("own", log)],
        )
        await bus.publish("orders", Order("tea", 1))
        await bus.drain()
    handled = [entry for entry in log if "publish" not in entry]
    assert handled.count("bus.handle>") == 2  # both subscriptions
    assert handled.count("own.handle>") == 1
    own = handled.index("own.handle>")
    assert handled[own + 1] == "wrapped"


class Normalise:
    """Publish side: upper-cases the item and adds a header, as a new envelope."""

    async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
        payload = replace(env.payload, item=env.payload.item.upper())
        headers = {**env.headers, "x-normalised": "yes"}
        out: Envelope[Any] = await call_next(replace(env, payload=payload, headers=headers))
        return out


async def test_publish_middleware_transforms_the_payload_and_adds_headers() -> None:
    got: list[Envelope[Order]] = []
    async with open_bus(middleware=[Normalise()]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        caller_headers = {"tenant": "t1"}
        sent = await bus.publish("orders", Order("tea", 1), headers=caller_headers)
        await bus.drain()
    [env] = got
    assert env.payload == Order("TEA", 1)
    assert env.headers == {"tenant": "t1", "x-normalised": "yes"}
    assert sent is env  # publish returns the envelope that went out
    assert caller_headers == {"tenant": "t1"}  # the caller's dict is untouched


class Swap:
    """Handle side: the handler sees another payload than the one delivered."""

    async def handle(self, env: Envelope[Any], call_next: Next) -> None:
        await call_next(replace(env, payload=Order(env.payload.item, env.payload.qty * 10)))


async def test_handle_middleware_transforms_what_the_handler_sees() -> None:
    got: list[Order] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", lambda env: got.append(env.payload), middleware=[Swap()])
        await bus.publish("orders", Order("tea", 2))
        await bus.drain()
    assert got == [Order("tea", 20)]


class Vandal:
    """Passes on what the topic cannot carry."""

    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
        out: Envelope[Any] = await call_next(replace(env, **self.changes))
        return out


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"payload": "not an order"}, "Order"),
        ({"headers": {"n": 1}}, "header 'n' must have a str value"),
        ({"key": 7}, "key must be a str"),
    ],
)
async def test_what_a_publish_hook_passes_on_is_checked_again(
    changes: dict[str, Any], says: str
) -> None:
    got: list[Envelope[Any]] = []
    async with open_bus(middleware=[Vandal(**changes)]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        with pytest.raises(PayloadTypeError, match=says):
            await bus.publish("orders", Order("tea", 1))
        await bus.drain()
        assert bus.stats().topics["orders"].published == 0
    assert got == []


async def test_a_publish_hook_passing_on_no_envelope_is_named() -> None:
    class Payloads:
        async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
            out: Envelope[Any] = await call_next(env.payload)  # the payload, not the envelope
            return out

    async with open_bus(middleware=[Normalise(), Payloads(), Normalise()]) as bus:
        bus.topic("orders", Order)
        with pytest.raises(ConfigurationError, match="Payloads passed Order to call_next"):
            await bus.publish("orders", Order("tea", 1))


class Deny:
    """Refuses every message without an ``authorization`` header."""

    async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
        if "authorization" not in env.headers:
            raise PermissionError(f"{env.topic}: no authorization header")
        out: Envelope[Any] = await call_next(env)
        return out

    async def handle(self, env: Envelope[Any], call_next: Next) -> None:
        if env.headers.get("authorization") != "admin":
            raise PermissionError(f"{env.topic}: not an admin")
        await call_next(env)


async def test_a_refused_publish_raises_to_the_publisher_and_reaches_nobody() -> None:
    got: list[Envelope[Any]] = []
    async with open_bus(middleware=[Deny()]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        with pytest.raises(PermissionError, match="no authorization header"):
            await bus.publish("orders", Order("tea", 1))
        await bus.publish("orders", Order("tea", 2), headers={"authorization": "admin"})
        await bus.drain()
        assert bus.stats().topics["orders"].published == 1
    assert [env.payload.qty for env in got] == [2]


async def test_a_refused_handle_is_retried_then_dead_lettered(autojump_clock: Any) -> None:
    attempts: list[int] = []
    handled: list[Envelope[Any]] = []
    seen_by_hook: list[int] = []

    class Count:
        async def handle(self, env: Envelope[Any], call_next: Next) -> None:
            seen_by_hook.append(env.attempt)
            await call_next(env)

    def handler(env: Envelope[Any]) -> None:
        attempts.append(env.attempt)
        handled.append(env)

    async with open_bus(retry=RetryPolicy(attempts=3), seed=1) as bus:
        bus.topic("orders", Order)
        dead: list[Envelope[Any]] = []
        bus.subscribe("bus.dead_letter", dead.append, name="dlq")
        bus.subscribe("orders", handler, name="orders", middleware=[Count(), Deny()])
        await bus.publish("orders", Order("tea", 1), headers={"authorization": "guest"})
        await bus.publish("orders", Order("tea", 2), headers={"authorization": "admin"})
        await bus.drain()
        stats = bus.stats().actors["orders"]
    assert seen_by_hook == [1, 2, 3, 1]  # every attempt goes through the chain
    assert [env.payload.qty for env in handled] == [2]
    [letter] = dead
    assert letter.payload == Order("tea", 1)
    assert letter.headers[H_ERROR] == "orders: not an admin"
    assert letter.headers[H_ERROR_TYPE] == "builtins.PermissionError"
    assert letter.headers[H_FAILED_SUBSCRIBER] == "orders"
    assert letter.headers[H_ATTEMPTS] == "3"
    assert (stats.delivered, stats.dead_lettered, stats.retried) == (1, 1, 2)


async def test_a_publish_hook_that_neither_calls_next_nor_raises_is_an_error() -> None:
    class Forgetful:
        async def publish(self, env: Envelope[Any], call_next: Next) -> Envelope[Any]:
            return env  # forgot call_next: the message would be lost

    got: list[Envelope[Any]] = []
    async with open_bus(middleware=[Forgetful()]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", got.append)
        with pytest.raises(ConfigurationError, match=r"Forgetful\) returned without calling"):
            await bus.publish("orders", Order("tea", 1))
        await bus.drain()
    assert got == []


async def test_confirm_waits_for_the_message_the_hooks_passed_on() -> None:
    done = trio.Event()
    release = trio.Event()

    async def slow(env: Envelope[Any]) -> None:
        await release.wait()
        done.set()

    async with open_bus(middleware=[Normalise()]) as bus:
        bus.topic("orders", Order)
        bus.subscribe("orders", slow)
        async with trio.open_nursery() as nursery:
            sent: list[Envelope[Any]] = []

            async def publisher() -> None:
                sent.append(await bus.publish("orders", Order("tea", 1), confirm=True))

            nursery.start_soon(publisher)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == []  # the handler has not finished
            release.set()
        assert done.is_set() and sent[0].payload == Order("TEA", 1)
