"""What the Redis Streams adapter does with an entry it cannot handle: the bus's rule.

Two limits, as on the other backends:

- **the callback raises**: it is tried again with the subscription's
  :class:`~bus.RetryPolicy` (default: one attempt), waiting its backoff in between; after
  the last attempt the entry goes to the dead-letter stream with the reason;
- **Redis delivered it too often**: every ``XREADGROUP`` of a pending entry and every
  ``XAUTOCLAIM`` adds one to its delivery count (``XPENDING``). An entry that stays
  pending because each consumer that takes it dies (a poison entry that crashes the
  process) or stops holding it comes back again and again; once its count exceeds
  ``max_deliveries`` it is dead-lettered without calling the callback.

A dead letter is the entry's own fields, unchanged, plus the bus's dead-letter headers
(``x-bus-error``, ``x-bus-error-type``, ``x-bus-original-topic``,
``x-bus-failed-subscriber``, ``x-bus-attempts``) as ``h:<name>`` fields; it is added
(``XADD``) and the entry acknowledged (``XACK``) in one ``MULTI`` transaction, so an
entry is never acknowledged without its dead letter, nor dead-lettered and left pending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bus import RetryPolicy
from bus.abc import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_ORIGINAL_TOPIC,
    get_logger,
)

__all__ = ["TooManyDeliveries", "dead_letter_fields", "handle_with_retries"]

log = get_logger("bus.redis")

_HEADER = "h:"
_MAX_ERROR_CHARS = 1000  # as the bus's dead letters


class TooManyDeliveries(Exception):
    """The reason of a dead letter for an entry Redis delivered more than
    ``max_deliveries`` times without it being acknowledged (never raised)."""


async def handle_with_retries(
    call: Callable[[], Awaitable[Any]], policy: RetryPolicy, *, topic: str, group: str,
    entry: str,
) -> tuple[Exception, int] | None:
    """Await ``call()`` until it returns or *policy* gives up; None if it returned, else
    the last error and the number of attempts made."""
    attempt = 1
    while True:
        try:
            await call()
            return None
        except Exception as exc:
            if policy.gives_up_after(attempt):
                return exc, attempt
            delay = policy.delay(attempt)
            log.warning("redis_streams.retry", topic=topic, group=group, entry=entry,
                        attempt=attempt, delay=delay, error=repr(exc))
        await trio.sleep(delay)
        attempt += 1


def dead_letter_fields(
    fields: dict[bytes, bytes], *, error: BaseException, topic: str, subscriber: str,
    attempts: int,
) -> dict[bytes, bytes]:
    """The dead letter's fields: *fields* as they were, with the reason as headers."""
    reasons = {
        H_ERROR: str(error)[:_MAX_ERROR_CHARS],
        H_ERROR_TYPE: f"{type(error).__module__}.{type(error).__qualname__}",
        H_ORIGINAL_TOPIC: topic,
        H_FAILED_SUBSCRIBER: subscriber,
        H_ATTEMPTS: str(attempts),
    }
    out = dict(fields)  # a header of an earlier dead-lettering is replaced
    out.update({(_HEADER + name).encode(): value.encode() for name, value in reasons.items()})
    return out
