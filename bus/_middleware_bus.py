"""The bus ``open_bus`` makes when some middleware has a ``publish`` hook.

:class:`MiddlewareBus` is :class:`~bus.Bus` with its publishing entry points replaced by
the publish chain (``bus/_middleware.py``): the envelope is built and checked as
``Bus.publish`` does, goes through the hooks, and the one they pass on is checked again
(a hook may change the payload, key, headers or topic) and delivered through the
general route. A bus without publish middleware is a plain :class:`Bus`, whose inlined
fast paths this class never touches: that is how "no middleware" costs nothing.

- ``publish_batch``: every payload is checked first, then each goes through the chain in
  turn (no one-step batch: a hook sees one envelope at a time).
- ``publish_nowait`` is synchronous and cannot await a hook: it raises
  :class:`ConfigurationError` (``await publish`` instead), rather than skip them.
- ``request``: the request message goes through the chain (as ``await publish``).
- Not seen by publish hooks: ``bus.reply`` (an answer within a request's exchange, not a
  publish), dead letters, a bridge's imports and ``bus.route`` (an envelope made
  elsewhere, routed as it is). Handle hooks see all of these where they are handled.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from typing import Any, NoReturn

import msgspec
import trio

from ._bus import Bus
from ._delay import due_time
from ._done import Delivery
from ._envelope import Envelope, check_headers, describe
from ._errors import BusClosedError, ConfigurationError, PayloadTypeError
from ._middleware import PublishChain
from ._route import confirmed
from ._trace import TRACEPARENT

__all__ = ["MiddlewareBus"]


class MiddlewareBus(Bus):
    """A :class:`Bus` whose publishes run through publish middleware (module docstring)."""

    def __init__(self, *, middleware: tuple[Any, ...], **options: Any) -> None:
        super().__init__(**options)
        self.middleware = middleware
        self._chain = PublishChain(self.middleware, self._send)

    async def publish(
        self, topic: str, payload: Any, delay: float | None = None,
        not_before: float | None = None, *, key: str | None = None,
        headers: dict[str, str] | None = None, confirm: bool = False,
    ) -> Envelope[Any]:
        if (delay or not_before) is None:
            return await self._chain.run(self._envelope(topic, payload, key, headers, confirm))
        # delayed: the hooks run now, on the publisher's call; what they pass on is held
        due = due_time(delay, not_before, trio.current_time())
        env = self._envelope(topic, payload, key, headers, confirm)
        return await PublishChain(self.middleware, partial(self._send_at, due)).run(env)

    async def publish_batch(
        self, topic: str, payloads: Iterable[Any], *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[Envelope[Any]]:
        payloads = list(payloads)
        self._check_open()
        spec = self._topics.spec(topic)
        for payload in payloads:
            if type(payload) is not spec.exact:
                spec.codec.check(topic, payload)
        return [
            await self.publish(topic, payload, key=key, headers=headers)
            for payload in payloads
        ]

    def publish_nowait(
        self, topic: str, payload: Any, *, key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope[Any]:
        names = ", ".join(type(mw).__qualname__ for mw in self._chain.owners)
        raise ConfigurationError(
            f"publish_nowait cannot run bus {self.name!r}'s publish middleware ({names}): "
            f"they are async; use 'await bus.publish(...)'"
        )

    def _publish_request_nowait(self, *args: Any, **kwargs: Any) -> NoReturn:
        # request() falls back to 'await publish' on WouldBlock: that runs the chain
        raise trio.WouldBlock

    def _check_open(self) -> None:
        if self._state.closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish inside its async with")

    def _envelope(
        self, topic: str, payload: Any, key: str | None, headers: dict[str, str] | None,
        confirm: bool,
    ) -> Envelope[Any]:
        """Bus.publish's prelude (checks, trace headers) as a function: here one call more
        per message is nothing beside the hooks."""
        self._check_open()
        state = self._state
        spec = self._topics.spec(topic)
        if type(payload) is not spec.exact:
            spec.codec.check(topic, payload)
        if key is not None and type(key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(key)}")
        if headers is None:
            headers = {} if not state.traced else state.publish_headers(topic, None)
        else:
            headers = check_headers(headers)
            if state.traced or TRACEPARENT in headers:
                headers = state.publish_headers(topic, headers)
        return Envelope(
            self._next_int(), topic, payload, key, headers, time.time(), 1, self.name,
            Delivery() if confirm else None,
        )

    async def _send_at(self, due: float, env: Envelope[Any]) -> Envelope[Any]:
        """The end of a delayed publish's chain: check what the hooks passed on, hold it
        until *due*, and with ``confirm=True`` wait until it is done."""
        env = self._checked(env)
        self._hold(due, env)
        if env.delivery is not None:
            await confirmed(env)
        return env

    async def _send(self, env: Envelope[Any]) -> Envelope[Any]:
        """The end of the chain: check what the hooks passed on, deliver it, and with
        ``confirm=True`` wait until it is done."""
        env = self._checked(env)
        await self._router.deliver(self._topics.spec(env.topic), env)
        if env.delivery is not None:
            await confirmed(env)
        return env

    def _checked(self, env: Envelope[Any]) -> Envelope[Any]:
        """What a hook passed on, checked as ``publish`` checks its arguments."""
        self._check_open()
        topic = env.topic
        spec = self._topics.spec(topic)
        if type(env.payload) is not spec.exact:
            spec.codec.check(topic, env.payload)
        if env.key is not None and type(env.key) is not str:
            raise PayloadTypeError(f"key must be a str or None, got {describe(env.key)}")
        headers = check_headers(env.headers)  # a hook may have added some
        if headers is not env.headers:
            env = msgspec.structs.replace(env, headers=headers)
        return env
