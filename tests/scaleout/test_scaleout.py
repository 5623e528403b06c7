"""Scale-out, proven: three processes of one application in one consumer group, fed keyed
orders; one killed with SIGKILL mid-stream, one added back. Every order is handled, none
lost; duplicates are counted and reported; per key, what each process handled stays in
order (a redelivery after a rebalance excepted, see ``scale_kit.order_breaks``).

On Kafka the group is the broker's: partitions are shared among the members, the dead
member's go to the others once its session times out, and the new member takes a share
at the next rebalance. The figures this prints are in docs/scaling.md.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from tests.scaleout import scale_kit
from tests.scaleout.scale_app import make_bridge

pytestmark = pytest.mark.brokers

PARTITIONS = 6


async def _kafka_topic(topic: str) -> None:
    admin = make_bridge("kafka", "admin", "admin")
    await admin.open()
    try:
        await admin.create_topic(topic, partitions=PARTITIONS)
    finally:
        await admin.aclose()


@pytest.mark.timeout(150)
async def test_three_members_one_killed_one_added_kafka(brokers: Any) -> None:
    brokers.require("kafka")
    p = f"scale{uuid.uuid4().hex[:8]}"
    topic, group = f"{p}.orders", f"{p}-app"
    await _kafka_topic(topic)
    producer = scale_kit.Producer(topic)
    async with trio.open_nursery() as nursery:
        fleet = scale_kit.Fleet(nursery, "kafka", topic, group)
        try:
            nursery.start_soon(producer.run, make_bridge("kafka", "producer", f"{p}-producer"))
            # m0 is slow (20 ms an order, 4 at a time: less than its share of the
            # stream), so when it is killed it holds a backlog of orders it imported and
            # has not handled: they must come again to the others
            first = [await fleet.start(f"m{i}", work=0.02 if i == 0 else 0.0) for i in range(3)]
            # all three share the work: each has handled some
            await fleet.until("each of three members to handle orders",
                              lambda: all(len(m.handled) >= 200 for m in first), 90)
            victim = first[0]
            fleet.kill(victim)
            await victim.exited.wait()
            killed_at = victim.killed_at
            assert killed_at is not None
            seen_at_kill = len(victim.handled)
            survivors = first[1:]
            # the dead member's keys are served again (its session timed out)
            victim_keys = {h.key for h in victim.handled}
            await fleet.until(
                "the survivors to take over the killed member's keys",
                lambda: victim_keys <= {h.key for m in survivors for h in m.handled
                                        if h.at > killed_at}, 60)
            added = await fleet.start("m3")
            await fleet.until("the added member to handle orders",
                              lambda: len(added.handled) >= 200, 60)
            producer.stop.set()
            await producer.finished.wait()
            sent = producer.sent
            await fleet.until(
                "every order handled",
                lambda: {h.n for h in fleet.all_handled()} >= set(range(sent)), 60)
            codes = await fleet.stop_all()
        finally:
            fleet.kill_all()
            nursery.cancel_scope.cancel()
    lost, duplicates = scale_kit.lost_and_duplicates((h.n for h in fleet.all_handled()), sent)
    breaks = {m.name: scale_kit.order_breaks((h.key, h.seq) for h in m.handled)
              for m in fleet.members}
    stall = scale_kit.stall(fleet.members, killed_at)
    join = added.handled[0].at - added.started_at
    pause = scale_kit.longest_pause(fleet.all_handled(), added.started_at, added.handled[0].at)
    again = sum(len(m.handled) - len({h.n for h in m.handled}) for m in fleet.members)
    print(
        f"kafka, {PARTITIONS} partitions, 3 members, m0 killed -9 after {seen_at_kill} "
        f"handled, m3 added: {sent} sent, {sent - lost} handled, {lost} lost, "
        f"{duplicates} duplicates ({again} handled twice by one member); per member "
        f"{fleet.summary()}; the killed member's keys "
        f"unserved for {stall:.2f} s; the added member's first order {join:.2f} s after "
        f"its start, the group's longest pause meanwhile {pause:.2f} s"
    )
    assert codes == {"m1": 0, "m2": 0, "m3": 0}
    assert lost == 0
    assert breaks == {m.name: [] for m in fleet.members}
    assert all(m.handled for m in fleet.members)
