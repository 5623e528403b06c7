"""Done-tracking: a message is done when every target handled, dead-lettered or dropped it.

Checked through ``publish(..., confirm=True)`` (a local publisher waiting) and through a
port's ``deliver(..., on_done=)`` (a bridge acknowledging its broker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

from bus import Bus, Envelope, NotDeliveredError, RetryPolicy, open_bus
from bus.abc import Bridge, Delivery, Port, Rejected

WITHIN = 5.0
"""Seconds a confirmed publish, or a handler getting its message, may take here."""


async def confirmed(bus: Bus, topic: str, payload: Any, **options: Any) -> None:
    """``publish(..., confirm=True)`` with a bound of its own: one that never returns fails
    here, saying so, instead of at the whole test's timeout."""
    with trio.move_on_after(WITHIN):
        await bus.publish(topic, payload, confirm=True, **options)
        return
    raise AssertionError(f"publish({topic!r}, {payload!r}, confirm=True) still waiting")


async def test_confirm_waits_until_every_subscriber_handled_it() -> None:
    order: list[str] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        fast_done = trio.Event()

        async def slow(env: Envelope[int]) -> None:
            await fast_done.wait()  # so it returns last, however the tasks are scheduled
            order.append("slow handled")

        def fast(env: Envelope[int]) -> None:
            order.append("fast handled")
            fast_done.set()

        bus.subscribe("t", slow, concurrency=2)
        bus.subscribe("t", fast)
        await confirmed(bus, "t", 1, key="k")
        order.append("publish returned")
    assert order == ["fast handled", "slow handled", "publish returned"]


async def test_confirm_waits_through_retries() -> None:
    tries: list[int] = []
    async with open_bus(seed=1) as bus:
        bus.topic("t", int)

        def flaky(env: Envelope[int]) -> None:
            tries.append(env.attempt)
            if env.attempt < 3:
                raise ValueError("not yet")

        bus.subscribe("t", flaky, retry=RetryPolicy(attempts=5, base_delay=0.001))
        await confirmed(bus, "t", 1)
        assert tries == [1, 2, 3]


async def test_confirm_raises_when_a_subscriber_dead_lettered_it() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)

        def poison(env: Envelope[int]) -> None:
            raise ValueError("bad order")

        bus.subscribe("t", poison, name="poison", retry=RetryPolicy(attempts=1))
        bus.subscribe("t", lambda env: None, name="fine")
        with pytest.raises(NotDeliveredError, match=r"poison: dead_lettered \(bad order\)") as err:
            await confirmed(bus, "t", 1)
    assert err.value.delivery.handled == 1
    assert [f.subscriber for f in err.value.delivery.failures] == ["poison"]


async def test_confirm_with_no_subscriber_returns_at_once() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        await confirmed(bus, "t", 1)


async def test_a_dropped_message_is_done_and_the_drop_recorded() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        gate, in_hand = trio.Event(), trio.Event()

        async def held(env: Envelope[int]) -> None:
            in_hand.set()
            await gate.wait()

        bus.subscribe("t", held, name="held", capacity=1, overflow="drop_newest")
        await bus.publish("t", 0)
        with trio.fail_after(WITHIN):
            await in_hand.wait()  # 0 in hand
        await bus.publish("t", 1)  # queued
        with pytest.raises(NotDeliveredError, match="held: dropped"):
            await confirmed(bus, "t", 2)
        gate.set()


async def test_the_untracked_path_carries_no_delivery() -> None:
    seen: list[Delivery | None] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: seen.append(env.delivery))
        await bus.publish("t", 1)
    assert seen == [None]


class ListBridge(Bridge):
    """Exports into a list; rejects payloads over 9 for good; fails 7 once, transiently."""

    def __init__(self, name: str = "list") -> None:
        self.name = name
        self.sent: list[int] = []
        self.transient_left = 1

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for env in batch:
            if env.payload > 9:
                results.append(Rejected(f"{env.payload} is too large"))
            elif env.payload == 7 and self.transient_left:
                self.transient_left -= 1
                results.append(ConnectionError("try again"))
            else:
                self.sent.append(env.payload)
                results.append(None)
        return results


async def test_confirm_includes_the_brokers_confirmation() -> None:
    bridge = ListBridge()
    async with open_bus() as bus:
        bus.topic("t", int)
        await bus.attach(bridge, export=["t"], retry=RetryPolicy(attempts=None, base_delay=0.01))
        await confirmed(bus, "t", 7)  # retried once before it counts
        assert bridge.sent == [7]
        with pytest.raises(NotDeliveredError, match="too large"):
            await confirmed(bus, "t", 10)


async def test_per_record_results_dead_letter_only_the_rejected_and_retry_only_the_failed(
    autojump_clock: Any,
) -> None:
    bridge = ListBridge()
    async with open_bus() as bus:
        bus.topic("t", int)
        await bus.attach(bridge, export=["t"], batch=16)
        for n in (1, 7, 11, 2, 12, 3):
            await bus.publish("t", n)
    assert sorted(bridge.sent) == [1, 2, 3, 7]
    letters = bus.retained(bus.dead_letter_topic)
    assert [e.payload for e in letters] == [11, 12]
    assert letters[0].headers["x-bus-error"] == "11 is too large"
    stats = bus.stats().actors["list:export"]
    assert stats.delivered == 4 and stats.dead_lettered == 2 and stats.retried == 1


class FeedBridge(Bridge):
    """Delivers what the test feeds it; records which ids were acknowledged."""

    def __init__(self, name: str = "feed") -> None:
        self.name = name
        self.send, self.recv = trio.open_memory_channel[tuple[str, str, bytes]](100)
        self.acked: list[str] = []
        self.outcomes: dict[str, Delivery] = {}

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
        pass

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for topic, id, data in self.recv:
            await port.deliver(topic, data, id=id, on_done=self._ack(id))

    def _ack(self, id: str) -> Any:
        def done(delivery: Delivery) -> None:
            self.acked.append(id)
            self.outcomes[id] = delivery

        return done


async def test_ingress_acks_only_when_done_and_out_of_order() -> None:
    bridge = FeedBridge()
    gates = {"a": trio.Event(), "b": trio.Event()}
    async with open_bus() as bus:
        bus.topic("t", str)

        async def handler(env: Envelope[str]) -> None:
            await gates[env.payload].wait()

        bus.subscribe("t", handler, concurrency=2)
        await bus.attach(bridge, import_=["t"])
        await bridge.send.send(("t", "1", b'"a"'))
        await bridge.send.send(("t", "2", b'"b"'))
        await trio.testing.wait_all_tasks_blocked()  # both handlers wait for their gate
        assert bridge.acked == []  # delivered into mailboxes, handlers still busy
        gates["b"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert bridge.acked == ["2"]
        gates["a"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert bridge.acked == ["2", "1"]


async def test_ingress_never_acks_what_the_bus_left_undelivered(autojump_clock: Any) -> None:
    bridge = FeedBridge()
    async with open_bus(drain_timeout=1) as bus:
        bus.topic("t", str)

        async def stuck(env: Envelope[str]) -> None:
            await trio.sleep_forever()

        bus.subscribe("t", stuck, name="stuck")
        await bus.attach(bridge, import_=["t"])
        await bridge.send.send(("t", "1", b'"a"'))
        await trio.sleep(0.1)
    assert bridge.acked == [] and dict(bus.undelivered) == {"stuck": 1}


async def test_undecodable_and_unwanted_imports_are_dead_lettered_and_acked() -> None:
    bridge = FeedBridge()
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.topic("other", int)
        await bus.attach(bridge, import_=["t"])
        await bridge.send.send(("t", "1", b'"not an int"'))
        await bridge.send.send(("other", "2", b"5"))
        await trio.testing.wait_all_tasks_blocked()  # both delivered before intake stops
    assert sorted(bridge.acked) == ["1", "2"]
    letters = {e.id: e.headers["x-bus-error"] for e in bus.retained(bus.dead_letter_topic)}
    assert "matches no import pattern" in letters["2"]
    assert "int" in letters["1"]


async def test_deliver_nowait_raises_wouldblock_and_delivers_to_nobody() -> None:
    got: dict[str, list[int]] = {"roomy": [], "full": []}
    async with open_bus() as bus:
        bus.topic("t", int)
        gate, in_hand = trio.Event(), trio.Event()

        async def full(env: Envelope[int]) -> None:
            in_hand.set()
            await gate.wait()
            got["full"].append(env.payload)

        bus.subscribe("t", lambda env: got["roomy"].append(env.payload), name="roomy")
        bus.subscribe("t", full, name="full", capacity=1)
        bridge = FeedBridge()
        att = await bus.attach(bridge, import_=["t"])
        att.port.deliver_nowait("t", b"1", id="1")
        with trio.fail_after(WITHIN):
            await in_hand.wait()  # 1 in full's hands
        att.port.deliver_nowait("t", b"2", id="2")  # fills full's mailbox
        with pytest.raises(trio.WouldBlock):
            att.port.deliver_nowait("t", b"3", id="3")
        gate.set()
    assert got == {"roomy": [1, 2], "full": [1, 2]}
