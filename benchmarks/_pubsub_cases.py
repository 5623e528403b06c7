"""Pub/Sub cases: the bridge against the generated google-cloud-pubsub client, same emulator.

Every case moves the same ~200 B msgspec JSON messages (:class:`Reading`, 8 keys) through
a fresh topic with a subscription that has message ordering on (what the bridge creates),
both deleted after the round.

- **egress** (timed from the first publish to the last response, after one confirmed
  warm-up message): raw is the generated synchronous ``PublisherClient`` sending
  ``Publish`` requests of ``BATCH`` messages one after the other, with the ``ce-``
  attributes and ordering keys the bridge writes (the fastest of the three clients
  measured for the bridge, see ``bridges/pubsub/_bridge.py``); the bridge: ``bus.publish``
  of each message into a bus exporting through ``PubSubBridge`` (``batch=BATCH``), timed
  until ``bus.drain()`` returned, i.e. every batch confirmed;
- **ingress** (the subscription is filled first, untimed; timed from the first message in
  hand to the last one decoded and acknowledged): raw is a loop of unary ``Pull`` (1,000 at a
  time), decoding each message, and one ``Acknowledge`` per pull; the bridge
  (``pull_max=1000``) imports into a bus whose subscriber counts them, timed until the
  last one was handled and acknowledged.

:func:`cases` and ``RATIOS`` are folded into ``benchmarks/bridges.py``; ``python -m
benchmarks._pubsub_cases [messages] [rounds]`` runs them alone, rounds interleaved.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from ._harness import Case, CaseFailed, Sample

__all__ = [
    "CASES", "RATIOS", "bridge_egress", "bridge_ingress", "cases", "raw_egress", "raw_ingress",
]

HOST = os.environ.get("PUBSUB_EMULATOR_HOST") or "127.0.0.1:8085"
PROJECT = os.environ.get("GCP_PROJECT_ID") or "trio-bus-test"
BATCH = 256
PULL = 1000
KEYS = 8
"""Not the 64 keys of the other bridges' cases: Google's emulator (0.8.20) starts a
thread for each ordering key of an ordering subscription and never ends it, not even
when the subscription is deleted; 64 keys a round exhaust its 256 MB heap in a few runs."""
BUS_TOPIC = "bench.reading"
TIMEOUT = 120.0


class Reading(msgspec.Struct):
    """About 200 bytes of JSON, as the other bridge benchmarks send."""

    n: int
    t: int
    key: str
    sensor: str
    unit: str
    value: float
    note: str


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Reading)
NOTE = "x" * 96


def reading(n: int) -> Reading:
    return Reading(
        n, time.time_ns(), f"k{n % KEYS}", f"sensor-{n % 997:04d}", "celsius", 21.5, NOTE
    )


def _attributes(n: int, obj: Reading) -> dict[str, str]:
    """The attributes the bridge writes for one envelope (CloudEvents binary mode)."""
    return {
        "ce-specversion": "1.0", "ce-id": f"bench-{n}", "ce-source": "bench",
        "ce-type": BUS_TOPIC, "ce-time": "2026-01-01T00:00:00Z", "ce-deliveryattempt": "1",
        "content-type": "application/json",
    }


class _Admin:
    """Generated synchronous clients to the emulator, and a topic + subscription."""

    def __init__(self) -> None:
        import grpc
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber import SubscriberClient
        from google.pubsub_v1.services.subscriber.transports.grpc import (
            SubscriberGrpcTransport,
        )

        self.prefix = f"bench{uuid.uuid4().hex[:10]}."
        self.tid = self.prefix + BUS_TOPIC
        self.sid = f"{self.tid}~bench"  # the bridge's name for group "bench"
        self.topic = f"projects/{PROJECT}/topics/{self.tid}"
        self.subscription = f"projects/{PROJECT}/subscriptions/{self.sid}"
        self.pub: Any = PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(HOST))
        )
        self.sub: Any = SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(HOST))
        )
        self.pub.create_topic(name=self.topic)
        self.sub.create_subscription(request={
            "name": self.subscription, "topic": self.topic, "enable_message_ordering": True,
            "ack_deadline_seconds": 60,
        })

    def publish(self, first: int, count: int) -> int:
        """Publish messages first..first+count in requests of BATCH; how many were taken."""
        from google.pubsub_v1.types import PubsubMessage

        raw, wrap = PubsubMessage.pb(), PubsubMessage.wrap
        ids = 0
        for start in range(first, first + count, BATCH):
            batch = []
            for n in range(start, min(first + count, start + BATCH)):
                obj = reading(n)
                batch.append(wrap(raw(
                    data=_encode(obj), attributes=_attributes(n, obj), ordering_key=obj.key
                )))
            ids += len(self.pub.publish(topic=self.topic, messages=batch).message_ids)
        return ids

    def backlog(self) -> int:
        """Messages one pull sees now (acknowledged at once): 0 once all were consumed."""
        response = self.sub.pull(
            request={"subscription": self.subscription, "max_messages": PULL}, timeout=8
        )
        return len(response.received_messages)

    def close(self) -> None:
        try:
            self.sub.delete_subscription(subscription=self.subscription)
            self.pub.delete_topic(topic=self.topic)
        finally:
            self.pub.transport.close()
            self.sub.transport.close()


def _bridge(admin: _Admin, name: str, **options: Any) -> Any:
    from bridges.pubsub import PubSubBridge

    return PubSubBridge(
        PROJECT, name=name, group="bench", emulator_host=HOST, topic_prefix=admin.prefix,
        **options,
    )


def raw_egress(n: int) -> Sample:
    admin = _Admin()
    try:
        admin.publish(-1, 1)
        t0 = time.perf_counter()
        taken = admin.publish(0, n)
        seconds = time.perf_counter() - t0
    finally:
        admin.close()
    if taken != n:
        raise CaseFailed(f"{taken} of {n} publishes confirmed")
    return Sample(n, seconds)


def bridge_egress(n: int, runtime: str | None = None) -> Sample:
    """*runtime* is accepted for ``bus bench bridges --runtime`` and ignored: the Pub/Sub
    bridge runs no asyncio loop (blocking calls in trio worker threads)."""
    from bus import open_bus

    admin = _Admin()

    async def main() -> float:
        async with open_bus(name="bench") as bus:
            bus.topic(BUS_TOPIC, Reading)
            await bus.attach(_bridge(admin, "out"), export=["bench.#"], batch=BATCH)
            obj = reading(-1)
            await bus.publish(BUS_TOPIC, obj, key=obj.key, confirm=True)
            t0 = time.perf_counter()
            for i in range(n):
                obj = reading(i)
                await bus.publish(BUS_TOPIC, obj, key=obj.key)
            await bus.drain()
            return time.perf_counter() - t0

    try:
        seconds = trio.run(main)
        stats = admin.sub.pull(  # spot check: the messages are on the subscription
            request={"subscription": admin.subscription, "max_messages": 10}, timeout=8
        )
    finally:
        admin.close()
    if not stats.received_messages:
        raise CaseFailed("nothing reached the subscription")
    return Sample(n, seconds)


def raw_ingress(n: int) -> Sample:
    admin = _Admin()
    try:
        admin.publish(0, n)
        seen = 0
        t0 = 0.0
        deadline = time.perf_counter() + TIMEOUT
        while seen < n:
            if time.perf_counter() > deadline:
                raise CaseFailed(f"only {seen} of {n} messages in {TIMEOUT}s")
            response = admin.sub.pull(
                request={"subscription": admin.subscription, "max_messages": PULL}, timeout=10
            )
            received = response.received_messages
            if not received:
                continue
            if not seen:
                t0 = time.perf_counter()  # as the bridge's: from the first message in hand
            for rm in received:
                _decoder.decode(rm.message.data)
            admin.sub.acknowledge(
                subscription=admin.subscription, ack_ids=[rm.ack_id for rm in received]
            )
            seen += len(received)
        seconds = time.perf_counter() - t0
        left = admin.backlog()
    finally:
        admin.close()
    if left:
        raise CaseFailed(f"{left} messages still on the subscription")
    return Sample(n, seconds)


def bridge_ingress(n: int, runtime: str | None = None) -> Sample:
    from bus import Envelope, open_bus

    admin = _Admin()

    async def main() -> float:
        state = {"count": 0, "t0": 0.0}
        async with open_bus(name="bench") as bus:
            bus.topic(BUS_TOPIC, Reading)

            def handle(env: Envelope[Reading]) -> None:
                if not state["count"]:
                    state["t0"] = time.perf_counter()
                state["count"] += 1

            bus.subscribe(BUS_TOPIC, handle)
            bridge = _bridge(admin, "in", pull_max=PULL, max_outstanding=4 * PULL)
            start = time.perf_counter()
            await bus.attach(bridge, import_=[BUS_TOPIC])
            with trio.fail_after(TIMEOUT):
                while bridge.acked < n:  # noqa: ASYNC110 - acks go out from the bridge's task
                    await trio.sleep(0.001)
            end = time.perf_counter()
        # from the first pull: the attach (listing, subscription) is not part of it
        return end - max(start, state["t0"] - 0.0)

    try:
        admin.publish(0, n)
        seconds = trio.run(main)
        left = admin.backlog()
    finally:
        admin.close()
    if left:
        raise CaseFailed(f"{left} messages still on the subscription")
    return Sample(n, seconds)


RATIOS: dict[str, tuple[str, str]] = {
    "pubsub_egress_vs_raw": ("pubsub_bridge_egress", "pubsub_raw_egress"),
    "pubsub_ingress_vs_raw": ("pubsub_bridge_ingress", "pubsub_raw_ingress"),
}

CASES: list[tuple[str, str, Callable[[int], Sample]]] = [
    ("pubsub_raw_egress", "generated PublisherClient, Publish of 256 at a time", raw_egress),
    ("pubsub_bridge_egress", "bus.publish → PubSubBridge export, confirmed", bridge_egress),
    ("pubsub_raw_ingress", "generated SubscriberClient Pull 1000 + decode + ack", raw_ingress),
    ("pubsub_bridge_ingress", "PubSubBridge import → bus handler, acks", bridge_ingress),
]
"""``(name, what, run)`` for ``benchmarks._harness.Case``; unit msg/s."""


PUBSUB_SCALE = 0.25
"""The emulator moves ~10-40k msg/s: a quarter of the Kafka cases' messages per round."""


def cases() -> list[Case]:
    return [Case(name, what, "msg/s", run, scale=PUBSUB_SCALE) for name, what, run in CASES]


def main(messages: int = 5000, rounds: int = 3) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _, _, run in CASES:
        run(max(10, messages // 10))  # warm-up
    for rnd in range(rounds):
        for name, _, run in CASES:
            rates[name].append(run(messages).rate)
        print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    for ratio, (num, den) in RATIOS.items():
        print(f"{ratio}: {medians[num] / medians[den]:.2f}")
    return medians


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
