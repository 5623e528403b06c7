"""RabbitMQ ingress acknowledges a delivery only once the bus is done with it: fake client.

``RabbitMQBridge`` calls its ``_client`` (an ``AmqpClient``) on the asyncio loop of its
runtime; the test sets a fake there that hands out deliveries tagged 1, 2, 3... on one
channel and keeps the broker's book of what is unacknowledged, as RabbitMQ does: an ack
of a tag that is not outstanding (acknowledged already, or never delivered) is the
channel error "PRECONDITION_FAILED - unknown delivery tag", recorded here. What an ack
flush would send at a given moment is read by flushing right then
(``bridge._ingress.flush()``); the bridge's own ack loop runs too.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
import trio
import trio.testing

from bus import open_bus

pytest.importorskip("aio_pika")

from bridges.rabbitmq import RabbitMQBridge

TOPIC = "orders"


class Channel:
    is_closed = False


class Message(NamedTuple):
    """What the bridge reads of an ``aio_pika.IncomingMessage``."""

    delivery_tag: int
    body: bytes
    routing_key: str = TOPIC
    headers: dict[str, Any] | None = None
    message_id: str | None = None
    timestamp: float | None = None
    app_id: str | None = None
    redelivered: bool = False


class FakeAmqp:
    """The ``AmqpClient`` methods the bridge's lifecycle and ingress call."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.channel = Channel()
        self.backlog: list[Message] = []
        self.outstanding: set[int] = set()
        """Delivered, not acknowledged (the broker's view)."""
        self.acked: list[int] = []
        self.errors: list[str] = []
        self.requests = 0
        """``ack`` calls (crossings), frames or not."""

    def feed(self, *names: str) -> None:
        for name in names:
            tag = len(self.backlog) + 1
            self.backlog.append(Message(tag, f'"{name}"'.encode(), message_id=name))

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def start_consuming(self, queue: str, patterns: Any, prefetch: int) -> None:
        pass

    async def stop_consuming(self) -> None:
        pass

    async def barrier(self) -> None:
        """A call that runs after every call the bridge made before it (one loop,
        tasks started in order, none of these awaits)."""

    async def take(self, limit: int) -> list[tuple[Channel, Message]]:
        if not self.backlog:
            await asyncio.get_running_loop().create_future()  # nothing more comes
        batch, self.backlog = self.backlog[:limit], self.backlog[limit:]
        self.outstanding.update(m.delivery_tag for m in batch)
        return [(self.channel, m) for m in batch]

    async def ack(self, frames: list[tuple[Channel, list[tuple[int, bool]]]]) -> int:
        self.requests += 1
        for channel, acks in frames:
            assert channel is self.channel
            for tag, multiple in acks:
                if tag not in self.outstanding:
                    self.errors.append(f"PRECONDITION_FAILED - unknown delivery tag {tag}")
                    continue
                covered = {t for t in self.outstanding if t <= tag} if multiple else {tag}
                self.outstanding -= covered
                self.acked += sorted(covered)
        self.watch.poke()
        return sum(len(acks) for _, acks in frames)


@pytest.fixture
def amqp(watch: Any) -> FakeAmqp:
    return FakeAmqp(watch)


def bridge_with(client: FakeAmqp) -> RabbitMQBridge:
    bridge = RabbitMQBridge("amqp://guest:guest@127.0.0.1:1/", name="mq", runtime="thread")
    bridge._client = client  # type: ignore[assignment]
    return bridge


async def settle_and_flush(bridge: RabbitMQBridge, amqp: FakeAmqp) -> None:
    """Let every task run until blocked (done callbacks included), send the acks of
    everything done, and wait until every ack request made so far reached the fake (the
    bridge's ack loop may have one on its way)."""
    await trio.testing.wait_all_tasks_blocked()
    await bridge._ingress.flush()
    await bridge._call(amqp.barrier)


async def test_a_delivery_in_hand_is_not_acknowledged_nor_covered(
    amqp: FakeAmqp, held: Any
) -> None:
    amqp.feed("m0", "m1", "m2")
    bridge = bridge_with(amqp)
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=3)  # keyless: one message per worker
        att = await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1", "m2")
        await settle_and_flush(bridge, amqp)
        assert amqp.acked == []
        held.release("m1", "m2")
        await held.wait_returned("m1", "m2")
        await settle_and_flush(bridge, amqp)
        assert att.port.acked == 2
        assert sorted(amqp.acked) == [2, 3]  # one by one: a multiple ack would cover 1
        held.release("m0")
        await amqp.watch.until(lambda: len(amqp.acked) == 3, "tag 1 acknowledged")
    assert sorted(amqp.acked) == [1, 2, 3] and amqp.errors == []


async def test_deliveries_that_waited_for_room_are_acknowledged_once_handled(
    amqp: FakeAmqp, held: Any
) -> None:
    # A mailbox of one: m0 goes in without waiting (deliver_nowait), the rest wait for
    # room (port.deliver); each is acknowledged only once handled.
    amqp.feed("m0", "m1", "m2", "m3")
    bridge = bridge_with(amqp)
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, capacity=1)
        await bus.attach(bridge, import_=[TOPIC])
        for n in range(4):
            await held.wait_entered(f"m{n}")  # m{n+1} in the mailbox, m{n+2} waiting
            await settle_and_flush(bridge, amqp)
            assert amqp.acked == list(range(1, n + 1))  # tags of m0..m{n-1}, in order
            held.release(f"m{n}")
        await amqp.watch.until(lambda: len(amqp.acked) == 4, "tag 4 acknowledged")
    assert amqp.acked == [1, 2, 3, 4] and amqp.errors == []


async def test_a_done_reported_twice_or_for_an_unknown_tag_sends_nothing(
    amqp: FakeAmqp, held: Any
) -> None:
    amqp.feed("m0", "m1")
    bridge = bridge_with(amqp)
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=2)
        await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1")
        held.release("m0", "m1")
        await amqp.watch.until(lambda: len(amqp.acked) == 2, "tags 1 and 2 acknowledged")
        await trio.testing.wait_all_tasks_blocked()
        requests = amqp.requests
        tracker = bridge._ingress.trackers[amqp.channel]
        for tag in (2, 1, 2, 9):  # twice, and one never delivered
            bridge._ingress.on_done(tracker, tag, None)
        await settle_and_flush(bridge, amqp)
        assert amqp.requests == requests  # no ack request at all
    assert amqp.acked == [1, 2] and amqp.errors == []
