"""Draining: waiting until a bus has nothing left to do.

A bus is *quiet* when no publisher waits for room and every mailbox is empty with its
worker parked (no handler running or retrying). A worker going idle counts itself in
``BusState.idled`` and wakes :func:`drain` (``Lane.wait``); a blocked publisher counts in
``BusState.blocked_puts`` until it is admitted. ``open_bus`` drains before it closes,
bounded by its ``drain_timeout``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from ._mailbox import Lane
from ._state import BusState

__all__ = ["drain", "quiet"]


def quiet(state: BusState, lanes: Iterable[Lane]) -> bool:
    """No publisher blocked, every mailbox empty, every worker parked or stopped."""
    return state.blocked_puts == 0 and all(lane.idle for lane in lanes)


async def drain(state: BusState, lanes: Callable[[], Iterable[Lane]]) -> None:
    """Wait until the bus is quiet and stays so (``Bus.drain``; *lanes* lists them now)."""
    await trio.lowlevel.checkpoint()
    while True:
        while not quiet(state, lanes()):
            state.idle_waiters += 1
            try:
                await state.idle.park()
            finally:
                state.idle_waiters -= 1
            await trio.lowlevel.checkpoint()  # let woken publishers and workers move first
        # Quiet now; but a task the last handlers started (a publish handed to a task of
        # its own, the way out of a publish cycle, docs/design.md) may not have taken its
        # first step yet: it runs in this scheduling batch or the next. Look again after
        # both, and only if no worker went idle meanwhile (one that did had work: such a
        # cascade can be quiet at every other batch while messages still travel through
        # unstarted tasks).
        idled = state.idled
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        if state.idled == idled and quiet(state, lanes()):
            return
