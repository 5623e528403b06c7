"""The asyncio runtimes of bridges/_runtime.py, both kinds, without a broker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading

import pytest
import trio
from structlog.testing import capture_logs

from bridges._runtime import KINDS, Runtime, open_runtime, start_runtime
from bus import BackendError, BusClosedError, ConfigurationError

pytestmark = pytest.mark.parametrize("kind", KINDS)


class Boom(Exception):
    pass


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "trio-bus-asyncio"]


async def test_run_returns_the_result_from_an_asyncio_task(kind: str) -> None:
    async def work(a: int, b: int) -> tuple[int, bool]:
        await asyncio.sleep(0.001)
        return a + b, asyncio.current_task() is not None

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            assert rt.kind == kind
            assert await rt.run(work, 2, 3) == (5, True)
            results = []
            for i in range(50):
                results.append(await rt.run(work, i, 1))
            assert [r[0] for r in results] == list(range(1, 51))


async def test_exceptions_keep_their_type(kind: str) -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("no")

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            with pytest.raises(Boom, match="no"):
                await rt.run(fail)
            # the runtime is still usable after an error
            assert await rt.run(asyncio.sleep, 0, "ok") == "ok"


async def test_trio_cancellation_cancels_the_asyncio_task_and_waits(kind: str) -> None:
    started = trio.Event()
    log: list[str] = []

    async def slow(rt: Runtime) -> None:
        rt.call_trio_sync(started.set)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleanup that takes a while: run() waits for it
            log.append("cancelled")
            raise

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    async def call() -> None:
                        await rt.run(slow, rt)
                        log.append("returned")  # pragma: no cover - must not happen

                    nursery.start_soon(call)
                    await started.wait()
                    scope.cancel()
            assert scope.cancelled_caught
            assert log == ["cancelled"]


async def test_cancel_wait_is_bounded(kind: str) -> None:
    started = trio.Event()

    async def stubborn(rt: Runtime) -> None:
        rt.call_trio_sync(started.set)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            # ignores the first cancellation for a long time; closing cancels it again
            await asyncio.sleep(60)

    with trio.fail_after(10):
        async with open_runtime(kind, cancel_timeout=0.2) as rt:  # type: ignore[arg-type]
            t0 = trio.current_time()
            with trio.move_on_after(5) as outer:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(rt.run, stubborn, rt)
                        await started.wait()
                        scope.cancel()
            assert not outer.cancelled_caught
            assert trio.current_time() - t0 < 2
        assert trio.current_time() - t0 < 4  # closing cancelled the task again


async def test_call_trio_sync_runs_in_trio(kind: str) -> None:
    async def ask(rt: Runtime) -> str:
        return rt.call_trio_sync(lambda: trio.lowlevel.current_task().name)

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            assert isinstance(await rt.run(ask, rt), str)


async def test_nothing_left_after_exit(kind: str) -> None:
    before = set(threading.enumerate())
    leftover: list[asyncio.Task[None]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def spawn() -> None:
        loops.append(asyncio.get_running_loop())
        leftover.append(asyncio.get_running_loop().create_task(asyncio.sleep(60)))
        await asyncio.get_running_loop().getaddrinfo("127.0.0.1", 9)  # uses the executor

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            await rt.run(spawn)
            if kind == "thread":
                assert len(_our_threads()) == 1
        assert leftover[0].cancelled()
        assert loops[0].is_closed()
        assert not _our_threads()
        new = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        # trio keeps its own idle worker threads cached; nothing else may remain
        assert [t for t in new if not t.name.startswith("Trio thread")] == []
        with pytest.raises(BusClosedError):
            await rt.run(asyncio.sleep, 0)


async def test_unknown_kind_is_a_configuration_error(kind: str) -> None:
    with pytest.raises(ConfigurationError, match="thread"):
        async with open_runtime("gevent"):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_started_in_one_task_closed_in_another(kind: str) -> None:
    holder: list[Runtime] = []

    async def opener() -> None:
        with trio.fail_after(5):  # a bounded open, as bus.attach does
            holder.append(await start_runtime(kind))  # type: ignore[arg-type]

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(opener)
        rt = holder[0]
        assert await rt.run(asyncio.sleep, 0, 7) == 7
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.aclose)
        await rt.aclose()  # idempotent
        with pytest.raises(BusClosedError):
            await rt.run(asyncio.sleep, 0)
        assert not _our_threads()


async def test_an_error_nobody_awaits_is_logged_and_the_loop_goes_on(kind: str) -> None:
    """aiokafka abandons a shielded request task when its commit is cancelled; if that
    task fails later, asyncio reports it to the loop's exception handler. trio-asyncio's
    default handler re-raises it into the loop's nursery, which ended the loop and left
    every client task and socket on it behind."""

    async def orphan() -> None:
        async def fails() -> None:
            raise Boom("nobody awaits me")

        task = asyncio.ensure_future(fails())
        await asyncio.sleep(0.01)  # it failed; dropping it reports "never retrieved"
        assert task.done()
        del task
        gc.collect()

    with capture_logs() as logs, trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            await rt.run(orphan)
            assert await rt.run(asyncio.sleep, 0.01, "alive") == "alive"
    errors = [e for e in logs if e["event"] == "runtime.task_error"]
    assert len(errors) == 1, logs
    assert errors[0]["runtime"] == kind
    assert "nobody awaits me" in errors[0]["error"]


async def test_a_call_in_flight_when_the_loop_ends_raises(kind: str) -> None:
    """A call whose asyncio task can never finish (its loop is gone) must not wait for
    ever: a bridge's bounded close would spend its whole bound there, then leak."""
    started = trio.Event()

    async def stubborn(rt: Runtime) -> None:
        rt.call_trio_sync(started.set)
        while True:  # ignores every cancellation: still pending when the loop closes
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)

    async def crash() -> None:  # what trio-asyncio's handler does with an unawaited error
        asyncio.get_running_loop().default_exception_handler(
            {"message": "a library reported this", "exception": Boom("the loop ends")}
        )

    outcome: list[BaseException] = []
    with capture_logs(), trio.fail_after(20):
        rt = await start_runtime(kind, cancel_timeout=0.2)  # type: ignore[arg-type]

        async def call() -> None:
            try:
                await rt.run(stubborn, rt)
            except BusClosedError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await started.wait()
            if kind == "trio-asyncio":
                await rt.run(crash)  # the loop ends under the call
            else:
                nursery.start_soon(rt.aclose)  # gives up on the stubborn task, closes
        await rt.aclose()
    assert len(outcome) == 1
    assert "ended during the call" in str(outcome[0])


async def test_a_call_the_client_cancels_itself_is_a_backend_error(kind: str) -> None:
    """aiokafka's consumer.stop() can end with asyncio's CancelledError (it awaits a task
    it cancelled itself); in trio that BaseException would pass every ``except
    Exception`` and end the bus."""

    async def cancels_itself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            with pytest.raises(BackendError, match="cancels_itself"):
                await rt.run(cancels_itself)
            assert await rt.run(asyncio.sleep, 0, "ok") == "ok"


async def test_tasks_started_by_a_cancelled_task_are_finished_too(kind: str) -> None:
    """A client's task that cleans up in a new task when cancelled (aiormq closes its
    writer that way): closing waits for that one too, so none is left pending when the
    loop closes (asyncio would report it destroyed while pending)."""
    spawned: list[asyncio.Task[None]] = []
    cleaned: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        cleaned.append("done")

    async def client_task() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            spawned.append(asyncio.get_running_loop().create_task(cleanup()))
            raise

    async def start() -> None:
        asyncio.get_running_loop().create_task(client_task())
        await asyncio.sleep(0)

    with trio.fail_after(10):
        async with open_runtime(kind) as rt:  # type: ignore[arg-type]
            await rt.run(start)
    assert spawned and spawned[0].done()
