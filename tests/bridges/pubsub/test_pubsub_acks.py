"""Pub/Sub ingress acknowledges a message only once the bus is done with it: fake client.

``PubSubBridge`` calls its ``_client`` (a ``PubSubCalls``, blocking methods) in trio
worker threads; the test sets a fake there serving one subscription and recording every
``Acknowledge`` and ``ModifyAckDeadline``. What an ack flush would send at a given moment
is read by flushing right then (``bridge._ingress.flush()``) and waiting until every ack id
taken for acknowledging reached the fake (the bridge's ack loop may have a request on
its way in another thread).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from bus import open_bus

pytest.importorskip("google.cloud.pubsub_v1")

from bridges.pubsub import PubSubBridge

TOPIC = "orders"


class FakePubSub:
    """The ``PubSubCalls`` methods the bridge's lifecycle and ingress call."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.backlog: list[Any] = []
        self.pulled = 0
        self.acked: list[str] = []
        self.requests = 0
        """``acknowledge`` calls."""
        self.deadlines: list[tuple[list[str], int]] = []
        self.ordered = False
        """Hold everything back while a pulled message is not acknowledged (as the
        service does for an ordering key with messages out)."""
        self.empty_pulls = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def feed(self, *names: str) -> None:
        for name in names:
            message = SimpleNamespace(
                message_id=name, data=f'"{name}"'.encode(), attributes={}, ordering_key="",
                publish_time=SimpleNamespace(seconds=0, nanos=0),
            )
            self.backlog.append(
                SimpleNamespace(ack_id=f"ack-{name}", delivery_attempt=0, message=message)
            )

    def start(self) -> None:
        pass

    def probe(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        self._closed.set()

    def create_topic(self, tid: str, labels: Any = None) -> bool:
        return False

    def list_topics(self) -> list[str]:
        return [TOPIC]

    def create_subscription(self, sid: str, tid: str, ack_deadline: int, ordering: bool) -> bool:
        return True

    def pull(self, sid: str, max_messages: int, wait: float) -> list[Any]:
        with self._lock:
            if self.ordered and self.pulled > len(self.acked):
                batch = []
            else:
                batch, self.backlog = self.backlog[:max_messages], self.backlog[max_messages:]
            self.pulled += len(batch)
        if not batch:
            self._closed.wait(wait)  # the service holds an empty pull for a while
            with self._lock:
                self.empty_pulls += 1
            self.watch.poke()
        return batch

    def acknowledge(self, sid: str, ack_ids: list[str]) -> None:
        with self._lock:
            self.requests += 1
            self.acked += ack_ids
        self.watch.poke()

    def modify_ack_deadline(self, sid: str, ack_ids: list[str], seconds: int) -> None:
        with self._lock:
            self.deadlines.append((list(ack_ids), seconds))


@pytest.fixture
def pubsub(watch: Any) -> tuple[FakePubSub, PubSubBridge]:
    client = FakePubSub(watch)
    bridge = PubSubBridge(
        "p", name="pubsub", emulator_host="127.0.0.1:1", pull_wait=0.2, relist_interval=None,
    )
    bridge._client = client  # type: ignore[assignment]
    return client, bridge


async def settle_and_flush(bridge: PubSubBridge, client: FakePubSub) -> None:
    """Let every task run until blocked (done callbacks included), acknowledge what is
    done, and wait until each ack id taken out of the leases reached the fake."""
    await trio.testing.wait_all_tasks_blocked()
    await bridge._ingress.flush()
    await client.watch.until(
        lambda: len(client.acked) >= client.pulled - bridge._ingress.leases.outstanding,
        "the acks on their way reached the client",
    )


async def test_a_message_in_hand_is_not_acknowledged(pubsub: Any, held: Any) -> None:
    client, bridge = pubsub
    client.feed("m0", "m1", "m2")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=3)  # no ordering key: one per worker
        att = await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1", "m2")
        await settle_and_flush(bridge, client)
        assert client.acked == []
        held.release("m1", "m2")
        await held.wait_returned("m1", "m2")
        await settle_and_flush(bridge, client)
        assert att.port.acked == 2
        assert sorted(client.acked) == ["ack-m1", "ack-m2"]
        held.release("m0")
        await client.watch.until(lambda: len(client.acked) == 3, "m0 acknowledged")
    assert sorted(client.acked) == ["ack-m0", "ack-m1", "ack-m2"]
    assert all(seconds > 0 for _, seconds in client.deadlines)  # nothing handed back


async def test_messages_handed_over_while_the_bus_was_full_wait_for_their_handler(
    pubsub: Any, held: Any
) -> None:
    client, bridge = pubsub
    client.feed("m0", "m1", "m2", "m3")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, capacity=1)
        await bus.attach(bridge, import_=[TOPIC])
        for n in range(4):
            await held.wait_entered(f"m{n}")  # m{n+1} in the mailbox, m{n+2} waiting
            await settle_and_flush(bridge, client)
            assert client.acked == [f"ack-m{i}" for i in range(n)]
            held.release(f"m{n}")
        await client.watch.until(lambda: len(client.acked) == 4, "m3 acknowledged")
    assert client.acked == ["ack-m0", "ack-m1", "ack-m2", "ack-m3"]


async def test_a_done_reported_twice_or_for_an_unknown_message_sends_nothing(
    pubsub: Any, held: Any
) -> None:
    client, bridge = pubsub
    client.feed("m0", "m1")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=2)
        await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1")
        held.release("m0", "m1")
        await client.watch.until(lambda: len(client.acked) == 2, "m0 and m1 acknowledged")
        await trio.testing.wait_all_tasks_blocked()
        requests = client.requests
        sid = next(iter(bridge._ingress._pulling))
        for ack_id in ("ack-m1", "ack-m0", "ack-m1", "ack-m9"):  # twice, and unknown
            bridge._ingress._on_done(sid, ack_id, None)  # type: ignore[arg-type]
        await settle_and_flush(bridge, client)
        assert client.requests == requests  # no Acknowledge request at all
    assert sorted(client.acked) == ["ack-m0", "ack-m1"]


async def test_caught_up_is_an_empty_pull_sent_with_nothing_out(pubsub: Any, held: Any) -> None:
    """Empty answers while a message is out (held back, as for an ordering key) do not
    count: the backlog behind it is still to come. The first empty answer to a pull
    sent once everything received was acknowledged does, once."""
    client, bridge = pubsub
    client.ordered = True
    client.feed("m0")
    caught: list[int] = []
    bridge.on_caught_up(lambda: caught.append(client.pulled))
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held)
        await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0")
        client.feed("m1", "m2")  # waiting behind m0
        await client.watch.until(lambda: client.empty_pulls >= 2, "empty pulls, m0 out")
        assert caught == []
        held.release("m0", "m1", "m2")
        await client.watch.until(lambda: bool(caught), "caught up")
        await held.wait_returned("m0", "m1", "m2")
        await client.watch.until(lambda: client.empty_pulls >= 6, "more empty pulls")
    assert caught == [3]  # after all three, and once
