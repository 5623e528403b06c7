"""StreamingPull on the client's threads, messages handed to trio.

The threaded ``SubscriberClient`` runs one StreamingPull per subscription with its own
helper threads: it bounds the messages outstanding (``FlowControl.max_messages`` /
``max_bytes``: received and neither acked nor nacked; past it the client stops reading
the stream), keeps extending the ack deadline of every outstanding message (its leaser,
up to ``max_lease_duration``), and on a subscription with message ordering hands over the
next message of an ordering key only once the previous one was acked. Its callback runs
on a worker thread of the client for each message.

:class:`Intake` is that callback: it appends the message to a deque and, if trio has not
been told yet, tells it with one ``TrioToken.run_sync_soon`` (so a burst costs one
crossing, not one per message). The bridge's ingest task takes everything queued at once.
Nothing here acks: the bridge acks a message when the bus reports it done.

:class:`Pulls` starts and stops the StreamingPulls. Stopping cancels each StreamingPull
future, waits for the client's shutdown (its threads end; messages it held back are
nacked by the client: they were never handed over) and closes the client's channel.
Blocking client calls run in trio worker threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

__all__ = ["Intake", "Pulls"]

STOP_TIMEOUT = 10.0


class Intake:
    """Messages from the client's callback threads, waiting for trio to take them."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._items: deque[tuple[str, Any]] = deque()
        self._told = False
        self._wanted = trio.Event()
        self.failure: BaseException | None = None
        """Set when a StreamingPull ended with an error (the client gave up)."""

    def callback(self, topic: str, message: Any) -> None:
        """The client's message callback (any thread): queue it, wake trio once."""
        with self._lock:
            self._items.append((topic, message))
            if self._told:
                return
            self._told = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """A StreamingPull ended with *exc* (any thread)."""
        self.failure = exc
        self._wake()

    def _wake(self) -> None:
        try:
            self._token.run_sync_soon(self._set)
        except trio.RunFinishedError:
            pass  # trio has exited: the message is never acked and comes back

    def _set(self) -> None:
        self._wanted.set()

    async def take(self) -> list[tuple[str, Any]]:
        """Everything queued, waiting until there is something (or a failure)."""
        await self._wanted.wait()
        self._wanted = trio.Event()
        return self.take_nowait()

    def take_nowait(self) -> list[tuple[str, Any]]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._told = False
        return items


class Pulls:
    """The StreamingPulls of one bridge, on one threaded ``SubscriberClient``."""

    def __init__(self, make_client: Callable[[], Any], flow_control: Any, intake: Intake) -> None:
        self._make_client = make_client
        self._flow_control = flow_control
        self._intake = intake
        self._client: Any = None
        self._futures: dict[str, Any] = {}

    @property
    def subscriptions(self) -> list[str]:
        return list(self._futures)

    def __contains__(self, path: str) -> bool:
        return path in self._futures

    async def start(self, path: str, topic: str) -> None:
        """Start pulling subscription *path*, whose messages belong to bus *topic*."""
        if path in self._futures:
            return

        def subscribe() -> Any:
            if self._client is None:
                self._client = self._make_client()
            future = self._client.subscribe(
                path, callback=partial(self._intake.callback, topic),
                flow_control=self._flow_control, await_callbacks_on_shutdown=False,
            )
            future.add_done_callback(self._done)
            return future

        self._futures[path] = await trio.to_thread.run_sync(subscribe)

    def _done(self, future: Any) -> None:  # a client thread
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._intake.fail(exc)

    async def stop(self) -> None:
        """Stop every StreamingPull and close the client; no thread of it is left."""
        futures, self._futures = list(self._futures.values()), {}
        client, self._client = self._client, None

        def shut() -> None:
            for future in futures:
                future.cancel()
            for future in futures:
                try:
                    future.result(timeout=STOP_TIMEOUT)
                except BaseException:  # cancelled or failed: it is over either way
                    pass
            if client is not None:
                client.close()

        if futures or client is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(shut)
