"""Middleware: the user's own code around publish and around handle, composed once.

A middleware is any object with one or more of these async methods (subclassing
:class:`Middleware` is optional; it only documents them)::

    async def publish(self, env, call_next) -> Envelope       # around bus.publish
    async def handle(self, env, call_next) -> None            # around a handler
    async def handle_batch(self, envs, call_next) -> results  # around a batch handler

``call_next(env)`` runs the rest of the chain with *env* (the same envelope, or a
``msgspec.structs.replace`` of it with another payload or more headers) and returns what
the rest returned. To refuse a message, raise: the error takes the normal failure path
(the publisher gets it; a handler's retries and dead letter apply). A publish hook that
neither calls ``call_next`` nor raises makes ``publish`` raise, rather than lose the
message; a handle hook that does not call it has handled the message itself (a filter).

Order: ``open_bus(middleware=[a, b])`` then ``subscribe(..., middleware=[c])`` runs
``a`` outermost, then ``b``, then ``c``, then the handler; a publish runs ``a`` then
``b`` then delivery. Each chain is composed here once, when the bus opens (publish) or
when a subscription is made (handle); with no middleware nothing here runs per message
and the bus's code paths are the ones it has without this module (the publish side is the
subclass in ``bus/_middleware_bus.py``, made only when some middleware has ``publish``).

What this module does not do: it never decides delivery, retries or dead letters; the
worker (``bus/_worker.py``) and the router (``bus/_route.py``) do, around the chain.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from ._envelope import Envelope
from ._errors import ConfigurationError

__all__ = [
    "HOOKS", "Middleware", "PublishChain", "check_middleware", "compose", "wrap_handler",
]

HOOKS = ("publish", "handle", "handle_batch")

Call = Callable[[Any], Awaitable[Any]]


class Middleware:
    """Optional base class of a middleware: define any of the hooks below (not defining
    one means "not involved"), each ``async``. See docs/middleware.md.

    - ``async def publish(self, env: Envelope, call_next) -> Envelope``: around
      ``bus.publish``, ``publish_batch`` (per message) and ``request`` (the request).
      Return ``await call_next(env)`` (or its result, after looking at it).
    - ``async def handle(self, env: Envelope, call_next) -> None``: around the handler
      of every subscription it applies to, each attempt (retries included).
    - ``async def handle_batch(self, envs: Sequence[Envelope], call_next) -> results``:
      around a ``batch=N`` subscription's handler; return what ``call_next`` returned.
      A middleware with ``handle`` and no ``handle_batch`` cannot be used on a batch
      subscription (``subscribe`` says so), so no hook is silently skipped.
    """

    __slots__ = ()


def _name(mw: Any) -> str:
    return type(mw).__qualname__


def check_middleware(middleware: Any, where: str) -> tuple[Any, ...]:
    """*middleware* as a tuple, each checked: an object with at least one hook, every hook
    an ``async def``. Raises :class:`ConfigurationError` naming the fault and the fix."""
    if middleware is None:
        return ()
    if isinstance(middleware, (str, bytes)) or not isinstance(middleware, Sequence):
        raise ConfigurationError(
            f"{where}(middleware=...) takes a list of middleware objects, got "
            f"{type(middleware).__qualname__}; wrap a single one in a list"
        )
    for mw in middleware:
        if isinstance(mw, type):
            raise ConfigurationError(
                f"{where}(middleware=...) got the class {mw.__qualname__}, not an instance: "
                f"pass {mw.__qualname__}()"
            )
        hooks = [hook for hook in HOOKS if getattr(mw, hook, None) is not None]
        if not hooks:
            raise ConfigurationError(
                f"{_name(mw)} is not a middleware: it has none of the async methods "
                f"{', '.join(HOOKS)} (see docs/middleware.md)"
            )
        for hook in hooks:
            if not inspect.iscoroutinefunction(getattr(mw, hook)):
                raise ConfigurationError(
                    f"{_name(mw)}.{hook} must be an async def taking (envelope, call_next)"
                )
    return tuple(middleware)


def compose(middleware: Sequence[Any], hook: str, last: Call) -> Call:
    """The chain of *hook* over *middleware* (first outermost) ending in *last*; *last*
    itself when none of them has *hook*."""
    call = last
    for mw in reversed(middleware):
        method = getattr(mw, hook, None)
        if method is not None:
            call = _link(method, call)
    return call


def _link(method: Callable[[Any, Call], Awaitable[Any]], call_next: Call) -> Call:
    async def call(arg: Any) -> Any:
        return await method(arg, call_next)

    call.__qualname__ = f"{getattr(method, '__qualname__', 'middleware')}->next"
    return call


def wrap_handler(
    middleware: Sequence[Any], fn: Callable[..., Any], is_async: bool, *,
    batch: bool, subscriber: str,
) -> Call | None:
    """The handler *fn* wrapped in the handle chain of *middleware* (an async callable),
    or None when none of them handles (the subscription keeps *fn* as it is)."""
    hook = "handle_batch" if batch else "handle"
    if batch:
        for mw in middleware:
            if getattr(mw, "handle", None) is not None and getattr(mw, hook, None) is None:
                raise ConfigurationError(
                    f"middleware {_name(mw)} has handle() but no handle_batch(), so it cannot "
                    f"wrap batch subscriber {subscriber!r}: give it an async "
                    f"handle_batch(envs, call_next), or subscribe without batch="
                )
    if not any(getattr(mw, hook, None) is not None for mw in middleware):
        return None
    if is_async:
        last: Call = fn
    else:
        async def last(arg: Any) -> Any:
            return fn(arg)
    return compose(middleware, hook, last)


class PublishChain:
    """The publish hooks of some middleware around *last* (the delivery), first outermost.

    Each run gets its own record of what was delivered, so ``bus.publish`` returns the
    envelope that went out whatever the hooks return, and a hook that neither called
    ``call_next`` nor raised is caught: the publisher gets :class:`ConfigurationError`
    rather than a message silently not sent.
    """

    __slots__ = ("hooks", "last", "owners")

    def __init__(self, middleware: Sequence[Any], last: Call) -> None:
        self.owners = [mw for mw in middleware if getattr(mw, "publish", None) is not None]
        self.hooks = [mw.publish for mw in self.owners]
        self.last = last

    async def run(self, env: Envelope[Any]) -> Envelope[Any]:
        sent: list[Envelope[Any]] = []
        await self._step(0, sent, env)
        if not sent:
            raise ConfigurationError(
                f"message on {env.topic!r} not published: a publish middleware "
                f"({', '.join(_name(mw) for mw in self.owners)}) returned without calling "
                f"call_next; to refuse a message, raise an error instead"
            )
        return sent[0]

    async def _step(self, i: int, sent: list[Envelope[Any]], env: Any) -> Envelope[Any]:
        if not isinstance(env, Envelope):  # what hook i - 1 passed on (run's is one)
            raise ConfigurationError(
                f"publish middleware {_name(self.owners[i - 1])} passed "
                f"{type(env).__qualname__} to call_next; pass an Envelope "
                f"(msgspec.structs.replace(env, ...) makes a changed one)"
            )
        if i == len(self.hooks):
            out: Envelope[Any] = await self.last(env)
            sent.append(out)
            return out
        result: Envelope[Any] = await self.hooks[i](env, partial(self._step, i + 1, sent))
        return result
