"""Baselines: the floor (raw trio drain loop) and the peers the bus is compared with.

Every case builds one :class:`Tick` per message, counts deliveries in its consumer and
stops the clock when the consumer has seen all of them, exactly like the bus cases, so
a ratio compares delivery machinery and nothing else. None of these route or wrap.

- ``trio_drain``: producer ``send_nowait`` (``await send`` only on ``WouldBlock``),
  consumer ``receive_nowait`` (``await receive`` only when empty) — the floor.
- ``trio_await``: the naive channel, ``await send`` / ``async for`` (a schedule point
  per message), for context.
- ``asyncio_queue``: ``asyncio.Queue`` 1→1 in its own ``asyncio.run``.
- ``pyee_sync`` / ``pyee_async``: ``EventEmitter.emit`` to a sync handler, and
  ``AsyncIOEventEmitter`` to a coroutine handler.
- ``blinker``: ``Signal.send`` to a receiver.
- ``faststream_kafka``: FastStream's in-memory ``TestKafkaBroker`` (only if installed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import trio

from ._harness import Sample
from ._messages import Tick

CAPACITY = 1024


def trio_drain(n: int) -> Sample:
    async def main() -> Sample:
        send, recv = trio.open_memory_channel[Tick](CAPACITY)
        done = trio.Event()
        count = 0

        async def consumer() -> None:
            nonlocal count
            while True:
                try:
                    recv.receive_nowait()
                except trio.WouldBlock:
                    try:
                        await recv.receive()
                    except trio.EndOfChannel:
                        return
                except trio.EndOfChannel:
                    return
                count += 1
                if count == n:
                    done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                msg = Tick(n=i)
                try:
                    send.send_nowait(msg)
                except trio.WouldBlock:
                    await send.send(msg)
            await done.wait()
            elapsed = time.perf_counter() - t0
            send.close()
        return Sample(count, elapsed)

    return trio.run(main)


def trio_await(n: int) -> Sample:
    async def main() -> Sample:
        send, recv = trio.open_memory_channel[Tick](CAPACITY)
        done = trio.Event()
        count = 0

        async def consumer() -> None:
            nonlocal count
            async for _msg in recv:
                count += 1
                if count == n:
                    done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                await send.send(Tick(n=i))
            await done.wait()
            elapsed = time.perf_counter() - t0
            await send.aclose()
        return Sample(count, elapsed)

    return trio.run(main)


def asyncio_queue(n: int) -> Sample:
    async def main() -> Sample:
        queue: asyncio.Queue[Tick] = asyncio.Queue(maxsize=CAPACITY)
        count = 0

        async def consumer() -> None:
            nonlocal count
            while count < n:
                await queue.get()
                count += 1

        task = asyncio.create_task(consumer())
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for i in range(n):
            msg = Tick(n=i)
            try:
                queue.put_nowait(msg)
            except asyncio.QueueFull:
                await queue.put(msg)
        await task
        return Sample(count, time.perf_counter() - t0)

    return asyncio.run(main())


def pyee_sync(n: int) -> Sample:
    from pyee import EventEmitter

    emitter = EventEmitter()
    count = 0

    def handler(msg: Tick) -> None:
        nonlocal count
        count += 1

    emitter.on("tick", handler)
    t0 = time.perf_counter()
    for i in range(n):
        emitter.emit("tick", Tick(n=i))
    elapsed = time.perf_counter() - t0
    assert count == n, (count, n)
    return Sample(count, elapsed)


def pyee_async(n: int) -> Sample:
    from pyee.asyncio import AsyncIOEventEmitter

    async def main() -> Sample:
        emitter = AsyncIOEventEmitter()
        done = asyncio.Event()
        count = 0

        async def handler(msg: Tick) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        emitter.on("tick", handler)
        t0 = time.perf_counter()
        for i in range(n):
            emitter.emit("tick", Tick(n=i))
            if i % 256 == 255:
                await asyncio.sleep(0)  # let handlers run, as a real producer would
        await done.wait()
        return Sample(count, time.perf_counter() - t0)

    return asyncio.run(main())


def blinker(n: int) -> Sample:
    from blinker import Signal

    signal = Signal()
    count = 0

    def receiver(sender: Any, msg: Tick) -> None:
        nonlocal count
        count += 1

    signal.connect(receiver)
    t0 = time.perf_counter()
    for i in range(n):
        signal.send(None, msg=Tick(n=i))
    elapsed = time.perf_counter() - t0
    assert count == n, (count, n)
    return Sample(count, elapsed)


def faststream_kafka(n: int) -> Sample:
    """FastStream's in-memory Kafka test broker; raises ImportError when not installed."""
    from faststream.kafka import KafkaBroker, TestKafkaBroker

    broker = KafkaBroker()
    count = 0

    @broker.subscriber("bench-tick")
    async def handler(msg: dict[str, int]) -> None:
        nonlocal count
        count += 1

    async def main() -> Sample:
        async with TestKafkaBroker(broker) as test_broker:
            t0 = time.perf_counter()
            for i in range(n):
                await test_broker.publish({"n": i}, "bench-tick")
            elapsed = time.perf_counter() - t0
        return Sample(count, elapsed)

    return asyncio.run(main())
