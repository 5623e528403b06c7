"""A bridge whose broker keeps failing says so while it retries, and says when it is back.

The real Redis of the harness is stopped under an attached bridge (export and import):
each side's :class:`bus._failing.FailureBurst` counts the failures, one
``bridge.broker_failing`` warning per side names the bridge and the broker however many
retries follow, the service's ``/healthz`` body and ``/metrics`` show it; Redis started
again, both sides recover (one ``bridge.broker_recovered`` each) and the message published
while it was down is delivered. Redis keeps its data across the stop (append-only file).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from bridges.redis import RedisBridge
from bus import RetryPolicy, open_bus
from bus.cli._service import metrics
from bus.cli._service.config import BrokerConfig, Route, ServiceConfig
from bus.cli._service.run import Service

pytestmark = pytest.mark.brokers

FAST = RetryPolicy(attempts=None, base_delay=0.02, max_delay=0.1)


class Order(msgspec.Struct):
    n: int


async def _until(check: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(30):
        while not check():  # noqa: ASYNC110 - counters of the bridge's tasks: poll them
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not {what} within 30 s")


def _service(bridge: RedisBridge) -> Service:
    config = ServiceConfig(
        path="<test>", name="svc", log_level="info", drain_timeout=5.0, metrics=False,
        metrics_host="127.0.0.1", metrics_port=0, connect_timeout=5.0, close_timeout=5.0,
        dead_letter=None,
        brokers={bridge.name: BrokerConfig(name=bridge.name, type="redis", options={})},
        routes=(Route("x.*", "json", (bridge.name,), (bridge.name,)),),
    )
    return Service(config, {bridge.name: bridge})


def _samples(text: bytes) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_a_stopped_broker_is_reported_once_per_burst_and_its_recovery_too(
    brokers: Any,
) -> None:
    brokers.require("redis")
    harness = brokers.harness
    if harness.BROKERS["redis"].pid() is None:
        pytest.skip("this redis was not started by the harness: it is not ours to stop")
    p = f"rf{uuid.uuid4().hex[:10]}"
    topic = f"{p}.orders"
    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.topic(topic, Order)
            bridge = RedisBridge(
                brokers.env("REDIS_URL"), name="rb", group="g", block=0.2,
            )
            att = await bus.attach(bridge, export=[topic], import_=[f"{p}.in"], retry=FAST)
            await bus.publish(topic, Order(1))
            await _until(lambda: att.confirmed == 1, "the first message confirmed")

            await trio.to_thread.run_sync(lambda: harness.down(["redis"], keep_data=True))
            try:
                await bus.publish(topic, Order(2))
                await _until(
                    lambda: att.failing["export"].count >= 3
                    and att.failing["ingress"].count >= 3,
                    "three failures on each side",
                )
                service = _service(bridge)
                service.bus, service.state = bus, "running"
                ok, body = await service.health()
                assert not ok and body["status"] == "unavailable"
                assert set(body["failing"]["rb"]) == {"export", "ingress"}
                assert body["failing"]["rb"]["export"]["failures"] >= 3
                registry = metrics.new_registry(
                    metrics.BusCollector(bus, service.probe, lambda: "running")
                )
                samples = _samples(metrics.metrics_text(registry))
                key = (("bridge", "rb"), ("side", "export"))
                assert samples[("trio_bus_bridge_failing", key)] == 1
                assert samples[("trio_bus_bridge_broker_failures_total", key)] >= 3
            finally:
                assert await trio.to_thread.run_sync(lambda: harness.up(["redis"])) == 0
            await _until(
                lambda: att.confirmed == 2 and not att.failing["ingress"].failing,
                "the second message confirmed and ingress consuming again",
            )
            assert not att.failing["export"].failing
            ok, body = await service.health()
            assert body["failing"] == {}
    failing = [e for e in logs if e["event"] == "bridge.broker_failing"]
    assert sorted(e["side"] for e in failing) == ["export", "ingress"]
    assert all(e["bridge"] == "rb" and e["broker"] == "redis" for e in failing)
    assert all(e["log_level"] == "warning" for e in failing)
    recovered = [e for e in logs if e["event"] == "bridge.broker_recovered"]
    assert sorted(e["side"] for e in recovered) == ["export", "ingress"]
    assert all(e["failures"] >= 3 for e in recovered)
    assert all(e["log_level"] != "warning" for e in logs if e["event"] == "bridge.ingest_restart")
