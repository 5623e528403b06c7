"""Closing a broker client: each step bounded, failures logged, never raised.

A bridge closes in a shielded scope (``Bridge.aclose``) and a client whose broker just
went away can wait for ever for a reply (a producer flushing to a restarted broker, a
close handshake with a dead server). :func:`close_step` gives every step a bound; after
it the runtime cancels what is left of the client's work. What was not acknowledged is
redelivered by the broker or retried by the bus, so nothing is lost by giving up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import trio

from bus.abc import get_logger, redact

__all__ = ["close_step"]

log = get_logger("bus.bridges")


async def close_step(
    work: Awaitable[Any], *, bridge: str, step: str, within: float,
    secrets: Sequence[str | None] = (),
) -> bool:
    """Await *work* for at most *within* seconds; True if it finished without error.

    A failure is logged with *secrets* (passwords the client holds) masked."""
    with trio.move_on_after(within) as scope:
        try:
            await work
        except Exception as exc:
            log.warning("bridge.close_step_failed", bridge=bridge, step=step,
                        error=redact(repr(exc), *secrets))
            return False
    if scope.cancelled_caught:
        log.warning("bridge.close_step_timeout", bridge=bridge, step=step, seconds=within)
        return False
    return True
