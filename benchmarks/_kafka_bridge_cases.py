"""Kafka through the bridge: the bus side of the Kafka cases in ``_kafka_cases``.

Same messages, topic shape (``PARTITIONS`` partitions, 64 keys) and timing rules as the
raw cases, so each ratio compares like with like:

Both take ``runtime`` (the bridge's asyncio runtime kind; ``None``: its default) and
``client`` (``"aiokafka"``: :class:`~bridges.kafka.KafkaBridge`; ``"confluent"``:
:class:`~bridges.kafka.ConfluentKafkaBridge`, which has no runtime, compared with raw
confluent-kafka in ``_kafka_cases``).

- ``bridge_egress``: ``bus.publish`` of each ``Reading`` (with its key) into a bus that
  exports the topic through :class:`~bridges.kafka.KafkaBridge` (``acks="all"``,
  idempotent, ``batch=BATCH``); timed from the first publish until ``bus.drain()``
  returned, i.e. every record acknowledged by the broker; one confirmed message first;
- ``bridge_ingress``: the topic is filled first with the CloudEvents headers the bridge
  writes (untimed); a bus imports it and its subscriber counts the decoded envelopes;
  timed from the first handled message to the last, as the raw consumer is timed from
  its first record; after the bus exited, the group's committed offsets must cover the
  whole topic (every record committed once done), else the case fails;
- ``latency``: local publish → Kafka → local handler (``_bridge_latency``).

A bus topic *is* the Kafka topic for this bridge, so each round uses a dotted name,
``bench.<random>``.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from ._brokers import (
    BATCH,
    KAFKA,
    MAX_RECORDS,
    kafka_committed,
    kafka_create_topic,
    kafka_delete_topic,
    kafka_fill,
    message,
    unique,
)
from ._harness import CaseFailed, Sample
from ._messages import Reading

TIMEOUT = 120.0


def _bridge(client: str = "aiokafka", runtime: str | None = None, **options: Any) -> Any:
    if client == "confluent":
        import confluent_kafka  # noqa: F401  (missing: the case is skipped)

        from bridges.kafka import ConfluentKafkaBridge

        return ConfluentKafkaBridge(KAFKA, **options)
    from bridges.kafka import KafkaBridge

    return KafkaBridge(KAFKA, runtime=runtime, **options)  # type: ignore[arg-type]


def _topic() -> str:
    name = unique("bench").replace("-", ".", 1)
    kafka_create_topic(name)
    return name


def bridge_egress(n: int, runtime: str | None = None, client: str = "aiokafka") -> Sample:
    from bridges.kafka import KafkaBridge  # noqa: F401  (a missing bridge skips the case)
    from bus import open_bus

    topic = _topic()

    async def main() -> float:
        async with open_bus(name="bench") as bus:
            bus.topic(topic, Reading)
            bridge = _bridge(client, runtime, name="out")
            await bus.attach(bridge, export=[topic], batch=BATCH)
            obj, _ = message(-1)
            await bus.publish(topic, obj, key=obj.key, confirm=True)
            t0 = time.perf_counter()
            for i in range(n):
                obj, _ = message(i)
                await bus.publish(topic, obj, key=obj.key)
            await bus.drain()
            return time.perf_counter() - t0

    try:
        return Sample(n, trio.run(main))
    finally:
        kafka_delete_topic(topic)


def bridge_ingress(n: int, runtime: str | None = None, client: str = "aiokafka") -> Sample:
    from bridges.kafka import KafkaBridge  # noqa: F401  (a missing bridge skips the case)
    from bus import Envelope, open_bus

    topic = _topic()
    group = unique("bench-g")

    async def main() -> float:
        done = trio.Event()
        state = {"count": 0, "t0": 0.0}

        def handle(env: Envelope[Reading]) -> None:
            if not state["count"]:
                state["t0"] = time.perf_counter()
            state["count"] += 1
            if state["count"] == n:
                done.set()

        async with open_bus(name="bench") as bus:
            bus.topic(topic, Reading)
            bus.subscribe(topic, handle)
            bridge = _bridge(
                client, runtime, name="in", group_id=group, max_poll_records=MAX_RECORDS
            )
            await bus.attach(bridge, import_=[topic])
            try:
                with trio.fail_after(TIMEOUT):
                    await done.wait()
            except trio.TooSlowError:
                raise CaseFailed(
                    f"the bridge delivered {state['count']} of {n} in {TIMEOUT:.0f} s"
                ) from None
            return time.perf_counter() - state["t0"]

    try:
        kafka_fill(topic, n, ce_type=topic)
        seconds = trio.run(main)
        committed = kafka_committed(group, topic)
    finally:
        kafka_delete_topic(topic)
    if committed != n:  # the bus exited after every message was handled: all committed
        raise CaseFailed(f"the group committed {committed} of {n} offsets")
    return Sample(n, seconds)


def latency(n: int, rate: float) -> Sample:
    from bridges.kafka import KafkaBridge  # noqa: F401  (a missing bridge skips the case)

    from . import _bridge_latency

    topic = _topic()

    def make() -> tuple[Any, Any]:
        return _bridge(name="out"), _bridge(name="in", group_id=unique("bench-g"))

    return _bridge_latency.run(
        n, make, lambda: kafka_delete_topic(topic), rate=rate, topic=topic
    )
