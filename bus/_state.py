"""What every part of one bus shares: its flags, drain accounting and dead letters.

One :class:`BusState` per bus, made by ``Bus`` and handed to the parts that need it: the
subscriptions and their mailboxes (drain accounting, dead letters, tracing), the general
route (``closed``), the bridges' ports (``traced``). None of them holds the ``Bus``
itself, so none reaches into it: where the state needs another part (routing a dead
letter, failing a request, leaving the routing table), the bus gives it that part's
function when it is made (:meth:`BusState.connect`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ._done import DEAD_LETTERED, UNDELIVERABLE
from ._envelope import (
    H_DEAD_LETTER_ORIGIN,
    H_ERROR,
    H_FAILED_SUBSCRIBER,
    H_ORIGINAL_TOPIC,
    H_REPLY_TO,
    Envelope,
    dead_letter_headers,
)
from ._log import get_logger
from ._trace import Tracing, inherit

__all__ = ["BusState"]

log = get_logger("bus")


async def _unconnected(env: Envelope[Any]) -> None:  # pragma: no cover - connect() first
    raise RuntimeError("BusState.connect() was not called")


class BusState:
    """One bus's shared facts (see the module docstring)."""

    def __init__(
        self, name: str, *, dead_letter_topic: str, seed: int | None, tracing: Tracing | None
    ) -> None:
        self.name = name
        self.dead_letter_topic = dead_letter_topic
        self.random = random.Random(seed)
        """The bus's random source (retry jitter), seeded by ``open_bus(seed=)``."""
        self.tracing = tracing
        """OpenTelemetry spans, or None (``bus/_trace.py``)."""
        self.traced = tracing is not None
        """True once a traced message was seen (or tracing is on): from then on publishes
        inherit the handled message's trace context and workers set it (bus/_trace.py)."""
        self.closed = False
        """No publish, subscribe or import any more (set by the bus when it closes)."""
        self.blocked_puts = 0
        """Publishers waiting for room in a ``block`` mailbox (drain() waits for them)."""
        self.idle = trio.lowlevel.ParkingLot()
        self.idle_waiters = 0
        self.idled = 0
        """Times a worker went idle: parked on an empty mailbox or stopped on a closed
        one (drain() watches it)."""
        self.dead_letters_undeliverable = 0
        """Dead letters that could not be delivered in turn (logged as
        ``dead_letter.undeliverable``); their messages were not acknowledged upstream."""
        self._route: Callable[[Envelope[Any]], Awaitable[None]] = _unconnected
        self._request_failed: Callable[[Envelope[Any]], Awaitable[None]] = _unconnected
        self._unsubscribe: Callable[[Any], None] = lambda sub: None

    def connect(
        self,
        *,
        route: Callable[[Envelope[Any]], Awaitable[None]],
        request_failed: Callable[[Envelope[Any]], Awaitable[None]],
        unsubscribe: Callable[[Any], None],
    ) -> None:
        """Give the state the other parts' functions it calls (the bus does, once)."""
        self._route = route
        self._request_failed = request_failed
        self._unsubscribe = unsubscribe

    def publish_headers(
        self, topic: str, headers: dict[str, str] | None, count: int = 1
    ) -> dict[str, str]:
        """The headers of a publish on a bus that has seen trace context (or traces):
        a publish span's context with tracing on, else the handled message's context
        when the publisher gave none (``_trace.inherit``)."""
        self.traced = True
        if self.tracing is not None:
            return self.tracing.publish(self.name, topic, headers, count)
        return inherit(headers)

    async def dead_letter(self, env: Envelope[Any]) -> str:
        """Publish *env* (its error headers set) on the dead-letter topic, as a message of
        the bus's own (``dead_letter_headers``). A tracked message stays undone until its
        dead letter is done (exported, if a bridge exports the dead-letter topic), so its
        broker is not acknowledged before that.

        Returns the outcome for the failed message's :class:`Delivery`: ``dead_lettered``,
        or ``undeliverable`` when *env* was a dead letter already (its broker refused it,
        its handler failed): routing it again would go round forever, so it stays in the
        retained dead-letter log, and the message it came from is not acknowledged to the
        broker it came from, which delivers it again.
        """
        if H_REPLY_TO in env.headers:
            await self._request_failed(env)  # the requester raises now, not at its timeout
        if env.topic == self.dead_letter_topic:
            self.dead_letters_undeliverable += 1
            log.error(
                "dead_letter.undeliverable", id=env.id, key=env.key,
                original_topic=env.headers.get(H_ORIGINAL_TOPIC),
                origin=env.headers.get(H_DEAD_LETTER_ORIGIN),
                failed_subscriber=env.headers.get(H_FAILED_SUBSCRIBER),
                error=env.headers.get(H_ERROR),
                hint="its message is not acknowledged to the broker it came from, which "
                "delivers it again; a local publish(confirm=True) raises NotDeliveredError",
            )
            return UNDELIVERABLE
        headers = dict(env.headers)
        dead_letter_headers(headers, self.dead_letter_topic)
        delivery = None if env.delivery is None else env.delivery.follow()
        await self._route(msgspec.structs.replace(
            env, topic=self.dead_letter_topic, headers=headers, delivery=delivery
        ))
        return DEAD_LETTERED

    def unsubscribe(self, sub: Any) -> None:
        """*sub* (a :class:`~bus.Subscription`) closed: take it out of the routing table."""
        self._unsubscribe(sub)
