"""Fixtures of the bridges' ack-point tests: a handler that holds messages, a watch on fake
clients.

The ack-point tests (``<broker>/test_<broker>_acks.py``, ``test_ack_trackers.py``) run
every bridge's ingress against a fake client (no broker) and check where it
acknowledges: never before the bus is done with a message, never past a message still
in hand, never twice. Two tools make that checkable without timing:

- ``held``: a subscriber's handler that keeps each message (named by its ``str``
  payload) in hand until the test releases it;
- ``watch``: fake clients ``poke()`` it from whatever thread they run in (an asyncio loop
  in a thread, a trio worker thread) when they record something; ``await
  watch.until(check)`` waits for that, with a local bound.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from bus import Envelope

WITHIN = 10.0
"""Seconds a wait for something a fake client records may take before the test fails."""


class Held:
    """A handler that keeps every message in hand until :meth:`release` lets it go."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        """Payloads in the order the handler got them."""
        self.returned: list[str] = []
        """Payloads in the order the handler returned."""
        self._gates: dict[str, trio.Event] = {}
        self._moved = trio.Event()

    def _gate(self, name: str) -> trio.Event:
        return self._gates.setdefault(name, trio.Event())

    def _poke(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def __call__(self, env: Envelope[str]) -> None:
        self.entered.append(env.payload)
        self._poke()
        await self._gate(env.payload).wait()
        self.returned.append(env.payload)
        self._poke()

    def release(self, *names: str) -> None:
        for name in names:
            self._gate(name).set()

    async def wait_entered(self, *names: str) -> None:
        await self._until(lambda: set(names) <= set(self.entered), f"{names} in hand")

    async def wait_returned(self, *names: str) -> None:
        await self._until(lambda: set(names) <= set(self.returned), f"{names} handled")

    async def _until(self, check: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(WITHIN):
            while not check():
                await self._moved.wait()
            return
        raise AssertionError(f"not {what} within {WITHIN} s (entered {self.entered})")


class Watch:
    """Wakes a waiting test when a fake client records something, from any thread."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()

    def poke(self) -> None:
        try:
            self._token.run_sync_soon(self._wake)
        except trio.RunFinishedError:  # the test is over: nobody waits
            pass

    def _wake(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(WITHIN):
            while not check():
                await self._event.wait()
            return
        raise AssertionError(f"not {what} within {WITHIN} s")


@pytest.fixture
def held() -> Held:
    return Held()


@pytest.fixture
async def watch() -> Watch:
    return Watch()
