"""The asyncio runtimes of bridges/_runtime.py, both kinds, without a broker."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from bridges._runtime import KINDS, Runtime, open_runtime, start_runtime
from bus import BusClosedError, ConfigurationError

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
