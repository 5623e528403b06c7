"""The service's pieces without a broker: the run loop between two loopback brokers (the
gate before ingress, drain, exit code), the metrics and health endpoints, and the core
changes it relies on (bridge counters, dead letters tracked, topics declared on use)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from bus import Envelope, NotDeliveredError, PayloadTypeError, UnknownTopicError, open_bus
from bus._codec import RawCodec
from bus._loopback import LoopbackBridge, LoopbackBroker, LoopbackRecord
from bus.abc import Bridge, ExportResults, Port, Rejected
from bus.cli._service import metrics
from bus.cli._service.config import BrokerConfig, DeadLetter, Route, ServiceConfig
from bus.cli._service.run import Service


async def _until(predicate: Any, within: float = 5) -> None:
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - counters of other tasks: poll them
            await trio.sleep(0.01)


def _record(topic: str, n: int) -> LoopbackRecord:
    return LoopbackRecord(topic, b'{"n": %d}' % n, f"id-{n}", f"k{n % 4}", {}, 0.0)


def _config(dead_letter: DeadLetter | None = None) -> ServiceConfig:
    brokers = {
        name: BrokerConfig(name=name, type="kafka", options={}, batch=16)
        for name in ("source", "sink")
    }
    return ServiceConfig(
        path="<test>", name="svc", log_level="info", drain_timeout=5.0, metrics=False,
        metrics_host="127.0.0.1", metrics_port=0, connect_timeout=5.0, close_timeout=5.0,
        dead_letter=dead_letter, brokers=brokers,
        routes=(Route("orders.*", "json", ("source",), ("sink",)),),
    )


class SlowOpen(LoopbackBridge):
    """A bridge whose broker takes a while to answer at connect."""

    async def open(self) -> None:
        await trio.sleep(0.2)
        await super().open()


async def test_no_import_before_every_export_is_attached() -> None:
    """Records already waiting in the source are consumed only once the sink's export
    subscription exists: none is done (committed) with nobody to export it."""
    source, sink = LoopbackBroker(), LoopbackBroker()
    for n in range(50):
        source.append(_record("orders.created", n))
    bridges: dict[str, Bridge] = {
        "source": LoopbackBridge(source, "source"), "sink": SlowOpen(sink, "sink"),
    }
    service = Service(_config(), bridges)
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            assert await service.run(nursery) == 0

        nursery.start_soon(run)
        await _until(lambda: len(sink.records("orders.created")) >= 50, 10)
        assert service.state == "running"
        service.stop.set()
    got = sorted(msgspec.json.decode(r.data)["n"] for r in sink.records("orders.created"))
    assert got == list(range(50))
    assert sum(source.committed("trio-bus.source", "orders.created", p) for p in range(4)) == 50
    [att_sink, att_source] = sorted(service.attachments, key=lambda a: a.bridge.name)
    assert att_source.port.imported == att_source.port.acked == 50
    assert att_sink.exported == att_sink.confirmed == 50


class Refusing(Bridge):
    """Refuses every record for good, or holds every batch until released."""

    def __init__(self, name: str, *, refuse: bool = False) -> None:
        self.name = name
        self.refuse = refuse
        self.release = trio.Event()
        self.got: list[Envelope[Any]] = []

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        if self.refuse:
            return [Rejected("no") for _ in batch]
        await self.release.wait()
        self.got.extend(batch)
        return None


async def test_a_dead_letter_is_done_only_once_exported() -> None:
    """A message dead-lettered by a subscriber is done (so acknowledged upstream) only when
    its dead letter was exported: a kill -9 before that redelivers it."""
    async with open_bus(seed=1) as bus:
        bus.topic("t", int)

        def fails(env: Envelope[int]) -> None:
            raise ValueError("bad")

        from bus import RetryPolicy

        bus.subscribe("t", fails, retry=RetryPolicy(attempts=1))
        dead = Refusing("dead")
        await bus.attach(dead, export=[bus.dead_letter_topic])
        done = trio.Event()
        outcome: list[BaseException] = []

        async def publish() -> None:
            try:
                await bus.publish("t", 1, confirm=True)
            except NotDeliveredError as exc:
                outcome.append(exc)
            done.set()

        bus._nursery.start_soon(publish)  # type: ignore[union-attr]
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # the dead letter waits for its export
        dead.release.set()
        with trio.fail_after(5):
            await done.wait()
        assert len(dead.got) == 1 and isinstance(outcome[0], NotDeliveredError)


async def test_a_dead_letter_refused_in_turn_is_logged_not_looped() -> None:
    with capture_logs() as logs:
        async with open_bus(seed=1) as bus:
            bus.topic("t", int)
            sink, dead = Refusing("sink", refuse=True), Refusing("dead", refuse=True)
            att = await bus.attach(sink, export=["t"])
            dead_att = await bus.attach(dead, export=[bus.dead_letter_topic])
            await bus.publish("t", 7, confirm=False)
            await _until(lambda: bus.stats().dead_letters_undeliverable)
            await trio.testing.wait_all_tasks_blocked()  # a loop would go on from here
            assert len(bus.retained(bus.dead_letter_topic)) == 1
            assert att.export_rejected == 1 and dead_att.export_rejected == 1
    assert bus.stats().dead_letters_undeliverable == 1
    assert [e["event"] for e in logs].count("dead_letter.undeliverable") == 1


async def test_topics_declared_on_use_with_a_raw_codec() -> None:
    async with open_bus() as bus:
        bus.declare_pattern("raw.#", RawCodec())
        await bus.publish("raw.a.b", b"\xff\x00 not json")
        with pytest.raises(PayloadTypeError, match="raw bytes"):
            await bus.publish("raw.a.b", "text")
        with pytest.raises(UnknownTopicError):
            await bus.publish("other", b"x")
        assert bus.codec("raw.a.b").encode(b"\xff") == b"\xff"
        assert "raw.a.b" in bus.topics()


async def _get(port: int, request: bytes) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_and_health_endpoints() -> None:
    broker = LoopbackBroker(max_bytes=20)
    async with open_bus() as bus, trio.open_nursery() as nursery:
        bus.declare_pattern("orders.*", RawCodec())
        out = LoopbackBridge(broker, "out")
        att = await bus.attach(out, export=["orders.*"])
        for n in range(5):
            await bus.publish("orders.created", b'{"n": %d}' % n)
        await bus.publish("orders.created", b"x" * 40)  # over max_bytes: rejected
        await bus.drain()
        probe = metrics.Probe()
        await probe.refresh(bus.attachments())
        state = "running"
        registry = metrics.new_registry(metrics.BusCollector(bus, probe, lambda: state))
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def health() -> tuple[bool, dict[str, Any]]:
            return state == "running", {"state": state}

        nursery.start_soon(metrics.serve_http, listeners, registry, health)
        status, body = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("trio_bus_bridge_exported_total", (("bridge", "out"),))] == 6
        assert samples[("trio_bus_bridge_confirmed_total", (("bridge", "out"),))] == 5
        assert samples[("trio_bus_bridge_dead_lettered_total",
                        (("bridge", "out"), ("direction", "export")))] == 1
        assert samples[("trio_bus_topic_published_total", (("topic", "orders.created"),))] == 6
        assert samples[("trio_bus_bridge_up", (("bridge", "out"),))] == 1
        assert samples[("trio_bus_service_state", (("state", "running"),))] == 1
        assert att.exported == 6 and att.confirmed == 5 and att.export_rejected == 1
        assert (await _get(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == (
            200, b'{"state": "running"}\n'
        )
        state = "draining"
        assert (await _get(port, b"GET /healthz HTTP/1.0\r\n\r\n"))[0] == 503
        assert (await _get(port, b"GET /nope HTTP/1.0\r\n\r\n"))[0] == 404
        assert (await _get(port, b"POST /metrics HTTP/1.0\r\n\r\n"))[0] == 405
        assert (await _get(port, b"garbage\r\n\r\n"))[0] == 400
        nursery.cancel_scope.cancel()


async def test_import_counters() -> None:
    broker = LoopbackBroker()
    for n in range(10):
        broker.append(_record("orders.created", n))
    broker.append(LoopbackRecord("orders.created", b"\xff", "bad", None, {}, 0.0))
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("orders.created", dict)
        bus.subscribe("orders.*", lambda env: got.append(env.payload["n"]))
        att = await bus.attach(LoopbackBridge(broker, "in"), import_=["orders.*"])
        await _until(lambda: att.port.acked >= 11)
    assert sorted(got) == list(range(10))
    assert att.port.imported == 11 and att.port.import_dead_lettered == 1
    assert att.port.redelivered == 0


async def test_dead_letters_go_back_to_their_source_and_a_refused_one_is_kept() -> None:
    """The dead-letter destination is the broker the messages come from: an undecodable
    record's dead letter and a refused record's both go there; one that broker refuses
    in turn keeps its record uncommitted, shows in /metrics and /healthz, exit 1."""
    source, sink = LoopbackBroker(max_bytes=80), LoopbackBroker(max_bytes=40)
    source.append(LoopbackRecord("orders.created", b"\xff{", "poison", "k1", {}, 0.0))
    pad = "x" * 30
    source.append(LoopbackRecord("orders.created", b'{"n": 1, "pad": "%s"}' % pad.encode(),
                                 "roomy", "k2", {}, 0.0))  # refused by the sink only
    source.append(LoopbackRecord("orders.created", b'{"n": 2, "pad": "%s"}' % (pad * 3).encode(),
                                 "huge", "k3", {}, 0.0))  # refused by both
    source.append(_record("orders.created", 3))
    config = _config(DeadLetter(broker="source", topic="svc.dead"))
    bridges: dict[str, Bridge] = {
        "source": LoopbackBridge(source, "source"), "sink": LoopbackBridge(sink, "sink"),
    }
    service = Service(config, bridges)
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            assert await service.run(nursery) == 1

        nursery.start_soon(run)
        await _until(lambda: service.bus is not None and service.attachments)
        await _until(lambda: sum(a.port.acked + a.port.kept_unacked
                                 for a in service.attachments) == 4)
        assert service.bus is not None
        ok, body = await service.health()
        assert ok and body["status"] == "degraded" and body["dead_letters_undeliverable"] == 1
        registry = metrics.new_registry(metrics.BusCollector(service.bus, service.probe,
                                                             lambda: service.state))
        samples = {
            (s.name, tuple(s.labels.values())): s.value
            for family in text_string_to_metric_families(metrics.metrics_text(registry).decode())
            for s in family.samples
        }
        assert samples[("trio_bus_dead_letters_undeliverable_total", ())] == 1
        assert samples[("trio_bus_bridge_kept_unacked_total", ("source",))] == 1
        assert samples[("trio_bus_bridge_acked_total", ("source",))] == 3
        assert samples[("trio_bus_bridge_in_flight", ("source",))] == 0
        service.stop.set()
    assert sorted(r.id for r in source.records("svc.dead")) == ["poison", "roomy"]
    assert [r.id for r in sink.records("orders.created")] == ["id-3"]
    committed = {  # per record: is its offset below its partition's committed offset?
        r.id: i < source.committed("trio-bus.source", "orders.created", p)
        for p, part in enumerate(source.logs["orders.created"]) for i, r in enumerate(part)
    }
    # id-3 has huge's key, so its partition: done and exported, but behind huge's offset
    assert committed == {"poison": True, "roomy": True, "huge": False, "id-3": False}
