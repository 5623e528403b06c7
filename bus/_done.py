"""Done-tracking: knowing when one message has been dealt with by everyone who got it.

A :class:`Delivery` rides on an envelope (``Envelope.delivery``) only when somebody asked
to track it: a bridge's ingress (to acknowledge the broker only then) or a publisher
calling ``publish(..., confirm=True)``. Untracked envelopes carry ``None`` and cost one
attribute test per handled message.

Counting: the publish holds one reference while it routes; every mailbox that accepts
the envelope holds one more; a subscriber that handles it, dead-letters it, or skips it as
a duplicate releases its hold, and so does a bridge export once its broker confirmed.
When the count reaches zero the message is *done* and the callbacks run, once, in the
order they were added. A message dropped by an overflow policy is done for that
subscriber too, with the drop recorded. A message still queued when the bus closes is
never done: a bridge does not acknowledge it, so the broker delivers it again.

A dead-lettered message is done once its dead letter is (:meth:`Delivery.follow`). If
the dead letter could not be delivered in turn (its broker refused it, its handler
failed), the message is done with an ``undeliverable`` failure
(:attr:`Delivery.undeliverable`): a local ``publish(..., confirm=True)`` hears it as
:class:`~bus.NotDeliveredError`, and a bridge's port does not acknowledge it to its
broker, which delivers it again.

This module knows nothing of trio tasks except the :class:`trio.Event` a waiter parks on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import trio

__all__ = ["DEAD_LETTERED", "DROPPED", "UNDELIVERABLE", "Delivery", "Failure"]

DEAD_LETTERED = "dead_lettered"
"""A target gave up on the message; its dead letter carries it on."""
DROPPED = "dropped"
"""A mailbox's overflow policy dropped the message."""
UNDELIVERABLE = "undeliverable"
"""The message's dead letter could not be delivered either: nothing carries it on, so
whoever imported it must not acknowledge it (see :attr:`Delivery.undeliverable`)."""


class Failure(NamedTuple):
    """A target that did not handle the message: who, what happened, and why."""

    subscriber: str
    outcome: str
    """``"dead_lettered"``, ``"dropped"`` or ``"undeliverable"`` (the module's constants)."""
    reason: str


class Delivery:
    """The tracking record of one message. Made by the bus; read by bridges and waiters."""

    __slots__ = ("_callback", "_event", "_more", "_pending", "failures", "handled")

    def __init__(self, on_done: Callable[[Delivery], None] | None = None) -> None:
        self._pending = 1  # the publish's own hold, released when routing is over
        # one callback in a slot (the common case: a bridge's ack), more in a list
        self._callback = on_done
        self._more: list[Callable[[Delivery], None]] | None = None
        self._event: trio.Event | None = None
        self.handled = 0
        """Targets (subscribers, confirmed exports) that handled the message."""
        self.failures: list[Failure] = []
        """Targets that dead-lettered or dropped it."""

    @property
    def done(self) -> bool:
        """Every target that received the message handled, dead-lettered or dropped it."""
        return self._pending == 0

    @property
    def ok(self) -> bool:
        """Done, and no target dead-lettered or dropped it."""
        return self._pending == 0 and not self.failures

    @property
    def undeliverable(self) -> bool:
        """A dead letter of this message could not be delivered (its broker refused it,
        its handler failed): the message is nowhere but in the process's retained
        dead-letter log. A bridge's port then keeps it unacknowledged at its broker."""
        return any(f.outcome == UNDELIVERABLE for f in self.failures)

    def hold(self) -> None:
        """A target accepted the message: it is not done before that target releases."""
        self._pending += 1

    def release(self) -> None:
        """A target handled the message (or the publish finished routing it)."""
        self.handled += 1
        self._settle()

    def fail(self, subscriber: str, outcome: str, reason: str) -> None:
        """A target dead-lettered or dropped the message, or its dead letter could not be
        delivered (*outcome*, one of the module's constants); that releases its hold."""
        self.failures.append(Failure(subscriber, outcome, reason))
        self._settle()

    def routed(self) -> None:
        """The publish handed the message to every target: release the publish's hold."""
        self._settle()

    def follow(self, *, carry_failures: bool = False) -> Delivery:
        """A new tracking record for a message made from this one (its dead letter, its
        retry-tier copy): this message is not done before that one is, so a bridge
        acknowledges its broker only once the new one reached where it goes (a broker
        that exports it). If that one turns out undeliverable, so does this one; with
        *carry_failures* (a retry copy, which carries this very message on) every failure
        of the new one becomes this one's."""
        self._pending += 1
        return Delivery(self._carry_done if carry_failures else self._follower_done)

    def _follower_done(self, follower: Delivery) -> None:
        for failure in follower.failures:
            if failure.outcome == UNDELIVERABLE:
                self.failures.append(failure)
        self._settle()

    def _carry_done(self, follower: Delivery) -> None:
        self.failures.extend(follower.failures)
        self._settle()

    def _settle(self) -> None:
        self._pending -= 1
        if self._pending:
            return
        callback, more = self._callback, self._more
        self._callback = self._more = None  # no cycle through a callback outlives this
        if self._event is not None:
            self._event.set()
        if callback is not None:
            callback(self)
        for each in more or ():
            each(self)

    def add_done_callback(self, callback: Callable[[Delivery], None]) -> None:
        """Call *callback(delivery)* once when done (at once if it is done already)."""
        if not self._pending:
            callback(self)
        elif self._callback is None:
            self._callback = callback
        elif self._more is None:
            self._more = [callback]
        else:
            self._more.append(callback)

    async def wait(self) -> None:
        """Wait until the message is done."""
        if self._pending:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()

    def __repr__(self) -> str:
        state = "done" if self.done else f"pending={self._pending}"
        return f"<Delivery {state} handled={self.handled} failures={len(self.failures)}>"
