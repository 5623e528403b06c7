"""The bus owns a bridge's life: open on attach, supervised ingress, close after drain."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from bus import BackendError, BackendUnavailableError, ConfigurationError, Envelope, open_bus
from bus.abc import Bridge, Port


class LifeBridge(Bridge):
    """Records its lifecycle; ingest fails ``fail_times`` times after starting."""

    def __init__(self, name: str = "life", *, open_delay: float = 0.0, fail_times: int = 0):
        self.name = name
        self.open_delay = open_delay
        self.fail_times = fail_times
        self.events: list[str] = []
        self.exported: list[Any] = []

    async def open(self) -> None:
        await trio.sleep(self.open_delay)
        self.events.append("open")

    async def aclose(self) -> None:
        self.events.append(f"close after {len(self.exported)} exported")

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
        await trio.sleep(0.01)
        self.exported.extend(env.payload for env in batch)

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        self.events.append("ingest")
        task_status.started()
        if self.fail_times:
            self.fail_times -= 1
            raise BackendError("connection reset")
        await trio.sleep_forever()  # idle: must not keep the bus open


async def test_open_then_close_after_the_export_drained_and_ingress_stopped() -> None:
    bridge = LifeBridge()
    async with open_bus() as bus:
        bus.topic("t", int)
        await bus.attach(bridge, export=["t"], import_=["in.#"])
        assert bridge.events == ["open", "ingest"]
        for i in range(5):
            await bus.publish("t", i)
    assert bridge.events == ["open", "ingest", "close after 5 exported"]


async def test_a_broker_unreachable_at_start_is_one_clear_error_after_the_bound(
    autojump_clock: Any,
) -> None:
    async with open_bus() as bus:
        start = trio.current_time()
        with pytest.raises(BackendUnavailableError, match=r"'slow' could not reach .* 3s"):
            await bus.attach(LifeBridge("slow", open_delay=60), export=["t"], connect_timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
        assert bus.attachments() == []


class StuckBridge(LifeBridge):
    """Its ingest never starts: it waits for a group to let it in."""

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        self.starting = "joining group 'g'"
        await trio.sleep_forever()


async def test_ingress_that_never_starts_is_one_error_naming_the_wait(
    autojump_clock: Any,
) -> None:
    async with open_bus() as bus:
        with pytest.raises(
            BackendUnavailableError,
            match=r"'stuck' did not start consuming within 3s while joining group 'g' "
            r"\(raise attach\(connect_timeout=\)",
        ):
            await bus.attach(StuckBridge("stuck"), import_=["in.#"], connect_timeout=3)
        assert bus.attachments() == []


async def test_ingress_that_fails_is_restarted_with_backoff_not_fatal(autojump_clock: Any) -> None:
    bridge = LifeBridge(fail_times=3)
    async with open_bus() as bus:
        att = await bus.attach(bridge, import_=["t"])
        await trio.sleep(30)
        assert att.ingress_restarts == 3
        assert bridge.events == ["open", "ingest", "ingest", "ingest", "ingest"]


async def test_detach_stops_ingress_sends_the_queue_and_allows_attaching_again() -> None:
    bridge = LifeBridge()
    async with open_bus() as bus:
        bus.topic("t", int)
        att = await bus.attach(bridge, export=["t"], import_=["x"])
        await bus.publish("t", 1)
        await att.detach()
        assert bridge.events[-1] == "close after 1 exported"
        assert bus.attachments() == []
        await bus.publish("t", 2)  # no longer exported
        await bus.attach(bridge, export=["t"])
        await bus.publish("t", 3)
    assert bridge.exported == [1, 3]


async def test_two_bridges_of_the_same_name_cannot_attach() -> None:
    async with open_bus() as bus:
        await bus.attach(LifeBridge("x"), import_=["a"])
        with pytest.raises(ConfigurationError, match="already attached"):
            await bus.attach(LifeBridge("x"), import_=["b"])


async def test_overlapping_export_patterns_export_once() -> None:
    bridge = LifeBridge()
    async with open_bus() as bus:
        bus.topic("order.created", int)
        await bus.attach(bridge, export=["order.*", "order.#"])
        await bus.publish("order.created", 1)
    assert bridge.exported == [1]


async def test_a_bridge_without_ingest_cannot_import() -> None:
    class ExportOnly(Bridge):
        async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
            pass

    async with open_bus() as bus:
        with pytest.raises(ConfigurationError, match="cannot import"):
            await bus.attach(ExportOnly(), import_=["t"])


def test_skip_origin_is_not_on_the_public_subscribe() -> None:
    from bus import Bus

    assert "skip_origin" not in inspect.signature(Bus.subscribe).parameters


async def test_detach_closes_the_bridge_only_after_ingest_returned() -> None:
    events: list[str] = []

    class SlowToStop(LifeBridge):
        async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.05)  # e.g. a client call finishing
                events.append("ingest returned")

        async def aclose(self) -> None:
            events.append("aclose")

    async with open_bus() as bus:
        att = await bus.attach(SlowToStop(), import_=["t"])
        await att.detach()
        assert events == ["ingest returned", "aclose"]


async def test_export_concurrency_keeps_batches_in_flight_and_per_key_order(
    autojump_clock: Any,  # each export's 10 ms end together: the overlap is certain
) -> None:
    in_flight, most = 0, 0
    sent: dict[str, list[int]] = {}

    class Slow(LifeBridge):
        async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await trio.sleep(0.01)
            for env in batch:
                sent.setdefault(env.key or "", []).append(env.payload)
            in_flight -= 1

    async with open_bus() as bus:
        bus.topic("t", int)
        await bus.attach(Slow(), export=["t"], batch=8, concurrency=3)
        for i in range(120):
            await bus.publish("t", i, key=f"k{i % 6}")
    assert most == 3
    assert all(ns == sorted(ns) for ns in sent.values()) and sum(map(len, sent.values())) == 120
