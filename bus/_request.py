"""Request/reply: a request waits for its answer, the bus's clock times it out.

``bus.request`` publishes a message with ``reply-to`` (this bus's private reply topic)
and ``correlation-id`` headers and parks until the answer comes: a reply (``bus.reply``,
straight to the waiting request when it is local, through a bridge otherwise), the error
headers of a subscriber that failed on the request for good (:meth:`Requests.failed`,
called as the request is dead-lettered), or its deadline. Deadlines are kept by one
system task per bus (:class:`_RequestClock`), not a cancel scope per request.

:class:`RequestReply` is a base class of ``Bus`` holding this job's methods and state,
not a part the bus delegates to: a ``request``/``reply`` that only passed the call on
cost 2% of a round trip (A/B: docs/performance.md, "One house"). It names what it needs
of the bus it is part of (its state, topics, ids, ``publish``) at the top of the class.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from ._codec import Codec, codec_for
from ._envelope import (
    H_ATTEMPTS,
    H_CORRELATION_ID,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    H_REPLY_TO,
    Envelope,
    check_headers,
    describe,
)
from ._errors import (
    BusClosedError,
    ConfigurationError,
    PayloadTypeError,
    RequestFailedError,
    RequestTimeoutError,
)
from ._log import get_logger
from ._state import BusState
from ._topics import Topics

__all__ = ["RequestReply"]

log = get_logger("bus")
_time = time.time
R = TypeVar("R")


class RequestReply:
    """Request/reply, a part of :class:`~bus.Bus` (see the module docstring)."""

    # what it needs of the bus it is part of (set by Bus.__init__)
    name: str
    reply_topic: str
    _state: BusState
    _topics: Topics
    _new_id: Callable[[], str]
    _next_int: Callable[[], Any]

    if TYPE_CHECKING:  # Bus's own, with these signatures
        async def publish(
            self, topic: str, payload: Any, *, key: str | None = None,
            headers: dict[str, str] | None = None, confirm: bool = False,
        ) -> Envelope[Any]: ...

        def publish_nowait(
            self, topic: str, payload: Any, *, key: str | None = None,
            headers: dict[str, str] | None = None,
        ) -> Envelope[Any]: ...

        # publish_nowait and publish, except on a bus with publish middleware, where
        # the first raises trio.WouldBlock (so a request takes the awaited way, through
        # the hooks) and the second is Bus.publish still (replies skip the hooks)
        _publish_request_nowait = publish_nowait
        _publish_plain = publish

    def _init_requests(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._clock = _RequestClock()
        self._replies = _ReplyTarget(self._pending)
        """The routing table's target for :attr:`reply_topic` (replies via a bridge)."""

    @overload
    async def request(
        self, topic: str, payload: Any, *, timeout: float, reply_type: type[R],  # noqa: ASYNC109
        key: str | None = None, headers: dict[str, str] | None = None,
    ) -> Envelope[R]: ...
    @overload
    async def request(
        self, topic: str, payload: Any, *, timeout: float, reply_type: None = None,  # noqa: ASYNC109
        key: str | None = None, headers: dict[str, str] | None = None,
    ) -> Envelope[Any]: ...

    async def request(
        self, topic: str, payload: Any, *, timeout: float, reply_type: Any = None,  # noqa: ASYNC109
        key: str | None = None, headers: dict[str, str] | None = None,
    ) -> Envelope[Any]:
        """Publish a request and wait for the reply envelope.

        *reply_type* declares the reply's payload type: a replier on this bus gets
        :class:`PayloadTypeError` from ``bus.reply`` when it answers with anything else,
        and a reply of another type arriving through a bridge raises it here. Raises
        :class:`RequestFailedError` when a subscriber handling the request failed on its
        last attempt (it was dead-lettered: no reply will come), and
        :class:`RequestTimeoutError` when no answer arrives within *timeout* seconds
        (trio's clock). The first answer wins.
        """
        if not timeout > 0 or math.isinf(timeout):
            raise ConfigurationError(f"timeout must be a finite number > 0, got {timeout!r}")
        if self._state.closed:
            raise BusClosedError(
                f"bus {self.name!r} is closed; request inside its async with"
            )
        codec = None if reply_type is None else codec_for(reply_type)
        correlation = self._new_id()
        hdrs = {} if headers is None else dict(headers)
        hdrs[H_REPLY_TO] = self.reply_topic
        hdrs[H_CORRELATION_ID] = correlation
        deadline = trio.current_time() + timeout
        pending = self._pending[correlation] = _Pending(topic, codec, deadline)
        try:
            # No cancel scope per request (entering and leaving one was a third of a
            # round trip): the bus's request clock wakes this task at its deadline.
            self._clock.add(pending, timeout, len(self._pending))
            try:
                self._publish_request_nowait(topic, payload, key=key, headers=hdrs)
            except trio.WouldBlock:  # a full mailbox: wait for room, within the timeout
                with trio.move_on_at(deadline):
                    await self.publish(topic, payload, key=key, headers=hdrs)
            await pending.wait()
        finally:
            pending.finished = True
            del self._pending[correlation]
        reply = pending.reply
        if reply is None:
            raise RequestTimeoutError(
                f"no reply to request on {topic!r} within {timeout}s; is a subscriber "
                f"calling bus.reply(env, ...) for it?"
            )
        if H_ERROR_TYPE in reply.headers:
            raise _request_failed_error(topic, reply.headers)
        if codec is not None:
            _check_reply(codec, topic, reply.payload)
        return reply

    async def reply(
        self, request: Envelope[Any], payload: Any, *, headers: dict[str, str] | None = None
    ) -> None:
        """Answer *request* (an envelope published by :meth:`request`).

        Raises :class:`PayloadTypeError` if the request declared a ``reply_type`` that
        *payload* is not (checked here when the requester is on this bus).
        """
        reply_to = request.headers.get(H_REPLY_TO)
        correlation = request.headers.get(H_CORRELATION_ID)
        if reply_to is None or correlation is None:
            raise ConfigurationError(
                f"message {request.id} on {request.topic!r} is not a request: it has no "
                f"{H_REPLY_TO!r}/{H_CORRELATION_ID!r} headers"
            )
        hdrs = dict(headers or {})
        hdrs[H_CORRELATION_ID] = correlation
        if reply_to == self.reply_topic:
            pending = self._pending.get(correlation)
            if pending is not None and pending.codec is not None:
                _check_reply(pending.codec, pending.topic, payload)
            if headers is not None:
                check_headers(headers)
            self._replies.route_offer(self._reply_envelope(reply_to, payload, request.key, hdrs))
            return
        # the requester is another process's bus: the reply travels through a bridge
        if reply_to not in self._topics.specs:
            self._topics.declare(reply_to, object, None)
        await self._publish_plain(reply_to, payload, key=request.key, headers=hdrs)

    def _reply_envelope(
        self, reply_to: str, payload: Any, key: str | None, headers: dict[str, str]
    ) -> Envelope[Any]:
        return Envelope(self._next_int(), reply_to, payload, key, headers, _time(), 1, self.name)

    async def _request_failed(self, dead: Envelope[Any]) -> None:
        """Tell the requester that *dead* (a request about to be dead-lettered, with the
        error headers) will get no reply."""
        reply_to = dead.headers[H_REPLY_TO]
        hdrs = {
            name: dead.headers[name]
            for name in (
                H_CORRELATION_ID, H_ERROR, H_ERROR_TYPE, H_FAILED_SUBSCRIBER, H_ATTEMPTS,
            )
            if name in dead.headers
        }
        hdrs[H_ORIGINAL_TOPIC] = dead.topic
        if reply_to == self.reply_topic:
            self._replies.route_offer(self._reply_envelope(reply_to, None, dead.key, hdrs))
        elif not self._state.closed:
            if reply_to not in self._topics.specs:
                self._topics.declare(reply_to, object, None)
            await self._publish_plain(reply_to, None, key=dead.key, headers=hdrs)


class _Pending:
    """A request waiting for its answer: a reply, or the error headers of a failure."""

    __slots__ = ("codec", "deadline", "finished", "reply", "task", "topic")

    def __init__(self, topic: str, codec: Codec[Any] | None, deadline: float) -> None:
        self.topic = topic
        self.codec = codec
        self.deadline = deadline
        self.reply: Envelope[Any] | None = None
        self.finished = False
        """Answered, timed out or abandoned: the clock forgets it, a late reply is unmatched."""
        self.task: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Park until :meth:`answer` or :meth:`expire` (at once if one happened already)."""
        if not self.finished:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        self.finished = True
        return trio.lowlevel.Abort.SUCCEEDED

    def answer(self, reply: Envelope[Any]) -> None:
        self.reply = reply
        self._wake()

    def expire(self) -> None:
        self._wake()

    def _wake(self) -> None:
        self.finished = True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)


class _RequestClock:
    """Times out a bus's requests: one system task sleeping until the earliest deadline.

    Requests are queued per timeout value, so each queue is in deadline order (a deadline
    is the request's start plus its timeout); answered ones are dropped from the front as
    new requests arrive, or all at once when a queue holds more than twice the waiting
    requests. The task wakes at the earliest deadline it knows of (earlier is harmless: it
    looks and sleeps again), wakes the requests whose time is up, and ends once the bus is
    closed and no request waits. A system task, so a request still waiting when its bus
    closes (from a task outside the bus's block) still times out.
    """

    __slots__ = ("closing", "queues", "running", "scope", "wake_at")

    def __init__(self) -> None:
        self.queues: dict[float, deque[_Pending]] = {}
        self.scope: trio.CancelScope | None = None
        self.wake_at = math.inf
        self.running = False
        self.closing = False

    def add(self, pending: _Pending, timeout: float, waiting: int) -> None:
        queue = self.queues.get(timeout)
        if queue is None:
            queue = self.queues[timeout] = deque()
        while queue and queue[0].finished:
            queue.popleft()
        if len(queue) > 2 * waiting + 64:  # one slow request holds many answered behind it
            queue = self.queues[timeout] = deque(p for p in queue if not p.finished)
        queue.append(pending)
        if pending.deadline < self.wake_at:
            self.wake_at = pending.deadline
            if self.scope is not None:
                self.scope.deadline = pending.deadline
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="bus.request_clock")

    def close(self) -> None:
        """The bus closed: end the task once no request waits (wake it to look now)."""
        self.closing = True
        if self.scope is not None:
            self.scope.cancel()

    async def _run(self) -> None:
        try:
            while True:
                with trio.CancelScope(deadline=self.wake_at) as scope:
                    self.scope = scope
                    await trio.sleep_forever()
                self.scope = None
                if not self._expire(trio.current_time()) and self.closing:
                    return
        finally:
            self.running = False
            self.scope = None

    def _expire(self, now: float) -> bool:
        """Wake the requests whose deadline passed; True if some are still waiting."""
        wake_at = math.inf
        for timeout, queue in list(self.queues.items()):
            while queue:
                first = queue[0]
                if not first.finished and first.deadline > now:
                    break
                queue.popleft()
                if not first.finished:
                    first.expire()
            if queue:
                wake_at = min(wake_at, queue[0].deadline)
            else:
                del self.queues[timeout]
        self.wake_at = wake_at
        return wake_at != math.inf


class _ReplyTarget:
    """Routes replies straight to the waiting ``request`` call (no mailbox)."""

    careful = False

    def __init__(self, pending: dict[str, _Pending]) -> None:
        self._pending = pending

    def select(self, env: Envelope[Any]) -> None:
        self.route_offer(env)

    def route_offer(self, env: Envelope[Any]) -> None:
        waiting = self._pending.get(env.headers.get(H_CORRELATION_ID, ""))
        if waiting is not None and not waiting.finished:
            waiting.answer(env)
        else:
            log.warning(
                "reply.unmatched", id=env.id, topic=env.topic,
                correlation_id=env.headers.get(H_CORRELATION_ID),
                bridge=env.headers.get(H_ORIGIN),  # None for a local reply
            )


def _check_reply(codec: Codec[Any], topic: str, payload: Any) -> None:
    try:
        codec.check(topic, payload)
    except PayloadTypeError:
        raise PayloadTypeError(
            f"the reply to a request on {topic!r} must be {codec.type_name} (its reply_type), "
            f"got {describe(payload)}"
        ) from None


def _request_failed_error(topic: str, headers: dict[str, str]) -> RequestFailedError:
    subscriber = headers.get(H_FAILED_SUBSCRIBER, "?")
    error_type = headers.get(H_ERROR_TYPE, "?")
    error = headers.get(H_ERROR, "")
    attempts = int(headers.get(H_ATTEMPTS, "0") or 0)
    return RequestFailedError(
        f"request on {topic!r} failed: subscriber {subscriber!r} raised {error_type}: "
        f"{error} (after {attempts} attempt(s); the request went to the dead-letter topic)",
        subscriber=subscriber, error_type=error_type, error=error, attempts=attempts,
    )
