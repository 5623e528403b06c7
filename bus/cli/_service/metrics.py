"""``/metrics`` and ``/healthz`` of the ``bus bridge`` service.

The metrics are the official ``prometheus_client``'s text format, produced by a collector
that reads the bus and its attachments when scraped: ``bus.stats()`` (per topic and per
subscriber, the bridges' export subscriptions included) and each bridge's counters
(``Attachment``: exported, confirmed, rejected, failed; ``Port``: imported, dead-lettered,
acknowledged, redelivered, kept unacknowledged) and its lag where the broker tells it,
and the dead letters that could not be delivered. The HTTP side is a small server on
trio (loopback by default), so a scrape reads the counters in trio's thread, between two
steps of the bus: no lock, no thread.

It answers ``GET /metrics``, ``GET /healthz`` (200 with a JSON body when every bridge
answers and the service is running, its status ``degraded`` once a dead letter could not
be delivered; 503 while starting, draining, or when a broker does not answer) and 404
otherwise. One request per connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from bus import Attachment, Bus
from bus.abc import get_logger

__all__ = ["BusCollector", "Probe", "metrics_text", "serve_http"]

log = get_logger("bus.service")

REQUEST_TIMEOUT = 5.0
"""How long a client may take to send its request."""
PROBE_TIMEOUT = 5.0
"""How long a broker's health check or lag query may take during a scrape."""
MAX_REQUEST = 8192

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:
        from bus import MissingDependencyError

        raise MissingDependencyError(
            "the metrics endpoint needs prometheus-client: pip install 'trio-bus[service]' "
            "(or set metrics = false in [service])"
        ) from exc
    return prometheus_client


@dataclass
class Probe:
    """What the broker said at the last probe: health, and lag where known."""

    up: dict[str, bool] = field(default_factory=dict)
    lag: dict[str, int | None] = field(default_factory=dict)

    async def refresh(self, attachments: list[Attachment]) -> None:
        async def one(att: Attachment) -> None:
            name = att.bridge.name
            with trio.move_on_after(PROBE_TIMEOUT):
                try:
                    self.up[name] = await att.bridge.health()
                    self.lag[name] = await att.bridge.lag()
                    return
                except Exception as exc:  # health() and lag() should not raise: say so
                    log.warning("service.probe_failed", bridge=name, error=repr(exc))
            self.up[name], self.lag[name] = False, None

        async with trio.open_nursery() as nursery:
            for att in attachments:
                nursery.start_soon(one, att)


class BusCollector:
    """A prometheus_client collector over one bus (registered in a registry of its own)."""

    def __init__(self, bus: Bus, probe: Probe, state: Callable[[], str]) -> None:
        self._bus = bus
        self._probe = probe
        self._state = state

    def describe(self) -> list[Any]:
        return []  # no describe-time collection: the bus is read at scrape time only

    def collect(self) -> Iterator[Any]:
        core = _client().core
        bus, probe = self._bus, self._probe

        def counter(name: str, doc: str, labels: list[str]) -> Any:
            return core.CounterMetricFamily(f"trio_bus_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, labels: list[str]) -> Any:
            return core.GaugeMetricFamily(f"trio_bus_{name}", doc, labels=labels)

        state = gauge("service_state", "1 for the state the service is in", ["state"])
        now = self._state()
        for each in ("starting", "running", "draining"):
            state.add_metric([each], 1.0 if each == now else 0.0)
        yield state

        stats = bus.stats()
        published = counter("topic_published", "messages published on a topic", ["topic"])
        retained = gauge("topic_retained", "messages in a topic's retained log", ["topic"])
        for topic, ts in stats.topics.items():
            published.add_metric([topic], ts.published)
            retained.add_metric([topic], ts.retained)
        yield published
        yield retained
        undeliverable = counter(
            "dead_letters_undeliverable",
            "dead letters that could not be delivered in turn (their messages were not "
            "acknowledged: their brokers deliver them again)", [],
        )
        undeliverable.add_metric([], stats.dead_letters_undeliverable)
        yield undeliverable

        actor_counters = {
            "delivered": "messages a subscriber handled (for an export: the broker confirmed)",
            "failed": "handler calls (export batches) that raised",
            "retried": "retries scheduled after a failure",
            "dead_lettered": "messages sent to the dead-letter topic",
            "dropped": "messages dropped by an overflow policy",
            "duplicates": "messages skipped by a dedup window",
            "rejected": "publishes refused by a full mailbox under overflow=error",
            "restarts": "supervisor restarts after a crash",
        }
        families = {
            key: counter(f"subscriber_{key}", doc, ["subscriber"])
            for key, doc in actor_counters.items()
        }
        depth = gauge("subscriber_mailbox_depth", "messages waiting in a mailbox", ["subscriber"])
        for name, actor in stats.actors.items():
            for key, family in families.items():
                family.add_metric([name], getattr(actor, key))
            depth.add_metric([name], actor.mailbox_depth)
        yield from families.values()
        yield depth

        bridge_counters: Mapping[str, tuple[str, Callable[[Attachment], int]]] = {
            "exported": ("records handed to the broker (retries included)",
                         lambda a: a.exported),
            "confirmed": ("records the broker confirmed", lambda a: a.confirmed),
            "export_failed": ("records that failed for now and are retried",
                              lambda a: a.export_failed),
            "imported": ("messages imported from the broker", lambda a: a.port.imported),
            "acked": ("imported messages done, so acknowledged or committable",
                      lambda a: a.port.acked),
            "redelivered": ("imported messages the broker flagged as redelivered",
                            lambda a: a.port.redelivered),
            "kept_unacked": ("imported messages done whose dead letter could not be "
                             "delivered: not acknowledged, the broker delivers them again",
                             lambda a: a.port.kept_unacked),
            "ingress_restarts": ("times ingress restarted after a failure",
                                 lambda a: a.ingress_restarts),
        }
        failures = counter(
            "bridge_broker_failures", "export batches and ingress runs the broker failed "
            "(each retry counts)", ["bridge", "side"],
        )
        failing = gauge(
            "bridge_failing", "1 while the broker keeps failing this side of the bridge "
            "(since its last success)", ["bridge", "side"],
        )
        atts = bus.attachments()
        for key, (doc, read) in bridge_counters.items():
            family = counter(f"bridge_{key}", doc, ["bridge"])
            for att in atts:
                family.add_metric([att.bridge.name], read(att))
            yield family
        dead = counter(
            "bridge_dead_lettered",
            "messages dead-lettered: refused by the broker (export) or undecodable (import)",
            ["bridge", "direction"],
        )
        in_flight = gauge(
            "bridge_in_flight", "imported messages not done yet (not acknowledged)", ["bridge"]
        )
        up = gauge("bridge_up", "1 if the broker answered the last health check", ["bridge"])
        lag = gauge(
            "bridge_lag",
            "messages waiting on the broker for this bridge, as of the last probe (every "
            "5 s, and at each /healthz)", ["bridge"],
        )
        for att in atts:
            name = att.bridge.name
            for side, burst in att.failing.items():
                failures.add_metric([name, side], burst.total)
                failing.add_metric([name, side], 1.0 if burst.failing else 0.0)
            dead.add_metric([name, "export"], att.export_rejected)
            dead.add_metric([name, "import"], att.port.import_dead_lettered)
            port = att.port
            in_flight.add_metric([name], port.imported - port.acked - port.kept_unacked)
            up.add_metric([name], 1.0 if probe.up.get(name) else 0.0)
            known = probe.lag.get(name)
            if known is not None:
                lag.add_metric([name], known)
        yield failures
        yield failing
        yield dead
        yield in_flight
        yield up
        yield lag


def metrics_text(registry: Any) -> bytes:
    data: bytes = _client().generate_latest(registry)
    return data


def new_registry(collector: BusCollector) -> Any:
    registry = _client().CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


async def serve_http(
    listeners: list[trio.SocketListener],
    registry: Any,
    health: Callable[[], Any],
) -> None:
    """Serve ``/metrics`` and ``/healthz`` on *listeners* until cancelled. *health* is an
    async function returning ``(ok, body)``."""

    async def handle(stream: trio.abc.Stream) -> None:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = await _read_request(stream)
            if request is None:
                await _respond(stream, 400, "text/plain", b"bad request\n")
                return
            method, target = request
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await _respond(stream, 405, "text/plain", b"GET only\n")
            elif path == "/metrics":
                await _respond(stream, 200, CONTENT_TYPE, metrics_text(registry), method)
            elif path == "/healthz":
                ok, body = await health()
                await _respond(
                    stream, 200 if ok else 503, "application/json",
                    json.dumps(body, sort_keys=True).encode() + b"\n", method,
                )
            else:
                await _respond(stream, 404, "text/plain", b"try /metrics or /healthz\n")
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:  # a bug here must not stop the service: say it, go on
            log.error("service.http_failed", error=repr(exc))
            with trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    await _respond(stream, 500, "text/plain", b"internal error\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        finally:
            await stream.aclose()

    await trio.serve_listeners(handle, listeners)


async def _read_request(stream: trio.abc.Stream) -> tuple[str, str] | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            return None
    line = data.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return parts[0], parts[1]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


async def _respond(
    stream: trio.abc.Stream, status: int, content_type: str, body: bytes, method: str = "GET"
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + (b"" if method == "HEAD" else body))
