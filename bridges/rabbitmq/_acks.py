"""Which AMQP acknowledgements to send, given the deliveries that are done (sans-IO).

A channel numbers its deliveries 1, 2, 3... (the delivery tag). The bus finishes them out
of order (handlers run concurrently), and a message may be acknowledged only once it is
done. :class:`AckTracker` turns "these tags are done" into as few ``basic.ack`` frames as
possible, without ever acknowledging a tag that is not done or acknowledging one twice
(either closes the channel with PRECONDITION_FAILED):

- every done tag below the lowest tag that is still undone is covered by one
  ``basic.ack(tag, multiple=True)`` on the highest of them;
- done tags above an undone one are acknowledged one by one.

Memory is bounded by the channel's prefetch: the tracker only remembers tags that were
delivered and are not acknowledged yet. One tracker per channel: after a reconnect the
new channel starts again at tag 1, and the old channel's unacknowledged deliveries are
the broker's to redeliver. This module knows nothing of trio, asyncio or aio-pika.
"""

from __future__ import annotations

__all__ = ["AckTracker"]


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
