"""RabbitMQ through the bridge against plain aio-pika in plain asyncio, same broker, same run.

Four cases, rounds interleaved by the harness, each on a fresh exchange and queue:

- ``rabbitmq_raw_egress``: aio-pika on ``asyncio.run``, publisher confirms, persistent,
  ``mandatory``, batches of 256 published concurrently and gathered; same body and the
  same CloudEvents headers the bridge writes;
- ``rabbitmq_bridge_egress``: ``bus.publish`` of the same messages to a bus with a
  :class:`~bridges.rabbitmq.RabbitMQBridge` exporting them (``batch=256``); timed until
  ``bus.drain()`` returns, i.e. every batch confirmed by the broker;
- ``rabbitmq_raw_ingress``: the queue is filled first (untimed), then aio-pika connects,
  consumes with ``prefetch`` and acknowledges every message; timed from connect to the
  last ack;
- ``rabbitmq_bridge_ingress``: the same backlog imported by the bridge into a bus whose
  subscriber counts it; timed from ``attach`` to the last message handled; afterwards the
  queue must be empty (every delivery acknowledged once done), else the case fails.

Run ``python -m benchmarks.bridges_rabbitmq [--messages N] [--rounds R] [--json PATH]``
with ``RABBITMQ_URL`` set (default: guest on 127.0.0.1). Prints rates and the ratios
``rabbitmq_egress_vs_raw`` and ``rabbitmq_ingress_vs_raw``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from functools import partial
from typing import Any

import msgspec
import trio

from ._harness import Case, CaseFailed, Progress, Sample, Size, run_rounds
from ._messages import Tick
from .local import quiet_logs

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
BATCH = 256
PREFETCH = 512
TOPIC = "bench.tick"


def _wire(n: int) -> tuple[bytes, dict[str, str], str]:
    """A body and the headers the bridge would write for message *n*."""
    from bridges.rabbitmq._wire import to_amqp
    from bus import Envelope

    tick = Tick(n, time.time_ns())
    env = Envelope(id=hex(n), topic=TOPIC, payload=tick, time=time.time(), source="bench")
    out = to_amqp(env, msgspec.json.encode(tick))
    return out.body, out.headers, out.content_type


def _asyncio_run(coro: Any) -> Any:
    # Explicitly a selector loop: an imported trio_asyncio would swap the default.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


async def _declare(conn: Any, exchange: str, queue: str) -> tuple[Any, Any]:
    import aio_pika

    ch = await conn.channel(publisher_confirms=True)
    ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    q = await ch.declare_queue(queue, durable=True)
    await q.bind(ex, routing_key="bench.#")
    return ch, ex


async def _publish_all(ex: Any, n: int) -> None:
    import aio_pika

    body, headers, ctype = _wire(0)
    persistent = aio_pika.DeliveryMode.PERSISTENT
    for start in range(0, n, BATCH):
        await asyncio.gather(*(
            ex.publish(
                aio_pika.Message(
                    body, headers=dict(headers), content_type=ctype, delivery_mode=persistent,
                    message_id=hex(i), timestamp=time.time(),
                ),
                TOPIC, mandatory=True,
            )
            for i in range(start, min(n, start + BATCH))
        ))


async def _cleanup(exchange: str, queue: str) -> int:
    """Delete the case's queue and exchange; return how many messages were left."""
    import aio_pika

    conn = await aio_pika.connect(URL)
    try:
        ch = await conn.channel()
        ok = await ch.queue_delete(queue)
        await ch.exchange_delete(exchange)
        return int(ok.message_count or 0)
    finally:
        await conn.close()


def _names() -> tuple[str, str]:
    exchange = f"bench-{uuid.uuid4().hex[:8]}"
    return exchange, f"{exchange}.q"


# -- egress ---------------------------------------------------------------------------


def raw_egress(n: int) -> Sample:
    exchange, queue = _names()

    async def main() -> float:
        import aio_pika

        conn = await aio_pika.connect(URL)
        try:
            _, ex = await _declare(conn, exchange, queue)
            t0 = time.perf_counter()
            await _publish_all(ex, n)
            return time.perf_counter() - t0
        finally:
            await conn.close()
            await _cleanup(exchange, queue)

    return Sample(n, _asyncio_run(main()))


def bridge_egress(n: int, runtime: str = "thread") -> Sample:
    from bridges.rabbitmq import RabbitMQBridge
    from bus import open_bus

    exchange, queue = _names()

    async def main() -> float:
        async with open_bus(name="bench") as bus:
            bus.topic(TOPIC, Tick)
            bridge = RabbitMQBridge(
                URL, name="out", exchange=exchange, queue=queue, runtime=runtime  # type: ignore[arg-type]
            )
            await bus.attach(bridge, export=["bench.#"], batch=BATCH)
            await bridge.create_topic("bench.#")
            t0 = time.perf_counter()
            for i in range(n):
                await bus.publish(TOPIC, Tick(i, time.time_ns()))
            await bus.drain()
            seconds = time.perf_counter() - t0
            ready, _ = await bridge.queue_counts()
            await bridge.delete_queue()
            await bridge.delete_exchange()
        if ready != n:
            raise CaseFailed(f"{ready} of {n} messages reached the queue")
        return seconds

    with quiet_logs():
        return Sample(n, trio.run(main))


# -- ingress --------------------------------------------------------------------------


def _fill(n: int) -> tuple[str, str]:
    exchange, queue = _names()

    async def main() -> None:
        import aio_pika

        conn = await aio_pika.connect(URL)
        try:
            _, ex = await _declare(conn, exchange, queue)
            await _publish_all(ex, n)
        finally:
            await conn.close()

    _asyncio_run(main())
    return exchange, queue


def raw_ingress(n: int) -> Sample:
    exchange, queue = _fill(n)

    async def main() -> float:
        import aio_pika

        done = asyncio.Event()
        count = 0

        async def on_message(message: Any) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == n:
                done.set()

        t0 = time.perf_counter()
        conn = await aio_pika.connect(URL)
        try:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=PREFETCH)
            q = await ch.declare_queue(queue, durable=True)
            await q.consume(on_message)
            await done.wait()
            return time.perf_counter() - t0
        finally:
            await conn.close()

    try:
        seconds = _asyncio_run(main())
    finally:
        left = _asyncio_run(_cleanup(exchange, queue))
    if left:
        raise CaseFailed(f"{left} messages left unacknowledged")
    return Sample(n, seconds)


def bridge_ingress(n: int, runtime: str = "thread") -> Sample:
    from bridges.rabbitmq import RabbitMQBridge
    from bus import Envelope, open_bus

    exchange, queue = _fill(n)

    async def main() -> float:
        count = 0
        done = trio.Event()

        def handle(env: Envelope[Tick]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        async with open_bus(name="bench") as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe("bench.#", handle)
            bridge = RabbitMQBridge(
                URL, name="in", exchange=exchange, queue=queue, prefetch=PREFETCH,
                runtime=runtime,  # type: ignore[arg-type]
            )
            t0 = time.perf_counter()
            await bus.attach(bridge, import_=["bench.#"])
            await done.wait()
            return time.perf_counter() - t0

    try:
        with quiet_logs():
            seconds = trio.run(main)
    finally:
        left = _asyncio_run(_cleanup(exchange, queue))
    if left:
        raise CaseFailed(f"{left} messages left unacknowledged after the bus exited")
    return Sample(n, seconds)


# -- FastStream (the peer a user would pick instead) ------------------------------------


def faststream_egress(n: int) -> Sample:
    """FastStream's real RabbitBroker (confirms on by default) publishing the same
    messages, persistent and mandatory, 256 at a time like the others; it encodes each
    payload itself (a dict) as a FastStream user's code would."""
    exchange, queue = _names()

    async def main() -> float:
        from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange

        _, headers, ctype = _wire(0)
        broker = RabbitBroker(URL, logger=None)
        await broker.connect()
        try:
            import aio_pika

            conn = await aio_pika.connect(URL)
            async with conn:
                await _declare(conn, exchange, queue)
            ex = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                await asyncio.gather(*(
                    broker.publish(
                        {"n": i, "t": time.time_ns()}, exchange=ex, routing_key=TOPIC,
                        persist=True, mandatory=True, headers=dict(headers),
                        message_id=hex(i), content_type=ctype,
                    )
                    for i in range(start, min(n, start + BATCH))
                ))
            return time.perf_counter() - t0
        finally:
            await broker.stop()
            await _cleanup(exchange, queue)

    return Sample(n, _asyncio_run(main()))


def faststream_ingress(n: int) -> Sample:
    """The same backlog consumed by a FastStream subscriber (acknowledged after the
    handler, FastStream's default), prefetch as the others; timed from start to the
    last message handled."""
    exchange, queue = _fill(n)

    async def main() -> float:
        from faststream.rabbit import (
            Channel,
            ExchangeType,
            RabbitBroker,
            RabbitExchange,
            RabbitQueue,
        )

        done = asyncio.Event()
        count = 0
        broker = RabbitBroker(URL, logger=None, default_channel=Channel(prefetch_count=PREFETCH))

        @broker.subscriber(
            RabbitQueue(queue, durable=True, routing_key="bench.#"),
            RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True),
        )
        async def handle(body: dict[str, int]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        t0 = time.perf_counter()
        await broker.start()
        try:
            await done.wait()
            return time.perf_counter() - t0
        finally:
            await broker.stop()

    try:
        seconds = _asyncio_run(main())
    finally:
        left = _asyncio_run(_cleanup(exchange, queue))
    if left:
        raise CaseFailed(f"{left} messages left unacknowledged")
    return Sample(n, seconds)


def cases(runtimes: bool = False) -> list[Case]:
    """The cases; with *runtimes*, also the bridge on the trio-asyncio runtime."""
    extra = [
        Case("rabbitmq_bridge_egress_trio_asyncio", "bridge export, trio-asyncio runtime",
             "msg/s", partial(bridge_egress, runtime="trio-asyncio")),
        Case("rabbitmq_bridge_ingress_trio_asyncio", "bridge import, trio-asyncio runtime",
             "msg/s", partial(bridge_ingress, runtime="trio-asyncio")),
    ] if runtimes else []
    return [
        *extra,
        Case("rabbitmq_raw_egress", "aio-pika publish, confirms, plain asyncio", "msg/s",
             raw_egress),
        Case("rabbitmq_bridge_egress", "bus -> RabbitMQBridge export, confirms", "msg/s",
             bridge_egress),
        Case("rabbitmq_raw_ingress", "aio-pika consume + ack, plain asyncio", "msg/s",
             raw_ingress),
        Case("rabbitmq_bridge_ingress", "RabbitMQBridge import -> bus handler, acks", "msg/s",
             bridge_ingress),
        Case("rabbitmq_faststream_egress", "FastStream RabbitBroker.publish, confirms", "msg/s",
             faststream_egress),
        Case("rabbitmq_faststream_ingress", "FastStream RabbitBroker subscriber, acks", "msg/s",
             faststream_ingress),
    ]


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    def ratio(ours: str, theirs: str) -> float | None:
        a, b = results[ours]["median"], results[theirs]["median"]
        return round(a / b, 3) if a and b else None

    return {
        "rabbitmq_egress_vs_raw": ratio("rabbitmq_bridge_egress", "rabbitmq_raw_egress"),
        "rabbitmq_ingress_vs_raw": ratio("rabbitmq_bridge_ingress", "rabbitmq_raw_ingress"),
        "rabbitmq_egress_vs_faststream": ratio(
            "rabbitmq_bridge_egress", "rabbitmq_faststream_egress"
        ),
        "rabbitmq_ingress_vs_faststream": ratio(
            "rabbitmq_bridge_ingress", "rabbitmq_faststream_ingress"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--runtimes", action="store_true", help="also the bridge on the trio-asyncio runtime"
    )
    args = parser.parse_args(argv)
    size = Size(messages=args.messages, rounds=args.rounds)
    all_cases = cases(args.runtimes)
    run_rounds(all_cases, size, Progress(total=len(all_cases) * size.rounds))
    results = {case.name: case.result() for case in all_cases}
    report: dict[str, Any] = {"messages": size.messages, "rounds": size.rounds, "cases": results,
              "ratios": ratios(results)}
    for name, res in results.items():
        median = res["median"]
        shown = f"{median:10.0f} {res['unit']}" if median else f"{res['error']}"
        print(f"{name:<26} {shown}   rounds {res['rounds']}")
    for name, value in report["ratios"].items():
        print(f"{name:<26} {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0 if all(res["ok"] for res in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
