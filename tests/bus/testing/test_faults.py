"""The faulty loopback broker: each fault does what it says, the same seed gives the same
run, and at-least-once and per-key order hold under every fault (bus/_faults.py).

All on ``autojump_clock``: the broker is in the process, no socket is involved.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from bus import ConfigurationError, Envelope, open_bus
from bus._envelope import H_ERROR
from bus._faults import COMMIT_EVERY
from bus.testing import Faults, LoopbackBridge, LoopbackBroker, LoopbackRecord

TOPIC = "order.created"


class Order(msgspec.Struct, frozen=True):
    n: int


async def within(event: Awaitable[None]) -> None:
    """Wait for *event*; fail (instantly, on the autojump clock) if it never comes."""
    with trio.fail_after(3600):
        await event


def prefill(broker: LoopbackBroker, count: int, keys: int = 8) -> None:
    """*count* records already on the broker before anyone consumes (ids and keys fixed)."""
    for i in range(count):
        data = msgspec.json.encode(Order(i))
        broker.append(LoopbackRecord(TOPIC, data, f"m{i:04}", f"k{i % keys}", {}, 0.0))


async def consume(
    broker: LoopbackBroker, group: str = "g", concurrency: int = 1
) -> tuple[list[tuple[str, int]], Any]:
    """One importer, run until its group committed every record: what it handled, in
    order, and its attachment."""
    handled: list[tuple[str, int]] = []

    async def handle(env: Envelope[Order]) -> None:
        await trio.lowlevel.checkpoint()  # how far handlers got varies run to run
        handled.append((env.key or "", env.payload.n))

    async with open_bus(name="importer", seed=0) as bus:
        bus.topic(TOPIC, Order)
        bus.subscribe(TOPIC, handle, concurrency=concurrency)
        att = await bus.attach(LoopbackBridge(broker, "in", group=group), import_=[TOPIC])
        await within(broker.wait_committed(group, TOPIC))
    return handled, att


def firsts_in_order(handled: list[tuple[str, int]]) -> bool:
    """Per key, the first handling of each message comes in publish order."""
    per_key: dict[str, list[int]] = {}
    for key, n in handled:
        per_key.setdefault(key, []).append(n)
    return all(
        (firsts := list(dict.fromkeys(ns))) == sorted(firsts) for ns in per_key.values()
    )


EVERYTHING = dict(
    duplicate=0.05, redeliver=0.05, reorder=True, drop=0.01, rebalance=0.01, slow_commit=0.3,
)


# -- determinism -----------------------------------------------------------------------


async def test_the_same_seed_gives_the_same_run_another_seed_another(autojump_clock: Any) -> None:
    async def run(seed: int) -> tuple[list[tuple[str, int]], Counter[str]]:
        broker = LoopbackBroker(faults=Faults(seed=seed, **EVERYTHING))  # type: ignore[arg-type]
        prefill(broker, 200)
        handled, _ = await consume(broker)
        assert {n for _, n in handled} == set(range(200))
        return handled, broker.injected

    first, injected = await run(7)
    again, injected_again = await run(7)
    other, _ = await run(8)
    assert {"duplicate", "redeliver", "drop", "rebalance"} <= set(injected), injected
    assert first == again and injected == injected_again
    assert first != other
    # what came again is bounded by the commits made every COMMIT_EVERY records
    again_at_most = (
        COMMIT_EVERY * (injected["drop"] + injected["rebalance"])
        + injected["duplicate"] + 4 * injected["redeliver"]
    )
    assert len(first) - 200 <= again_at_most, (len(first), dict(injected))
    print(f"seed 7: {len(first)} deliveries of 200 records, {dict(injected)}")


# -- each fault ------------------------------------------------------------------------


async def test_duplicate_delivers_a_record_twice_in_a_row(autojump_clock: Any) -> None:
    broker = LoopbackBroker(faults=Faults(duplicate=1.0))
    prefill(broker, 20)
    handled, att = await consume(broker)
    assert handled[0::2] == handled[1::2]
    assert Counter(n for _, n in handled) == {n: 2 for n in range(20)}
    assert att.port.redelivered == 20 and broker.injected["duplicate"] == 20


async def test_redeliver_rewinds_a_partition_to_what_was_not_committed(
    autojump_clock: Any,
) -> None:
    broker = LoopbackBroker(faults=Faults(seed=3, redeliver=0.2))
    prefill(broker, 50, keys=1)  # one key: one partition, one sequence
    handled, att = await consume(broker)
    ns = [n for _, n in handled]
    rewinds = [(a, b) for a, b in itertools.pairwise(ns) if b <= a]
    assert rewinds and len(rewinds) == broker.injected["redeliver"]
    assert all(a - b <= 4 for a, b in rewinds), rewinds  # back to the faulty record
    assert list(dict.fromkeys(ns)) == list(range(50))  # what came again came in order
    assert att.port.redelivered == len(ns) - 50


async def test_reorder_interleaves_partitions_but_keeps_each_key_in_order(
    autojump_clock: Any,
) -> None:
    def partitions(broker: LoopbackBroker, handled: list[tuple[str, int]]) -> list[int]:
        return [broker.partition_of(key) for key, _ in handled]

    plain = LoopbackBroker(faults=Faults())
    prefill(plain, 80)
    in_order, _ = await consume(plain)
    assert partitions(plain, in_order) == sorted(partitions(plain, in_order))

    mixed = LoopbackBroker(faults=Faults(seed=1, reorder=True))
    prefill(mixed, 80)
    handled, _ = await consume(mixed)
    assert partitions(mixed, handled) != sorted(partitions(mixed, handled))
    assert sorted(handled) == sorted(in_order)  # each once
    for key in {k for k, _ in handled}:
        ns = [n for k, n in handled if k == key]
        assert ns == sorted(ns), f"{key}: {ns}"


async def test_drop_connections_fails_export_and_ingest_and_loses_nothing(
    autojump_clock: Any,
) -> None:
    broker = LoopbackBroker(faults=Faults())
    got: list[int] = []
    some = trio.Event()
    everything = trio.Event()

    def handle(env: Envelope[Order]) -> None:
        got.append(env.payload.n)
        if len(got) >= 10:
            some.set()
        if set(got) >= set(range(60)):
            everything.set()

    async with open_bus(name="in", seed=0) as b, open_bus(name="out", seed=0) as a:
        for bus in (a, b):
            bus.topic(TOPIC, Order)
        b.subscribe(TOPIC, handle)
        att_in = await b.attach(LoopbackBridge(broker, "in"), import_=[TOPIC])
        att_out = await a.attach(LoopbackBridge(broker, "out"), export=[TOPIC])
        for i in range(30):
            await a.publish(TOPIC, Order(i), key=f"k{i % 4}")
        await within(some.wait())
        broker.drop_connections()
        for i in range(30, 60):
            await a.publish(TOPIC, Order(i), key=f"k{i % 4}")
        await within(everything.wait())
    assert att_in.ingress_restarts >= 1
    assert att_out.export_failed >= 1 and att_out.confirmed == 60
    assert firsts_in_order([(f"k{n % 4}", n) for n in got])


async def test_rebalance_moves_partitions_and_what_was_not_committed_comes_again(
    autojump_clock: Any,
) -> None:
    broker = LoopbackBroker(faults=Faults())
    prefill(broker, 64)
    assert len({broker.partition_of(f"k{i}") for i in range(8)}) == 4
    release = trio.Event()
    stuck: list[int] = []
    m2_got: list[int] = []
    m2_all = trio.Event()
    m1_busy = trio.Event()

    async def m1_handle(env: Envelope[Order]) -> None:  # never done until released
        stuck.append(env.payload.n)
        m1_busy.set()
        await release.wait()

    def m2_handle(env: Envelope[Order]) -> None:
        m2_got.append(env.payload.n)
        if set(m2_got) == set(range(64)):
            m2_all.set()

    async with open_bus(name="m1", seed=0) as m1, open_bus(name="m2", seed=0) as m2:
        for bus, handler in ((m1, m1_handle), (m2, m2_handle)):
            bus.topic(TOPIC, Order)
            bus.subscribe(TOPIC, handler)
        await m1.attach(LoopbackBridge(broker, "a", group="g"), import_=[TOPIC])
        att2 = await m2.attach(LoopbackBridge(broker, "b", group="g"), import_=[TOPIC])
        await within(m1_busy.wait())
        broker.rebalance("g")
        await within(m2_all.wait())  # m1's partitions moved to m2, their records came again
        release.set()
    assert stuck and set(stuck) <= set(m2_got)
    assert att2.port.redelivered >= 1 and broker.injected["rebalance"] == 1


async def test_a_slow_commit_lands_later(autojump_clock: Any) -> None:
    broker = LoopbackBroker(faults=Faults(slow_commit=5.0))
    prefill(broker, 10)
    done = trio.Event()
    got: list[int] = []

    def handle(env: Envelope[Order]) -> None:
        got.append(env.payload.n)
        if len(got) == 10:
            done.set()

    async with open_bus(seed=0) as bus:
        bus.topic(TOPIC, Order)
        bus.subscribe(TOPIC, handle)
        await bus.attach(LoopbackBridge(broker, "in", group="g"), import_=[TOPIC])
        await within(done.wait())
        handled_at = trio.current_time()
        await within(broker.wait_committed("g", TOPIC))
        assert trio.current_time() - handled_at >= 5.0
    assert sorted(got) == list(range(10))


async def test_a_slow_commit_in_flight_is_lost_with_a_rebalance(autojump_clock: Any) -> None:
    broker = LoopbackBroker(faults=Faults(slow_commit=5.0))
    prefill(broker, 10)
    first_round = trio.Event()
    release = trio.Event()
    got: list[int] = []

    async def handle(env: Envelope[Order]) -> None:
        got.append(env.payload.n)
        if len(got) == 10:
            first_round.set()
        if len(got) > 10:
            await release.wait()  # the second round is not done until released

    async with open_bus(seed=0) as bus:
        bus.topic(TOPIC, Order)
        bus.subscribe(TOPIC, handle)
        await bus.attach(LoopbackBridge(broker, "in", group="g"), import_=[TOPIC])
        await within(first_round.wait())
        await trio.testing.wait_all_tasks_blocked()  # the consumer is idle: commit in flight
        broker.rebalance("g")  # before it landed: it is lost, and all comes again
        await trio.sleep(10)  # (the mock clock) past the time it would have landed
        assert [broker.committed("g", TOPIC, p) for p in range(4)] == [0, 0, 0, 0]
        release.set()
    assert sorted(got) == sorted([*range(10), *range(10)])


async def test_refuse_next_is_retried_in_order_and_permanent_is_dead_lettered(
    autojump_clock: Any,
) -> None:
    broker = LoopbackBroker(faults=Faults())
    async with open_bus(seed=0) as bus:
        bus.topic(TOPIC, Order)
        att = await bus.attach(LoopbackBridge(broker, "out"), export=[TOPIC])
        broker.refuse_next(3)
        for i in range(6):
            await bus.publish(TOPIC, Order(i), key="k")
        await bus.drain()
        broker.refuse_next(2, permanent=True)
        for i in range(6, 10):
            await bus.publish(TOPIC, Order(i), key="k")
    written = [msgspec.json.decode(r.data, type=Order).n for r in broker.records(TOPIC)]
    assert written == [0, 1, 2, 3, 4, 5, 8, 9]
    assert att.export_failed >= 3 and att.export_rejected == 2
    letters = bus.retained(bus.dead_letter_topic)
    assert [e.payload.n for e in letters] == [6, 7]
    assert "fault injected by refuse_next" in letters[0].headers[H_ERROR]
    assert broker.injected == {"refuse": 3, "reject": 2}


async def test_a_refused_write_holds_the_rest_of_its_partition_in_the_batch() -> None:
    broker = LoopbackBroker(faults=Faults())
    async with open_bus(seed=0) as bus:
        bus.topic(TOPIC, Order)
        bridge = LoopbackBridge(broker, "out")
        att = await bus.attach(bridge, export=[TOPIC])
        keys = ["a", "b", "a", "b", "a"]
        assert broker.partition_of("a") != broker.partition_of("b")
        batch = [Envelope(id=f"e{i}", topic=TOPIC, payload=Order(i), key=k)
                 for i, k in enumerate(keys)]
        broker.refuse_next(1)  # the first "a"
        results = await bridge.export(batch, att.port)
    assert results is not None
    assert [r is None for r in results] == [False, True, False, True, False]
    assert [r.id for r in broker.records(TOPIC)] == ["e1", "e3"]


# -- at-least-once and per-key order under every fault ----------------------------------

UNDER = {
    "duplicate": Faults(seed=1, duplicate=0.2),
    "redeliver": Faults(seed=1, redeliver=0.1),
    "reorder": Faults(seed=1, reorder=True),
    "drop": Faults(seed=1, drop=0.02),
    "rebalance": Faults(seed=1, rebalance=0.02),
    "slow_commit": Faults(seed=1, slow_commit=0.5, rebalance=0.02),
    "refuse": Faults(seed=1, refuse=0.1),
    "everything": Faults(seed=1, refuse=0.05, **EVERYTHING),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("fault", list(UNDER))
async def test_nothing_is_lost_and_keys_keep_order(fault: str, autojump_clock: Any) -> None:
    broker = LoopbackBroker(faults=UNDER[fault])
    count = 300
    handled: list[tuple[str, int]] = []
    everything = trio.Event()

    async def handle(env: Envelope[Order]) -> None:
        await trio.sleep(0.001 * (env.payload.n % 3))
        handled.append((env.key or "", env.payload.n))
        if len({n for _, n in handled}) == count:
            everything.set()

    async with open_bus(name="in", seed=0) as b, open_bus(name="out", seed=0) as a:
        for bus in (a, b):
            bus.topic(TOPIC, Order)
        b.subscribe(TOPIC, handle, concurrency=4)
        att_in = await b.attach(LoopbackBridge(broker, "in"), import_=[TOPIC])
        await a.attach(LoopbackBridge(broker, "out"), export=[TOPIC])
        for i in range(count):
            await a.publish(TOPIC, Order(i), key=f"k{i % 6}")
        await within(everything.wait())
    assert {n for _, n in handled} == set(range(count))
    assert firsts_in_order(handled)
    if fault not in ("reorder", "everything"):
        assert broker.injected[fault.replace("slow_commit", "rebalance")] > 0
    if fault in ("duplicate", "redeliver", "drop", "rebalance"):
        assert att_in.port.redelivered > 0  # the same records came again
    if fault == "drop":
        assert att_in.ingress_restarts > 0  # the consumer's connection dropped
    print(f"{fault}: {len(handled) - count} duplicates over {count}, {dict(broker.injected)}")


# -- bad input -------------------------------------------------------------------------


def test_bad_faults_say_which_and_how_to_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"duplicate=1\.5.*from 0 to 1"):
        Faults(duplicate=1.5)
    with pytest.raises(ConfigurationError, match="slow_commit=-1"):
        Faults(slow_commit=-1)
    with pytest.raises(ConfigurationError, match="faults=Faults"):
        LoopbackBroker().drop_connections()
    with pytest.raises(ConfigurationError, match=r"give a bus.testing.Faults"):
        LoopbackBroker(faults={"duplicate": 0.1})  # type: ignore[arg-type]
    broker = LoopbackBroker(faults=Faults())
    with pytest.raises(ConfigurationError, match="no such consumer group"):
        broker.rebalance("nope")
    with pytest.raises(ConfigurationError, match="1 or more"):
        broker.refuse_next(0)
    assert repr(Faults(seed=3, duplicate=0.1)) == "Faults(seed=3, duplicate=0.1)"
