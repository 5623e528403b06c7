"""Running an asyncio client library (aiokafka, aio-pika...) from trio.

One small interface, two implementations, chosen per broker and direction by
measurement (SPEC §6, ``docs/bridges.md``)::

    async with open_runtime("thread" | "trio-asyncio") as rt:
        result = await rt.run(async_fn, *args)   # one crossing into asyncio
        rt.call_trio_sync(fn, *args)             # from asyncio code: run fn in trio

``"thread"``
    An ``asyncio.SelectorEventLoop`` running in a dedicated :class:`threading.Thread`
    that this module owns. ``run`` schedules ``async_fn(*args)`` as a task on that loop
    with one ``call_soon_threadsafe``; its outcome comes back with
    ``TrioToken.run_sync_soon``. Made explicitly: once ``trio_asyncio`` is imported,
    ``asyncio.new_event_loop()`` gives trio-asyncio's loop, not a plain one.
``"trio-asyncio"``
    ``trio_asyncio.open_loop()``: the asyncio loop runs inside trio's own thread.
    ``trio_asyncio`` is imported only when this kind is chosen. The loop is owned by a
    trio system task, so the runtime can be closed by another task than the one that
    started it (:func:`start_runtime` / ``Runtime.aclose``, as a bridge's ``open`` and
    ``aclose`` need).

Both kinds: cancelling the trio caller of ``run`` cancels the asyncio task and waits for
it to finish (at most *cancel_timeout* seconds) before ``trio.Cancelled`` propagates, so
a cancelled client call is over when ``run`` returns. A call the client cancelled itself
raises :exc:`~bus.BackendError`, never asyncio's ``CancelledError``.

An error nobody awaits (a client's background task that failed, asyncio's "Task
exception was never retrieved") is logged as ``runtime.task_error`` and the loop goes
on: trio-asyncio's own handler would re-raise it into the loop's nursery, ending the
loop and every client task on it with their sockets open (a Kafka consumer's, after a
broker restart). If the loop ends anyway, calls still waiting on it raise
:exc:`~bus.BusClosedError` instead of waiting for ever.

An exception from ``async_fn`` propagates with its own type; translating client errors
to bus errors is the bridge's job. When the block exits, leftover asyncio tasks are
cancelled (and the tasks their cancellation starts, in rounds, within
*cancel_timeout*), async generators and the default executor are shut down, the loop is
closed and the thread joined: nothing of ours is left running.

This module knows nothing about brokers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import trio

from bus import BackendError, BusClosedError, ConfigurationError
from bus.abc import get_logger

__all__ = ["KINDS", "Runtime", "RuntimeKind", "open_runtime", "start_runtime"]

T = TypeVar("T")
RuntimeKind = Literal["thread", "trio-asyncio"]
KINDS: tuple[RuntimeKind, ...] = ("thread", "trio-asyncio")

log = get_logger("bus.bridges")


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]


def _log_unhandled(kind: RuntimeKind) -> ExceptionHandler:
    """The loop's exception handler: log what no task awaited, keep the loop running."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        log.warning(
            "runtime.task_error", runtime=kind, message=context.get("message", ""),
            error=None if exc is None else repr(exc),
        )

    return handler


async def _finish_tasks(within: float) -> None:
    """Cancel every other task of the running loop and wait for them, for *within* s.

    In rounds, not one pass: a client's cancelled task may start another one to clean up
    (aiormq closes its writer and rejects its futures in new tasks), and a task still
    pending when the loop closes is reported by asyncio as "Task was destroyed but it is
    pending!" (asyncio.run and trio_asyncio.open_loop cancel only the tasks that exist
    when they begin). Each task is cancelled once, as asyncio.run does.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + within
    cancelled: set[asyncio.Task[Any]] = set()
    while (left := deadline - loop.time()) > 0:
        tasks = {t for t in asyncio.all_tasks() if t is not me}
        if not tasks:
            return
        for t in tasks - cancelled:
            t.cancel()
        cancelled |= tasks
        await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    # The coroutine is created inside the asyncio task, not in trio: some clients look
    # up the running loop as soon as they are called.
    return await fn(*args)


def _outcome(task: asyncio.Future[T], fn: Callable[..., Any], closing: bool) -> T:
    """The result of a finished call. A task cancelled without trio asking (closing the
    runtime, or the client cancelling its own work) raises a bus error, never asyncio's
    ``CancelledError``: that is a BaseException, which no ``except Exception`` in trio
    code would stop."""
    if task.cancelled():
        if closing:
            raise BusClosedError("the asyncio runtime closed during the call")
        name = getattr(fn, "__qualname__", repr(fn))
        raise BackendError(f"{name} was cancelled inside the asyncio client")
    return task.result()


class Runtime(abc.ABC):
    """Where a bridge's asyncio client runs. Made by :func:`open_runtime`."""

    kind: RuntimeKind

    @abc.abstractmethod
    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` as an asyncio task; return or raise its outcome.

        Raises :exc:`~bus.BusClosedError` if the runtime is closed.
        """

    @abc.abstractmethod
    def call_trio_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """From asyncio code of this runtime: run ``fn(*args)`` in trio's thread, return
        its result. *fn* must be quick: the asyncio loop waits for it."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Cancel leftover asyncio tasks, close the loop; bounded, shielded, idempotent."""


class _ThreadRuntime(Runtime):
    kind: RuntimeKind = "thread"

    def __init__(self, cancel_timeout: float) -> None:
        self._cancel_timeout = cancel_timeout
        self._token = trio.lowlevel.current_trio_token()
        self._loop = asyncio.SelectorEventLoop()
        self._loop.set_exception_handler(_log_unhandled(self.kind))
        self._closing = False
        self._exited = trio.Event()
        self._waiting: set[trio.Event] = set()  # calls in flight (touched in trio only)
        self._thread = threading.Thread(
            target=self._main, name="trio-bus-asyncio", daemon=True
        )

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()
            asyncio.set_event_loop(None)
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._ended)

    def _ended(self) -> None:
        self._closing = True
        self._exited.set()
        for done in self._waiting:  # their tasks will never finish now
            done.set()

    def start(self) -> None:
        self._thread.start()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = self._loop
        done = trio.Event()
        box: list[asyncio.Task[T]] = []
        token = self._token

        def finished(task: asyncio.Task[T]) -> None:  # in the asyncio thread
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:  # trio is gone: nobody waits any more
                pass

        def start() -> None:  # in the asyncio thread
            task = loop.create_task(_call(fn, args))
            box.append(task)
            task.add_done_callback(finished)

        def cancel() -> None:  # in the asyncio thread, after start()
            box[0].cancel()

        if self._closing:
            raise BusClosedError("the asyncio runtime is closed")
        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as exc:  # the loop closed under us
            raise BusClosedError("the asyncio runtime is closed") from exc
        self._waiting.add(done)
        try:
            await done.wait()
        except trio.Cancelled:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(cancel)
            with trio.move_on_after(self._cancel_timeout, shield=True):
                await done.wait()
            raise
        finally:
            self._waiting.discard(done)
        if not box or not box[0].done():
            raise BusClosedError("the asyncio runtime ended during the call")
        return _outcome(box[0], fn, self._closing)

    def call_trio_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    async def aclose(self) -> None:
        self._closing = True
        loop = self._loop
        timeout = self._cancel_timeout

        async def shutdown() -> None:
            await _finish_tasks(timeout)
            await loop.shutdown_asyncgens()
            # getaddrinfo runs in the default executor: join its threads too.
            await loop.shutdown_default_executor()

        def stop(_: object) -> None:
            loop.stop()

        def begin() -> None:
            loop.create_task(shutdown()).add_done_callback(stop)

        with trio.CancelScope(shield=True):
            try:
                loop.call_soon_threadsafe(begin)
            except RuntimeError:  # already closed
                pass
            with trio.move_on_after(2 * timeout + 1.0):
                await self._exited.wait()
            # The thread has left run_forever (or is stuck past our bound: it is a
            # daemon thread, so it cannot keep the process alive).
            self._thread.join(timeout=0.5)


class _TrioAsyncioRuntime(Runtime):
    kind: RuntimeKind = "trio-asyncio"

    def __init__(self, cancel_timeout: float) -> None:
        self._loop: Any = None
        self._cancel_timeout = cancel_timeout
        self._closing = False
        self._ready = trio.Event()
        self._stop = trio.Event()
        self._exited = trio.Event()
        self._error: BaseException | None = None
        self._waiting: set[trio.Event] = set()  # calls in flight

    async def start(self) -> None:
        # The loop lives in a nursery, which must be exited by the task that entered it;
        # a bridge opens in one task (attach) and closes in another (the bus's exit).
        # A system task of our own owns the loop, so either task may close it.
        trio.lowlevel.spawn_system_task(
            self._serve, _import_trio_asyncio(), name="trio-bus-asyncio-loop"
        )
        await self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _serve(self, trio_asyncio: Any) -> None:
        try:
            async with trio_asyncio.open_loop() as loop:
                loop.set_exception_handler(_log_unhandled(self.kind))
                self._loop = loop
                self._ready.set()
                await self._stop.wait()
                self._closing = True
                done = trio.Event()
                finish = asyncio.ensure_future(_finish_tasks(self._cancel_timeout), loop=loop)
                finish.add_done_callback(lambda _: done.set())
                await done.wait()
        except Exception as exc:  # a system task must not raise: keep it for start()
            self._error = exc
            if self._ready.is_set():
                log.error("runtime.ended", runtime=self.kind, error=repr(exc))
        finally:
            self._closing = True
            self._ready.set()
            self._exited.set()
            for done in self._waiting:  # their tasks will never finish now
                done.set()

    async def aclose(self) -> None:
        self._closing = True
        self._stop.set()
        # open_loop's exit cancels the loop's tasks and waits for them.
        with trio.move_on_after(2 * self._cancel_timeout + 1.0, shield=True):
            await self._exited.wait()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._closing:
            raise BusClosedError("the asyncio runtime is closed")
        # Not trio_asyncio.aio_as_trio: it waits for a cancelled asyncio task without a
        # bound. Done callbacks run in trio's thread here, so they may set a trio.Event.
        done = trio.Event()
        coro = _call(fn, args)
        try:
            task: asyncio.Future[T] = asyncio.ensure_future(coro, loop=self._loop)
        except BaseException:
            coro.close()
            raise
        task.add_done_callback(lambda _: done.set())
        self._waiting.add(done)
        try:
            await done.wait()
        except trio.Cancelled:
            if not self._exited.is_set():
                task.cancel()
                with trio.move_on_after(self._cancel_timeout, shield=True):
                    await done.wait()
            raise
        finally:
            self._waiting.discard(done)
        if not task.done():
            raise BusClosedError("the asyncio runtime ended during the call")
        return _outcome(task, fn, self._closing)

    def call_trio_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)  # asyncio callbacks already run in trio's thread


def _import_trio_asyncio() -> Any:
    from ._common import require

    return require("trio_asyncio", "kafka", "the 'trio-asyncio' runtime", "trio-asyncio")


async def start_runtime(kind: RuntimeKind = "thread", *, cancel_timeout: float = 5.0) -> Runtime:
    """Start a runtime of *kind* that is not tied to a block: any task may close it with
    ``await rt.aclose()`` (a bridge opens in ``open()`` and closes in ``aclose()``).

    *cancel_timeout* bounds how long a cancelled ``run`` waits for its asyncio task to
    finish, and how long closing waits for leftover tasks.
    """
    rt: _ThreadRuntime | _TrioAsyncioRuntime
    if kind == "thread":
        rt = _ThreadRuntime(cancel_timeout)
        rt.start()
    elif kind == "trio-asyncio":
        rt = _TrioAsyncioRuntime(cancel_timeout)
        await rt.start()
    else:
        raise ConfigurationError(
            f"unknown runtime kind {kind!r}: choose one of {', '.join(map(repr, KINDS))}"
        )
    return rt


@contextlib.asynccontextmanager
async def open_runtime(
    kind: RuntimeKind = "thread", *, cancel_timeout: float = 5.0
) -> AsyncIterator[Runtime]:
    """Open an asyncio runtime of *kind*; close it, leaving nothing running, on exit."""
    rt = await start_runtime(kind, cancel_timeout=cancel_timeout)
    try:
        yield rt
    finally:
        await rt.aclose()
