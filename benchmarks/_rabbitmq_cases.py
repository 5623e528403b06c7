"""RabbitMQ cases: the bridge, plain aio-pika and FastStream's real RabbitBroker.

Every case moves the same ~200 B msgspec JSON messages (``_messages.Reading``) through a
fresh durable topic exchange and a durable queue bound to ``bench.#``, both deleted after
the round. Publishing is persistent, ``mandatory``, with publisher confirms, ``BATCH``
messages in flight; consuming uses ``PREFETCH`` and manual acks.

- **egress** (timed from the first publish to the last confirm, after one confirmed
  warm-up message): aio-pika on plain asyncio, ``BATCH`` publishes gathered at a time,
  with the ``ce-`` headers the bridge writes; FastStream's ``RabbitBroker.publish``
  (persist, mandatory, its msgspec serializer), ``BATCH`` gathered at a time; the
  bridge: ``bus.publish`` of each message into a bus exporting through
  ``RabbitMQBridge`` (``batch=BATCH``), timed until ``bus.drain()`` returned, i.e.
  every batch confirmed;
- **ingress** (the queue is filled first, untimed; timed from the first message to the
  last one decoded into a ``Reading`` and acknowledged; the queue must be empty after):
  aio-pika ``consume`` acking with ``multiple=True`` every ``ACK_EVERY`` messages;
  FastStream's subscriber with ``AckPolicy.ACK``; the bridge importing into a bus whose
  subscriber counts them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import trio

from ._brokers import (
    BATCH,
    BUS_TOPIC,
    PREFETCH,
    RABBITMQ_URL,
    amqp_headers,
    decode,
    message,
    unique,
)
from ._brokers import asyncio_run as _run
from ._harness import CaseFailed, Sample
from ._messages import Reading

TIMEOUT = 120.0
ACK_EVERY = PREFETCH // 4


def _names() -> tuple[str, str]:
    exchange = unique()
    return exchange, f"{exchange}.q"


async def _declare(conn: Any, exchange: str, queue: str) -> Any:
    import aio_pika

    ch = await conn.channel(publisher_confirms=True)
    ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    q = await ch.declare_queue(queue, durable=True)
    await q.bind(ex, routing_key="bench.#")
    return ex


def _amqp_message(i: int) -> Any:
    import aio_pika

    obj, data = message(i)
    return aio_pika.Message(
        data,
        headers=amqp_headers(i, obj.key),  # type: ignore[arg-type]
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=f"{i:x}",
        timestamp=time.time(),
    )


async def _publish_all(ex: Any, n: int) -> None:
    for start in range(0, n, BATCH):
        await asyncio.gather(*(
            ex.publish(_amqp_message(i), BUS_TOPIC, mandatory=True)
            for i in range(start, min(n, start + BATCH))
        ))


async def _cleanup(exchange: str, queue: str) -> int:
    """Delete the round's queue and exchange; return how many messages were left."""
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    try:
        ch = await conn.channel()
        ok = await ch.queue_delete(queue)
        await ch.exchange_delete(exchange)
        return int(ok.message_count or 0)
    finally:
        await conn.close()


def _fill(n: int) -> tuple[str, str]:
    exchange, queue = _names()

    async def main() -> None:
        import aio_pika

        conn = await aio_pika.connect(RABBITMQ_URL)
        try:
            await _publish_all(await _declare(conn, exchange, queue), n)
        finally:
            await conn.close()

    _run(main())
    return exchange, queue


def _after_ingress(n: int, seconds: float, exchange: str, queue: str) -> Sample:
    left = _run(_cleanup(exchange, queue))
    if left:
        raise CaseFailed(f"{left} messages left unacknowledged")
    return Sample(n, seconds)


# -- aio-pika ------------------------------------------------------------------------


def raw_egress(n: int) -> Sample:
    exchange, queue = _names()

    async def main() -> float:
        import aio_pika

        conn = await aio_pika.connect(RABBITMQ_URL)
        try:
            ex = await _declare(conn, exchange, queue)
            await ex.publish(_amqp_message(-1), BUS_TOPIC, mandatory=True)
            t0 = time.perf_counter()
            await _publish_all(ex, n)
            return time.perf_counter() - t0
        finally:
            await conn.close()

    try:
        return Sample(n, _run(main()))
    finally:
        _run(_cleanup(exchange, queue))


def raw_ingress(n: int) -> Sample:
    exchange, queue = _fill(n)

    async def main() -> float:
        import aio_pika

        done = asyncio.Event()
        state = {"count": 0, "t0": 0.0}

        async def on_message(msg: Any) -> None:
            count = state["count"] + 1
            if count == 1:
                state["t0"] = time.perf_counter()
            decode(msg.body)
            state["count"] = count
            # its best way: one ack with multiple=True per ACK_EVERY (and the last)
            if count % ACK_EVERY == 0 or count == n:
                await msg.ack(multiple=True)
            if count == n:
                done.set()

        conn = await aio_pika.connect(RABBITMQ_URL)
        try:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=PREFETCH)
            q = await ch.declare_queue(queue, durable=True)
            await q.consume(on_message)
            await asyncio.wait_for(done.wait(), TIMEOUT)
            return time.perf_counter() - state["t0"]
        finally:
            await conn.close()

    try:
        seconds = _run(main())
    except BaseException:
        _run(_cleanup(exchange, queue))
        raise
    return _after_ingress(n, seconds, exchange, queue)


# -- FastStream's real RabbitBroker ---------------------------------------------------


def _faststream_broker() -> Any:
    from fast_depends.msgspec import MsgSpecSerializer
    from faststream.rabbit import RabbitBroker
    from faststream.rabbit.schemas import Channel

    return RabbitBroker(
        RABBITMQ_URL,
        serializer=MsgSpecSerializer(),
        logger=None,
        default_channel=Channel(prefetch_count=PREFETCH, publisher_confirms=True),
    )


def faststream_egress(n: int) -> Sample:
    from faststream.rabbit import ExchangeType, RabbitExchange

    exchange, queue = _names()

    async def main() -> float:
        import aio_pika

        conn = await aio_pika.connect(RABBITMQ_URL)
        try:
            await _declare(conn, exchange, queue)
        finally:
            await conn.close()
        broker = _faststream_broker()
        ex = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)

        def publish(i: int) -> Any:
            obj, _ = message(i)
            return broker.publish(
                obj, exchange=ex, routing_key=BUS_TOPIC, persist=True, mandatory=True,
                headers=amqp_headers(i, obj.key), message_id=f"{i:x}",
            )

        await broker.start()
        try:
            await publish(-1)
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                await asyncio.gather(*(publish(i) for i in range(start, min(n, start + BATCH))))
            return time.perf_counter() - t0
        finally:
            await broker.stop()

    try:
        return Sample(n, _run(main()))
    finally:
        _run(_cleanup(exchange, queue))


def faststream_ingress(n: int) -> Sample:
    from faststream import AckPolicy
    from faststream.rabbit import ExchangeType, RabbitExchange, RabbitQueue

    exchange, queue = _fill(n)

    async def main() -> float:
        broker = _faststream_broker()
        done = asyncio.Event()
        state = {"count": 0, "t0": 0.0}

        @broker.subscriber(  # type: ignore[untyped-decorator]
            RabbitQueue(queue, durable=True, routing_key="bench.#"),
            RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True),
            ack_policy=AckPolicy.ACK,
        )
        async def handle(body: Reading) -> None:
            if not state["count"]:
                state["t0"] = time.perf_counter()
            state["count"] += 1
            if state["count"] == n:
                done.set()

        await broker.start()
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT)
            return time.perf_counter() - state["t0"]
        finally:
            await broker.stop()

    try:
        seconds = _run(main())
    except BaseException:
        _run(_cleanup(exchange, queue))
        raise
    return _after_ingress(n, seconds, exchange, queue)


# -- the bridge ------------------------------------------------------------------------


def _runtime(runtime: str | None) -> dict[str, Any]:
    return {} if runtime is None else {"runtime": runtime}


def bridge_egress(n: int, runtime: str | None = None) -> Sample:
    from bridges.rabbitmq import RabbitMQBridge
    from bus import open_bus

    exchange, queue = _names()

    async def main() -> tuple[float, int]:
        async with open_bus(name="bench") as bus:
            bus.topic(BUS_TOPIC, Reading)
            bridge = RabbitMQBridge(
                RABBITMQ_URL, name="out", exchange=exchange, queue=queue, **_runtime(runtime)
            )
            await bus.attach(bridge, export=["bench.#"], batch=BATCH)
            await bridge.create_topic("bench.#")
            obj, _ = message(-1)
            await bus.publish(BUS_TOPIC, obj, key=obj.key, confirm=True)
            t0 = time.perf_counter()
            for i in range(n):
                obj, _ = message(i)
                await bus.publish(BUS_TOPIC, obj, key=obj.key)
            await bus.drain()
            seconds = time.perf_counter() - t0
            ready, _ = await bridge.queue_counts()
        return seconds, ready

    try:
        seconds, ready = trio.run(main)
    finally:
        _run(_cleanup(exchange, queue))
    if ready != n + 1:
        raise CaseFailed(f"{ready} of {n + 1} messages reached the queue")
    return Sample(n, seconds)


def bridge_ingress(n: int, runtime: str | None = None) -> Sample:
    from bridges.rabbitmq import RabbitMQBridge
    from bus import Envelope, open_bus

    exchange, queue = _fill(n)

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
            bus.topic(BUS_TOPIC, Reading)
            bus.subscribe("bench.#", handle)
            bridge = RabbitMQBridge(
                RABBITMQ_URL, name="in", exchange=exchange, queue=queue, prefetch=PREFETCH,
                **_runtime(runtime),
            )
            await bus.attach(bridge, import_=["bench.#"])
            with trio.fail_after(TIMEOUT):
                await done.wait()
            return time.perf_counter() - state["t0"]

    try:
        seconds = trio.run(main)
    except BaseException:
        _run(_cleanup(exchange, queue))
        raise
    return _after_ingress(n, seconds, exchange, queue)


def latency(n: int, rate: float) -> Sample:
    from bridges.rabbitmq import RabbitMQBridge

    from . import _bridge_latency

    exchange, _ = _names()

    def make() -> tuple[Any, Any]:
        return (
            RabbitMQBridge(RABBITMQ_URL, name="out", exchange=exchange),
            RabbitMQBridge(RABBITMQ_URL, name="in", exchange=exchange, prefetch=PREFETCH),
        )

    def cleanup() -> None:
        _run(_cleanup(exchange, f"{exchange}.in"))
        _run(_cleanup(exchange, f"{exchange}.out"))

    return _bridge_latency.run(n, make, cleanup, rate=rate)
