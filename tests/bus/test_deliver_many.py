"""``Port.deliver_many``: a bridge's import batch of one topic, delivered as ``deliver``
would one by one, tracked by one ``Delivery`` whose ``on_done`` fires once, when the last
message of the batch is done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

from bus import BusClosedError, Envelope, RetryPolicy, open_bus
from bus.abc import H_ERROR, H_ORIGIN, Bridge, Delivery, ImportItem, Port

WITHIN = 5.0
"""Seconds a handler may take to get what the test delivered."""

FIELDS = ("id", "topic", "payload", "key", "headers", "time", "attempt", "source")


class PortBridge(Bridge):
    """Hands the test its port; imports nothing by itself."""

    def __init__(self, name: str = "feed") -> None:
        self.name = name
        self.port: Port | None = None
        self.exported: list[Envelope[Any]] = []
        self.exported_some = trio.Event()

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
        self.exported.extend(batch)
        self.exported_some.set()

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        self.port = port
        task_status.started()
        await trio.sleep_forever()


def item(n: int, data: bytes | None = None, **over: Any) -> ImportItem:
    fields: dict[str, Any] = {
        "id": f"m{n}", "key": f"k{n % 3}", "headers": None, "time": 1000.0 + n,
        "attempt": 1, "source": "shop",
    }
    fields.update(over)
    return (fields["id"], fields["key"], fields["headers"], fields["time"], fields["attempt"],
            fields["source"], str(n).encode() if data is None else data)


def seen(envs: list[Envelope[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(e, f) for f in FIELDS) for e in envs]


@pytest.mark.parametrize("options", [{}, {"concurrency": 3}, {"capacity": 2}],
                         ids=["plain", "keyed", "small-mailbox"])
async def test_a_batch_arrives_as_deliver_one_by_one_would_deliver_it(options: Any) -> None:
    items = [
        item(0), item(1, headers={"traceparent": "00-a-b-01"}), item(2, source=None),
        item(3, b'"not an int"'), item(4, attempt=3, key=None), item(5, id="m5"),
    ]
    got: dict[str, list[Envelope[Any]]] = {"one": [], "many": []}
    for way in ("one", "many"):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", got[way].append, name="sub", **options)
            bus.subscribe(bus.dead_letter_topic, got[way].append, name="dead")
            bridge = PortBridge()
            att = await bus.attach(bridge, import_=["t"])
            assert bridge.port is not None
            if way == "one":
                for id, key, headers, time, attempt, source, data in items:
                    await bridge.port.deliver("t", data, id=id, key=key, headers=headers,
                                              time=time, attempt=attempt, source=source)
            else:
                await bridge.port.deliver_many("t", items)
            assert (att.port.imported, att.port.import_dead_lettered) == (6, 1)
    for way in ("one", "many"):  # the dead letter and the others reach two subscribers
        got[way] = [e for e in got[way] if e.topic == "t"] + [
            e for e in got[way] if e.topic != "t"]
    order = sorted if options.get("concurrency") else list  # keyed workers interleave
    assert order(seen(got["many"])) == order(seen(got["one"]))
    dead = [e for e in got["many"] if e.topic != "t"]
    assert [e.id for e in dead] == ["m3"] and "int" in dead[0].headers[H_ERROR]
    assert all(e.headers[H_ORIGIN] == "feed" for e in got["many"] if e.topic == "t")
    by_key: dict[str | None, list[int]] = {}
    for env in got["many"]:
        if env.topic == "t":
            by_key.setdefault(env.key, []).append(env.payload)
    assert all(ns == sorted(ns) for ns in by_key.values())  # per-key order kept


@pytest.mark.parametrize("options", [{}, {"concurrency": 3}], ids=["plain", "keyed"])
async def test_on_done_fires_once_when_the_last_message_of_the_batch_is_done(
    options: Any,
) -> None:
    gates = {n: trio.Event() for n in range(3)}
    calls: list[Delivery] = []
    async with open_bus() as bus:
        bus.topic("t", int)

        async def handler(env: Envelope[int]) -> None:
            await gates[env.payload].wait()

        bus.subscribe("t", handler, **options)
        bridge = PortBridge()
        att = await bus.attach(bridge, import_=["t"])
        assert bridge.port is not None
        await bridge.port.deliver_many("t", [item(0), item(1), item(2)], on_done=calls.append)
        for n in (2, 0):
            gates[n].set()
            await trio.testing.wait_all_tasks_blocked()
            assert calls == [] and att.port.acked == 0  # 1 is still in hand
        gates[1].set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(calls) == 1 and calls[0].ok and calls[0].handled == 3
        assert att.port.acked == 3  # every message of the batch


async def test_a_batch_waits_for_room_and_is_done_only_once_all_of_it_is_handled() -> None:
    calls: list[Delivery] = []
    got: list[int] = []
    gate = trio.Event()
    async with open_bus() as bus:
        bus.topic("t", int)

        async def handler(env: Envelope[int]) -> None:
            await gate.wait()
            got.append(env.payload)

        bus.subscribe("t", handler, capacity=2)
        bridge = PortBridge()
        await bus.attach(bridge, import_=["t"])
        assert bridge.port is not None
        port = bridge.port
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: port.deliver_many(
                "t", [item(n) for n in range(6)], on_done=calls.append))
            await trio.testing.wait_all_tasks_blocked()
            assert got == [] and calls == []  # the mailbox is full: the batch waits
            gate.set()
        await trio.testing.wait_all_tasks_blocked()
    assert got == list(range(6)) and len(calls) == 1


async def test_a_message_of_the_batch_whose_dead_letter_is_undeliverable_keeps_it_all() -> None:
    # The dead-letter topic refuses everything: the undecodable message is nowhere, so
    # no message of its batch may be acknowledged (the broker delivers them again).
    calls: list[Delivery] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: None)

        def refuse(env: Envelope[Any]) -> None:
            raise RuntimeError("dead letters cannot be stored")

        bus.subscribe(bus.dead_letter_topic, refuse, name="refuse",
                      retry=RetryPolicy(attempts=1))
        bridge = PortBridge()
        att = await bus.attach(bridge, import_=["t"])
        assert bridge.port is not None
        await bridge.port.deliver_many("t", [item(0), item(1, b"x")], on_done=calls.append)
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [] and (att.port.kept_unacked, att.port.acked) == (2, 0)


async def test_an_unknown_or_unwanted_topic_dead_letters_the_whole_batch() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.topic("other", int)
        letters: list[Envelope[Any]] = []
        bus.subscribe(bus.dead_letter_topic, letters.append)
        bridge = PortBridge()
        att = await bus.attach(bridge, import_=["t"])
        assert bridge.port is not None
        await bridge.port.deliver_many("other", [item(0), item(1)])
        await bridge.port.deliver_many("nowhere", [item(2)])
        await trio.testing.wait_all_tasks_blocked()
        assert att.port.import_dead_lettered == 3
    assert [e.id for e in letters] == ["m0", "m1", "m2"]
    assert all("import pattern" in e.headers[H_ERROR] for e in letters[:2])


async def test_the_echo_guard_keeps_a_batch_from_its_own_bridge() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        got: list[int] = []
        bus.subscribe("t", lambda env: got.append(env.payload))
        bridge = PortBridge()
        await bus.attach(bridge, export=["t"], import_=["t"])
        assert bridge.port is not None
        await bridge.port.deliver_many("t", [item(0), item(1)])
        await bus.publish("t", 2)  # the export subscription gets it after the imports
        with trio.fail_after(WITHIN):
            await bridge.exported_some.wait()
    assert [e.payload for e in bridge.exported] == [2]  # not its own imports
    assert got == [0, 1, 2]


async def test_a_closed_bus_refuses_a_batch() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        bridge = PortBridge()
        await bus.attach(bridge, import_=["t"])
    assert bridge.port is not None
    with pytest.raises(BusClosedError):
        await bridge.port.deliver_many("t", [item(0)])
