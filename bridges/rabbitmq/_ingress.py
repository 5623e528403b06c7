"""RabbitMQ ingress: consume the bridge's queue, deliver to the bus, acknowledge what is
done.

:class:`Ingress` runs one ``RabbitMQBridge.ingest``: it takes deliveries from the
client in batches (one crossing per batch of up to ``prefetch``), delivers each with an
``on_done`` callback, and an :class:`~bridges._common.AckBatcher` sends the acks of
everything done, every channel in one crossing. A delivery whose channel closed is
skipped: the broker redelivers it. Backpressure: when a mailbox is full delivery waits,
and the broker stops pushing once ``prefetch`` deliveries are unacknowledged.

Which acks to send (:class:`AckTracker`, sans-IO): a channel numbers its deliveries 1,
2, 3... (the delivery tag). The bus finishes them out of order (handlers run
concurrently), and a message may be acknowledged only once it is done. The tracker turns
"these tags are done" into as few ``basic.ack`` frames as possible, without ever
acknowledging a tag that is not done or acknowledging one twice (either closes the
channel with PRECONDITION_FAILED):

- every done tag below the lowest tag that is still undone is covered by one
  ``basic.ack(tag, multiple=True)`` on the highest of them;
- done tags above an undone one are acknowledged one by one.

Memory is bounded by the channel's prefetch: the tracker only remembers tags that were
delivered and are not acknowledged yet. One tracker per channel: after a reconnect the
new channel starts again at tag 1, and the old channel's unacknowledged deliveries are
the broker's to redeliver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from bus.abc import Delivery, Port

from .._common import AckBatcher
from ._wire import decode

__all__ = ["AckTracker", "Ingress"]

ACK_TIMEOUT = 5.0
"""How long sending a batch of acks may take, even while ingress is being cancelled."""

Call = Callable[..., Awaitable[Any]]


class Ingress:
    """The consuming side of one bridge: deliveries in, acks out."""

    def __init__(self, call: Call, prefetch: int, *, acknowledge: bool = True) -> None:
        self._call = call
        self._acknowledge = acknowledge
        self._prefetch = prefetch
        self._client: Any = None
        self.trackers: dict[Any, AckTracker] = {}
        """One :class:`AckTracker` per channel deliveries came on."""
        self._acks = AckBatcher(self.flush)

    async def run(self, client: Any, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume (the client consumes already) until cancelled."""
        self._client = client
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._acks.run)
            task_status.started()
            while True:
                for channel, message in await self._call(client.take, self._prefetch):
                    if channel.is_closed:
                        continue  # its channel is gone: the broker redelivers it
                    await self._deliver(port, channel, message)

    async def _deliver(self, port: Port, channel: Any, message: Any) -> None:
        tracker = self.trackers.get(channel)
        if tracker is None:
            tracker = self.trackers[channel] = AckTracker()
        tag: int = message.delivery_tag
        incoming = decode(
            message.routing_key or "", message.headers, message.message_id,
            message.timestamp, message.app_id,
        )
        tracker.delivered(tag)
        if message.redelivered:
            port.count_redelivered()
        on_done = partial(self.on_done, tracker, tag)
        kwargs: dict[str, Any] = {
            "id": incoming.id, "key": incoming.key, "headers": incoming.headers,
            "time": incoming.time, "attempt": incoming.attempt, "source": incoming.source,
        }
        try:
            port.deliver_nowait(incoming.topic, message.body, on_done=on_done, **kwargs)
        except trio.WouldBlock:
            # A mailbox is full: wait here. The broker stops pushing once `prefetch`
            # deliveries are unacknowledged, so this is where memory stays bounded.
            await port.deliver(incoming.topic, message.body, on_done=on_done, **kwargs)

    def on_done(self, tracker: AckTracker, tag: int, delivery: Delivery | None) -> None:
        """The bus finished delivery *tag* of *tracker*'s channel: ack it soon (never
        when the bridge peeks: its deliveries go back to the queue when it closes)."""
        if not self._acknowledge:
            return
        tracker.done(tag)
        self._acks.wanted()

    async def flush(self) -> None:
        """Acknowledge everything done so far, every channel in one crossing."""
        frames: list[tuple[Any, list[tuple[int, bool]]]] = []
        for channel, tracker in list(self.trackers.items()):
            if channel.is_closed:
                del self.trackers[channel]  # the broker requeued what it held
                continue
            acks = tracker.take() if tracker.pending else []
            if acks:  # empty when the done tags were acknowledged already or unknown
                frames.append((channel, acks))
        if frames:
            # Shielded: the frames are taken from the trackers, so a cancelled crossing
            # would leave done messages unacknowledged (redelivered, a needless duplicate).
            with trio.move_on_after(ACK_TIMEOUT, shield=True):
                await self._call(self._client.ack, frames)


class AckTracker:
    """Delivered-but-unacknowledged tags of one channel, and the done ones among them."""

    __slots__ = ("_done", "_unacked")

    def __init__(self) -> None:
        self._unacked: set[int] = set()
        self._done: list[int] = []

    def delivered(self, tag: int) -> None:
        """The broker delivered *tag*; it must be acknowledged once it is done."""
        self._unacked.add(tag)

    def done(self, tag: int) -> None:
        """*tag* is done: acknowledge it at the next :meth:`take`."""
        self._done.append(tag)

    @property
    def pending(self) -> bool:
        """Some done tags wait for :meth:`take`."""
        return bool(self._done)

    @property
    def unacked(self) -> int:
        """Delivered tags not acknowledged yet (done or not)."""
        return len(self._unacked)

    def take(self) -> list[tuple[int, bool]]:
        """The ``(delivery_tag, multiple)`` frames that acknowledge every done tag once."""
        if not self._done:
            return []
        done = set(self._done)
        self._done.clear()
        unacked = self._unacked
        undone = unacked - done
        lowest_undone = min(undone) if undone else None
        below: int | None = None
        singles: list[int] = []
        for tag in done:
            if tag not in unacked:
                continue  # not ours to ack (unknown or acked already): never ack twice
            if lowest_undone is None or tag < lowest_undone:
                if below is None or tag > below:
                    below = tag
            else:
                singles.append(tag)
        self._unacked = undone
        frames: list[tuple[int, bool]] = []
        if below is not None:
            frames.append((below, True))
        singles.sort()
        frames.extend((tag, False) for tag in singles)
        return frames
