"""Stopping Kafka ingress after a broker restart: the hang `test_kafka[broker_restart]`
hit, reproduced without a broker.

What happened there: ingress stopped while the periodic commit was in flight; cancelling
it made aiokafka abandon the request task it had shielded (``GroupCoordinator.
commit_offsets``); the restarted broker then answered GroupLoadInProgress, nobody
retrieved that error, and trio-asyncio's exception handler re-raised it into its loop,
which ended with the consumer's tasks and sockets on it. The consumer's close then waited
its whole bound and never stopped the client.

The fake client below commits the way aiokafka does (an inner request task behind
``asyncio.shield``) and answers when the test says so; ``bridges.kafka._ingress.Consumer``
runs it on a real runtime of each kind.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from bridges._runtime import KINDS, Runtime, start_runtime
from bridges.kafka import _ingress
from bridges.kafka._ingress import Consumer

pytestmark = pytest.mark.parametrize("kind", KINDS)

TP = ("orders", 0)


class GroupLoadInProgress(Exception):
    """What the restarted broker answers while it loads the group's offsets."""


class FakeConsumer:
    """The part of aiokafka's consumer that ingress uses; commits wait for an answer."""

    def __init__(self, on_commit: Callable[[], None]) -> None:
        self.on_commit = on_commit
        self.commits: list[dict[Any, int]] = []
        self.answers: asyncio.Queue[bool] = asyncio.Queue()
        self.stopped = False

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))
        self.on_commit()
        request = asyncio.ensure_future(self._request())
        await asyncio.shield(request)  # as GroupCoordinator.commit_offsets does

    async def _request(self) -> None:
        if not await self.answers.get():
            raise GroupLoadInProgress("the group is loading")

    async def getmany(self, timeout_ms: int, max_records: int = 0) -> dict[Any, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def stop(self) -> None:
        await asyncio.sleep(0.01)  # leaving the group: a round trip
        self.stopped = True


async def answer(fake: FakeConsumer, ok: bool) -> None:
    fake.answers.put_nowait(ok)
    gc.collect()  # an abandoned request that failed is reported when collected


def make(rt: Runtime, committed: trio.Event) -> tuple[Consumer, FakeConsumer]:
    c = Consumer(rt, "k", poll_ms=10, max_records=10, commit_interval=0.01)
    fake = FakeConsumer(lambda: rt.call_trio_sync(committed.set))
    c.client = fake
    c.assigned.add(TP)
    c.tracker.started(TP, 0)
    c.tracker.done(TP, 0)
    return c, fake


async def test_a_commit_in_flight_when_ingress_stops_finishes_and_nothing_is_left(
    kind: Any,
) -> None:
    committed = trio.Event()
    with capture_logs() as logs, trio.fail_after(20):
        rt = await start_runtime(kind)
        try:
            c, fake = make(rt, committed)
            async with trio.open_nursery() as nursery:
                await nursery.start(c.run, None)
                await committed.wait()  # the periodic commit is in flight
                nursery.cancel_scope.cancel()  # ingress stops (the bus is closing)
                with trio.CancelScope(shield=True):
                    await rt.run(answer, fake, False)  # the restarted broker refuses it
            await rt.run(answer, fake, True)  # the final commit goes through
            await c.close()
            assert await rt.run(asyncio.sleep, 0, "alive") == "alive"
        finally:
            await rt.aclose()
    assert fake.stopped
    assert fake.commits == [{TP: 1}, {TP: 1}]  # the refused offsets went out again
    assert [e for e in logs if e["event"] == "runtime.task_error"] == []
    assert [e["event"] for e in logs if e["event"].startswith("kafka.")] == [
        "kafka.commit_failed"
    ]


async def test_a_commit_cut_off_at_its_bound_goes_out_with_the_final_one(
    kind: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ingress, "FINISH_COMMIT_SECONDS", 0.05)
    committed = trio.Event()
    rescued = False
    with capture_logs(), trio.fail_after(20):
        rt = await start_runtime(kind)
        try:
            c, fake = make(rt, committed)

            async def rescue() -> None:  # only if the bound is broken: answer, then fail
                nonlocal rescued
                await trio.sleep(5)
                rescued = True
                await rt.run(answer, fake, True)

            async with trio.open_nursery() as outer:
                outer.start_soon(rescue)
                async with trio.open_nursery() as nursery:
                    await nursery.start(c.run, None)
                    await committed.wait()
                    nursery.cancel_scope.cancel()  # the broker never answers this one
                outer.cancel_scope.cancel()
            assert not rescued, "the commit in flight outlived its bound"
            await rt.run(answer, fake, True)  # the abandoned request's answer
            await rt.run(answer, fake, True)  # the final commit's
            await c.close()
        finally:
            await rt.aclose()
    assert fake.commits == [{TP: 1}, {TP: 1}]
    assert fake.stopped


async def test_the_final_commit_is_bounded_and_the_client_stopped_anyway(
    kind: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ingress, "CLOSE_COMMIT_SECONDS", 0.1)
    committed = trio.Event()
    with capture_logs() as logs, trio.fail_after(20):
        rt = await start_runtime(kind)
        try:
            c, fake = make(rt, committed)
            await c.close()  # the broker never answers the final commit
        finally:
            await rt.aclose()
    assert fake.commits == [{TP: 1}]
    assert fake.stopped
    assert [e["event"] for e in logs if e["event"].startswith("kafka.")] == [
        "kafka.final_commit_abandoned"
    ]


async def test_a_close_cut_short_still_stops_the_client(kind: Any) -> None:
    committed = trio.Event()
    with capture_logs(), trio.fail_after(20):
        rt = await start_runtime(kind)
        try:
            c, fake = make(rt, committed)
            with trio.move_on_after(0.1):  # the bridge's close bound ends during the commit
                await c.close()
        finally:
            await rt.aclose()
    assert fake.commits == [{TP: 1}]
    assert fake.stopped
