"""Closing the Kafka producer is bounded: a flush that never ends is abandoned and the
producer's connections are closed anyway (after a broker restart an idempotent producer
can retry for ever; its sockets must not outlive the bridge)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridges.kafka import _aio


class _Conn:
    def __init__(self) -> None:
        self.closed = False

    def close(self, reason: Any = None) -> None:
        self.closed = True


class _Client:
    def __init__(self, close_hangs: bool) -> None:
        self._conns = {0: _Conn(), 1: _Conn()}
        self.close_hangs = close_hangs
        self.close_called = False

    async def close(self) -> None:
        self.close_called = True
        if self.close_hangs:
            await asyncio.Event().wait()
        for conn in self._conns.values():
            conn.close()


class _Sender:
    def __init__(self) -> None:
        self.sender_task = asyncio.ensure_future(asyncio.Event().wait())


class _Producer:
    """What stop_producer touches of an aiokafka producer whose flush never ends."""

    def __init__(self, flush_hangs: bool, close_hangs: bool = False) -> None:
        self.flush_hangs = flush_hangs
        self._sender = _Sender()
        self.client = _Client(close_hangs)
        self.stopped = False
        self.sender_done_after_stop = False

    async def stop(self) -> None:
        if self.flush_hangs:
            await asyncio.Event().wait()
        self._sender.sender_task.cancel()
        await self.client.close()
        self.stopped = True


def _stop(flush_hangs: bool, close_hangs: bool = False) -> tuple[bool, _Producer, float]:
    async def main() -> tuple[bool, _Producer, float]:
        producer = _Producer(flush_hangs, close_hangs)
        start = time.monotonic()
        flushed = await _aio.stop_producer(producer, 0.2)
        producer.sender_done_after_stop = producer._sender.sender_task.done()
        return flushed, producer, time.monotonic() - start

    return asyncio.run(main())


def test_a_producer_that_flushes_is_stopped_normally() -> None:
    flushed, producer, _ = _stop(flush_hangs=False)
    assert flushed is True
    assert producer.stopped
    assert all(c.closed for c in producer.client._conns.values())


def test_a_flush_that_never_ends_is_abandoned_and_the_connections_closed() -> None:
    flushed, producer, took = _stop(flush_hangs=True)
    assert flushed is False
    assert took < 3.0
    assert producer.sender_done_after_stop
    assert producer.client.close_called
    assert all(c.closed for c in producer.client._conns.values())


def test_connections_are_dropped_even_when_the_client_close_hangs() -> None:
    flushed, producer, took = _stop(flush_hangs=True, close_hangs=True)
    assert flushed is False
    assert took < 4.0
    assert all(c.closed for c in producer.client._conns.values())
