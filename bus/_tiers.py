"""Retry tiers: retries that do not hold the message's partition (``retry_tiers=``).

Without tiers, a subscriber retries a failing message in place, with backoff, on its own
lane: nothing behind it on that lane moves meanwhile, and a bridge cannot acknowledge
anything after it (a Kafka partition's commit is contiguous). That is the *blocking*
mode, the default, and the one to keep for keys that need strict order.

With ``bus.subscribe(topic, handler, retry_tiers=[5, 60, 600])``, once the in-place
budget (``retry=``) is spent the message is re-published as a new bus message on a tier
topic, ``<topic>.retry.5s`` (:func:`tier_topic`), and the subscriber moves on. Its
headers say which tier (:data:`H_RETRY_TIER`), the attempt (the envelope's ``attempt``,
also in :data:`H_RETRY_ATTEMPT`), when it is due (:data:`H_RETRY_DUE`, wall-clock
seconds since the epoch, so a copy that crossed a broker and a restart still knows), the
original topic, the subscriber to give it back to (:data:`H_RETRY_SUBSCRIBER`) and the
error. The failed message is done (a bridge acknowledges it) only once the copy is: when
the tier topic is exported, once its broker confirmed it (``Delivery.follow``, the same
rule as a dead letter's); a copy that cannot be delivered keeps it unacknowledged.

Each tier has one consumer per subscriber (a subscription of its own, named
``<subscriber>.retry.<tier>``, one lane): a tier has one delay, so its messages come due
in the order they came in, and its consumer waits for the head only. When it is due, the
consumer hands it to the subscriber's handler (one attempt); if that fails, the message
goes on to the next tier, and after the last one to the dead-letter topic. If the tier
topic is exported to a broker (``bus.attach(..., export=[...])`` matching it), the local
copy is left to the broker: the consumer takes the copy when it comes back through the
bridge's import, so the wait holds the tier's partition, never the work topic's. Export
and import the tier topics together (e.g. ``export=["orders.retry.*"]`` and
``import_=["orders", "orders.retry.*"]``); an exported tier that is not imported back is
never retried.

What it costs: per-key order. A retried message's later messages with the same key pass
it (they are handled while it waits in a tier). Keys that need strict order use the
blocking mode (no ``retry_tiers``). A tier consumer handles one message at a time.

This module is the application of the bus's public API (``subscribe``, ``route``,
``topic``, ``subscriptions``); the worker calls :meth:`Tiers.escalate` where it would
dead-letter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from ._envelope import (
    H_ERROR,
    H_ERROR_TYPE,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    Envelope,
)
from ._errors import ConfigurationError
from ._log import get_logger
from ._routing import is_pattern

if TYPE_CHECKING:
    from ._actor import Subscription
    from ._bus import Bus
    from ._worker import Worker

__all__ = [
    "H_RETRY_ATTEMPT",
    "H_RETRY_DUE",
    "H_RETRY_ORIGIN",
    "H_RETRY_SUBSCRIBER",
    "H_RETRY_TIER",
    "Tiers",
    "check_tiers",
    "tier_topic",
]

log = get_logger("bus")
_replace = msgspec.structs.replace

H_RETRY_TIER = "x-bus-retry-tier"
"""On a retry copy: its tier, 1 for the first."""
H_RETRY_ATTEMPT = "x-bus-retry-attempt"
"""On a retry copy: the attempts made so far."""
H_RETRY_DUE = "x-bus-retry-due"
"""On a retry copy: when it is due, wall-clock seconds since the epoch."""
H_RETRY_SUBSCRIBER = "x-bus-retry-subscriber"
"""On a retry copy: the subscriber whose handler gets it back."""
H_RETRY_ORIGIN = "x-bus-retry-origin"
"""On a retry copy of a message that came in through a bridge: that bridge (what
``x-bus-origin`` said). The copy is a new message of the bus's, so it is exported even to
the broker it came from (``x-bus-origin`` would make the echo guard skip it)."""


def check_tiers(tiers: Any) -> tuple[float, ...]:
    """The tier delays as a tuple, or :class:`ConfigurationError` naming the problem."""
    if isinstance(tiers, str | bytes) or not isinstance(tiers, Sequence) or not tiers:
        raise ConfigurationError(
            f"retry_tiers must be a non-empty list of delays in seconds, e.g. [5, 60, 600], "
            f"got {tiers!r}"
        )
    for delay in tiers:
        if (
            isinstance(delay, bool) or not isinstance(delay, int | float)
            or not math.isfinite(delay) or delay < 0.001
        ):
            raise ConfigurationError(
                f"each retry tier is a delay in seconds >= 0.001, got {delay!r} in {tiers!r}"
            )
    names = [_label(d) for d in tiers]
    if len(set(names)) != len(names):
        raise ConfigurationError(
            f"retry_tiers {tiers!r} repeat a delay; each tier needs its own (a tier is "
            f"one topic with one delay)"
        )
    return tuple(float(d) for d in tiers)


def _label(delay: float) -> str:
    """``5`` -> ``5s``, ``0.25`` -> ``250ms`` (topic segments cannot hold a dot)."""
    if float(delay).is_integer():
        return f"{int(delay)}s"
    return f"{round(delay * 1000)}ms"


N = TypeVar("N", int, float)


def _number(text: str | None, default: N) -> N:
    """A header's number (of *default*'s type); *default* if absent or not a number (a
    foreign message's header is not trusted to crash the worker)."""
    if text is None:
        return default
    try:
        value = type(default)(text)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def tier_topic(topic: str, delay: float) -> str:
    """The topic of *topic*'s retry tier of *delay* seconds: ``orders.retry.5s``."""
    return f"{topic}.retry.{_label(delay)}"


class Tiers:
    """One subscriber's retry tiers: where its failed messages go, and their consumers."""

    def __init__(self, bus: Bus, sub: Subscription, delays: tuple[float, ...]) -> None:
        pattern = sub.pattern
        if is_pattern(pattern) or sub.batch is not None:
            raise ConfigurationError(
                f"retry_tiers need a subscription to one topic, handling one message at a "
                f"time; {pattern!r}{' with batch=' if sub.batch is not None else ''} is not: "
                f"subscribe to each topic by name (tier topics are per topic)"
            )
        spec = bus.declared(pattern)
        if spec is None:
            raise ConfigurationError(
                f"declare topic {pattern!r} (bus.topic(name, type)) before subscribing with "
                f"retry_tiers: its tier topics carry the same type"
            )
        self.bus = bus
        self.worker = sub
        self.delays = delays
        self.topics = [tier_topic(pattern, d) for d in delays]
        for name in self.topics:
            bus.topic(name, spec.type)
        self.consumers = [
            bus.subscribe(name, self._consume, name=f"{sub.name}.retry.{_label(d)}")
            for name, d in zip(self.topics, delays, strict=True)
        ]
        self.escalated = 0
        """Messages sent on to a tier."""

    async def escalate(
        self, worker: Worker, env: Envelope[Any], exc: BaseException, attempts: int
    ) -> None:
        """*env* failed for good at its current step: on to the next tier, or after the
        last one to the dead-letter topic (``Worker._dead_letter``). *env*'s delivery is
        settled either way."""
        tier = _number(env.headers.get(H_RETRY_TIER), 0)
        if tier >= len(self.delays):
            await worker._dead_letter(env, exc, env.attempt)
            return
        delay = self.delays[tier]
        headers = dict(env.headers)
        origin = headers.pop(H_ORIGIN, None)
        if origin is not None:
            headers[H_RETRY_ORIGIN] = origin
        headers[H_RETRY_TIER] = str(tier + 1)
        headers[H_RETRY_ATTEMPT] = str(env.attempt)
        headers[H_RETRY_DUE] = repr(time.time() + delay)
        headers[H_RETRY_SUBSCRIBER] = worker.name
        headers[H_ORIGINAL_TOPIC] = env.topic
        headers[H_ERROR] = str(exc) or repr(exc)
        headers[H_ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        delivery = env.delivery
        copy = _replace(
            env, id=self.bus.new_id(), topic=self.topics[tier], headers=headers,
            delivery=None if delivery is None else delivery.follow(carry_failures=True),
        )
        self.escalated += 1
        log.info(
            "message.retry_tier", **worker.log_context, id=env.id, topic=env.topic,
            key=env.key, tier=tier + 1, delay=delay, attempts=attempts, copy=copy.id,
            error=repr(exc),
        )
        await self.bus.route(copy)
        if delivery is not None:
            delivery.release()  # done once its copy is (follow)

    async def _consume(self, env: Envelope[Any]) -> None:
        """A tier consumer's handler: wait until *env* is due, then give it back."""
        headers = env.headers
        if headers.get(H_RETRY_SUBSCRIBER) != self.worker.name:
            return  # another subscriber's retry on the same topic
        if H_ORIGIN not in headers and self._exported(env.topic):
            return  # the broker carries it; it comes back through the bridge's import
        wait = _number(headers.get(H_RETRY_DUE), 0.0) - time.time()
        if wait > 0:
            await trio.sleep(wait)  # the head of a one-delay FIFO: the earliest due
        delivery = env.delivery
        back = _replace(
            env, topic=headers.get(H_ORIGINAL_TOPIC, self.worker.pattern),
            # (a broker may not carry the envelope's attempt: the header says it)
            attempt=_number(headers.get(H_RETRY_ATTEMPT), env.attempt) + 1,
            # settled by the handler's outcome below; this consumer's hold on *env* is
            # released when this returns (its worker), once that one is
            delivery=None if delivery is None else delivery.follow(carry_failures=True),
        )
        await self.worker.handle_from_tier(back)

    def _exported(self, topic: str) -> bool:
        return any(sub.skip_origin is not None for sub in self.bus.subscriptions(topic))
