"""Closing aiokafka's clients is bounded, and forced when it must be.

The producer: a flush that never ends is abandoned and its connections are closed anyway
(after a broker restart an idempotent producer can retry for ever). The consumer: a stop
that never ends (leaving the group waits for the coordination task) is abandoned, its
tasks cancelled before its connections are closed, since a task left running reconnects.
Their sockets must not outlive the bridge."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridges.kafka import _client


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
        flushed = await _client.stop_producer(producer, 0.2)
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


# -- the consumer ---------------------------------------------------------------------


class _ReconnectingClient(_Client):
    """aiokafka's client opens a new connection for the next request of any task still
    running, whether the client was closed or not."""

    def __init__(self) -> None:
        super().__init__(close_hangs=False)
        self.opened = 0

    def request(self, key: int) -> None:
        if self._conns.get(key) is None or self._conns[key].closed:
            self._conns[key] = _Conn()
            self.opened += 1


async def _every_10ms(client: _ReconnectingClient, key: int) -> None:
    while True:
        await asyncio.sleep(0.01)
        client.request(key)


class _Coordinator:
    def __init__(self, client: _ReconnectingClient) -> None:
        self._coordination_task = asyncio.ensure_future(asyncio.Event().wait())  # a JoinGroup
        self._heartbeat_task = asyncio.ensure_future(_every_10ms(client, 0))
        self._commit_refresh_task = asyncio.ensure_future(_every_10ms(client, 0))


class _Fetcher:
    def __init__(self, client: _ReconnectingClient) -> None:
        self._fetch_task = asyncio.ensure_future(_every_10ms(client, 1))
        self._pending_tasks = {asyncio.ensure_future(_every_10ms(client, 1))}


class _Consumer:
    """What stop_consumer touches of an aiokafka consumer; ``stop()`` first waits for the
    coordination task, as ``GroupCoordinator.close`` does, which may never end."""

    def __init__(
        self, stop_hangs: bool, stop_fails: bool = False, stop_cancelled: bool = False
    ) -> None:
        self._client = _ReconnectingClient()
        self._coordinator = _Coordinator(self._client)
        self._fetcher = _Fetcher(self._client)
        self.stop_hangs = stop_hangs
        self.stop_fails = stop_fails
        self.stop_cancelled = stop_cancelled
        self.stopped = False

    def tasks(self) -> list[asyncio.Future[Any]]:
        c, f = self._coordinator, self._fetcher
        return [c._coordination_task, c._heartbeat_task, c._commit_refresh_task,
                f._fetch_task, *f._pending_tasks]

    async def stop(self) -> None:
        if self.stop_hangs:
            await self._coordinator._coordination_task
        if self.stop_fails:
            raise RuntimeError("leaving the group failed")
        if self.stop_cancelled:  # aiokafka 0.14's Fetcher.close, a fetch in flight
            for task in self._fetcher._pending_tasks:
                task.cancel()
                await task  # raises CancelledError: stop() ends before the client closes
        for task in self.tasks():
            task.cancel()
        await self._client.close()
        self.stopped = True


class _Stopped:
    """What stop_consumer returned, and the consumer as it was right then (asyncio.run
    cancels every task left when it ends)."""

    def __init__(self, consumer: _Consumer, result: bool | BaseException, took: float) -> None:
        self.result, self.took, self.stopped = result, took, consumer.stopped
        self.tasks_done = all(t.done() for t in consumer.tasks())
        self.client_closed = consumer._client.close_called
        self.conns_closed = all(c.closed for c in consumer._client._conns.values())


def _stop_consumer(
    stop_hangs: bool, stop_fails: bool = False, stop_cancelled: bool = False
) -> _Stopped:
    async def main() -> _Stopped:
        consumer = _Consumer(stop_hangs, stop_fails, stop_cancelled)
        start = time.monotonic()
        try:
            result: bool | BaseException = await _client.stop_consumer(consumer, 0.2)
        except RuntimeError as exc:
            result = exc
        return _Stopped(consumer, result, time.monotonic() - start)

    return asyncio.run(main())


def test_a_consumer_that_stops_is_stopped_normally() -> None:
    done = _stop_consumer(stop_hangs=False)
    assert done.result is True
    assert done.stopped and done.tasks_done and done.conns_closed


def test_a_stop_that_never_ends_is_abandoned_tasks_first_then_connections() -> None:
    done = _stop_consumer(stop_hangs=True)
    assert done.result is False
    assert done.took < 3.0
    assert not done.stopped
    assert done.tasks_done  # none is left to open a connection again
    assert done.client_closed
    assert done.conns_closed


def test_a_stop_that_fails_closes_everything_and_says_why() -> None:
    done = _stop_consumer(stop_hangs=False, stop_fails=True)
    assert isinstance(done.result, RuntimeError)
    assert done.tasks_done and done.conns_closed


def test_a_stop_that_ends_half_way_cancelled_still_closes_the_client() -> None:
    """aio-libs/aiokafka#647: stop() raises CancelledError from Fetcher.close."""
    done = _stop_consumer(stop_hangs=False, stop_cancelled=True)
    assert done.result is True  # it ended within the bound; no CancelledError escapes
    assert not done.stopped
    assert done.tasks_done and done.client_closed and done.conns_closed
