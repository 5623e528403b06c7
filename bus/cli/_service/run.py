"""The ``bus bridge CONFIG.toml`` process: brokers mirrored through one local bus.

Start: the file is checked (one line on stderr and exit 2 if it is wrong), the bridges
are made, then attached all at once; each importing bridge starts consuming only once
every bridge is open and has its export subscription, and the dead-letter destination
exists, so no imported message finds nobody to export it (it would be done, hence
acknowledged, at once). Imported messages are acknowledged to their broker only when
done, which includes the confirmations of the brokers they are exported to, so a
``kill -9`` at any instant loses nothing: the broker delivers again what was not done.

Stop: the first SIGTERM or SIGINT stops intake, lets the bus drain what is in flight
(``drain_timeout``), closes the bridges (final acks and commits, bounded by
``close_timeout`` each) and exits 0, or 1 if the drain timed out with messages left (they
were not acknowledged: the brokers deliver them again). A second signal exits at once
with 128 + the signal number, after one line on stderr saying what was left.

Dead letters go to the dead-letter destination whichever broker their message came from,
that one included (a dead letter is the bus's own message, not an echo). One that
destination refuses keeps its message unacknowledged at its broker: counted
(``/metrics``, ``/healthz``, the stop report) and the exit code is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from bus import Attachment, Bus, BusError, ConfigurationError, Envelope, open_bus
from bus.abc import Bridge, ExportResults, Port, RawCodec, brokers, codec_for, get_logger

from . import metrics
from .config import ConfigError, ServiceConfig, load

__all__ = ["add_arguments", "run"]

log = get_logger("bus.service")

PROG = "bus bridge"
EXIT_USAGE = 2
EXIT_FAILED = 1
PROBE_INTERVAL = 5.0
"""Seconds between two health and lag probes of the brokers (read by /metrics)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Mirror topics between brokers through one local bus, as configured in a TOML "
        "file (the format: `bus docs service`). SIGTERM or "
        "SIGINT drains and exits; a second one exits at once."
    )
    parser.add_argument("config", metavar="CONFIG.toml", help="the service's configuration")
    parser.add_argument(
        "--check", action="store_true", help="check the configuration and exit (0 if good)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        bridges = {name: broker.make() for name, broker in config.brokers.items()}
    except (ConfigurationError, ImportError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    if args.check:
        print(
            f"{config.path}: OK: {len(config.brokers)} broker(s), {len(config.routes)} "
            f"route(s)"
        )
        return 0
    if getattr(args, "log_level", None) is None:
        _configure_logging(config.log_level)
    try:
        return trio.run(_serve, config, bridges)
    except (BusError, BaseExceptionGroup) as exc:
        failures = _leaves(exc)
        if not all(isinstance(f, BusError) for f in failures):
            raise
    for message in dict.fromkeys(str(f) for f in failures):  # one line per broker
        _error(message)
    usage = all(isinstance(f, ConfigurationError) for f in failures)
    return EXIT_USAGE if usage else EXIT_FAILED


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside *exc* and the groups nested in it (two brokers unreachable at
    start fail together)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _configure_logging(level: str) -> None:
    # The CLI configured logging before the command ran; `--log-level` given there wins
    # over the config's [service] log_level (bus.cli._log keeps the clients' own lines
    # out below debug: the bridges translate what matters).
    from .._log import configure

    configure(level)


async def _serve(config: ServiceConfig, bridges: dict[str, Bridge]) -> int:
    service = Service(config, bridges)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.watch_signals, signals)
            try:
                return await service.run(nursery)
            finally:
                nursery.cancel_scope.cancel()


class Service:
    """One run of the service: its bus, its bridges, its state for /healthz."""

    def __init__(self, config: ServiceConfig, bridges: dict[str, Bridge]) -> None:
        self.config = config
        self.bridges = bridges
        self.state = "starting"
        self.stop = trio.Event()
        self.bus: Bus | None = None
        self.probe = metrics.Probe()
        self.attachments: list[Attachment] = []
        """Kept for the report: the bus forgets an attachment once it closed."""

    # -- signals ----------------------------------------------------------------------

    async def watch_signals(self, signals: Any) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stop.is_set():
                log.info("service.draining", signal=name, drain_timeout=self.config.drain_timeout)
                self.state = "draining"
                self.stop.set()
                continue
            _error(f"second {name}: exiting now; {self.left()}")
            logging.shutdown()
            os._exit(128 + signum)

    def left(self) -> str:
        """What is in flight now, in words (for the second signal)."""
        if self.bus is None:
            return "nothing was started yet"
        parts = []
        for att in self.attachments:
            port = att.port
            in_flight = port.imported - port.acked - port.kept_unacked
            if in_flight:
                parts.append(f"{att.bridge.name}: {in_flight} imported message(s) not done")
            if port.kept_unacked:
                parts.append(
                    f"{att.bridge.name}: {port.kept_unacked} kept unacknowledged (their dead "
                    f"letters could not be delivered)"
                )
            if att.export is not None:
                queued = att.export.stats().mailbox_depth
                if queued:
                    parts.append(f"{att.bridge.name}: {queued} queued for export")
        if not parts:
            return "nothing was in flight"
        return (
            "left: " + ", ".join(parts) + " (not acknowledged: their brokers deliver them "
            "again)"
        )

    # -- the run ----------------------------------------------------------------------

    async def run(self, nursery: trio.Nursery) -> int:
        config = self.config
        dead_letter_topic = config.dead_letter.topic if config.dead_letter else "bus.dead_letter"
        async with open_bus(
            name=config.name, drain_timeout=config.drain_timeout,
            dead_letter_topic=dead_letter_topic,
        ) as bus:
            self.bus = bus
            for route in config.routes:
                codec = RawCodec() if route.payload == "raw" else codec_for(object)
                bus.declare_pattern(route.pattern, codec)
            if config.metrics:
                await self._start_http(bus, nursery)
            await self._attach_all(bus)
            if config.dead_letter is None:
                log.warning(
                    "service.no_dead_letter_destination", topic=dead_letter_topic,
                    hint="dead letters stay in this process only; set [service.dead_letter]",
                )
            self.state = "running"
            if config.metrics:
                nursery.start_soon(self._probe_loop, bus)
            log.info(
                "service.running", bridges=sorted(self.bridges),
                routes=[f"{r.pattern}: {list(r.import_from)} -> {list(r.export_to)}"
                        for r in config.routes],
            )
            await self.stop.wait()
        self._report(bus)
        failed = bus.undelivered or bus.stats().dead_letters_undeliverable
        return EXIT_FAILED if failed else 0

    async def _attach_all(self, bus: Bus) -> None:
        """Attach every bridge at once; importers consume only after every bridge is open
        with its export subscription and the dead-letter destination exists."""
        config = self.config
        gate = trio.Event()
        wrapped = [
            _Gated(bridge, gate) if config.imports(name) else _Delegate(bridge)
            for name, bridge in self.bridges.items()
        ]

        async def attach(bridge: _Delegate) -> None:
            broker = config.brokers[bridge.name]
            att = await bus.attach(
                bridge, export=config.exports(bridge.name), import_=config.imports(bridge.name),
                batch=broker.batch, capacity=broker.capacity, retry=broker.retry,
                concurrency=broker.concurrency, connect_timeout=config.connect_timeout,
                close_timeout=config.close_timeout,
            )
            self.attachments.append(att)

        async def open_gate() -> None:
            for bridge in wrapped:
                await bridge.opened.wait()
            await self._create_dead_letter_destination()
            gate.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_gate)
            for bridge in wrapped:
                nursery.start_soon(attach, bridge)

    async def _create_dead_letter_destination(self) -> None:
        dead = self.config.dead_letter
        if dead is None:
            return
        bridge = self.bridges[dead.broker]
        plugin = brokers()[self.config.brokers[dead.broker].type]
        # where the broker would drop a message nobody subscribed to yet, give it a place
        keep = plugin.keep_options
        options = dict(keep(bridge, dead.topic, dead.place)) if keep is not None else {}
        await bridge.create_topic(dead.topic, **options)

    async def _start_http(self, bus: Bus, nursery: trio.Nursery) -> None:
        config = self.config
        collector = metrics.BusCollector(bus, self.probe, lambda: self.state)
        registry = metrics.new_registry(collector)
        try:
            listeners = await trio.open_tcp_listeners(
                config.metrics_port, host=config.metrics_host
            )
        except OSError as exc:
            raise ConfigError(
                f"{config.path}: [service] cannot listen on {config.metrics_host}:"
                f"{config.metrics_port} ({exc.strerror}); choose another metrics_port"
            ) from None
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(metrics.serve_http, listeners, registry, self.health)
        log.info("service.metrics", url=f"http://{config.metrics_host}:{port}/metrics")

    async def _probe_loop(self, bus: Bus) -> None:
        while True:
            await self.probe.refresh(bus.attachments())
            await trio.sleep(PROBE_INTERVAL)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        bus = self.bus
        attachments = bus.attachments() if bus is not None else []
        await self.probe.refresh(attachments)
        up = {att.bridge.name: self.probe.up.get(att.bridge.name, False) for att in attachments}
        now = trio.current_time()
        failing = {  # a broker that keeps failing while the bridge retries
            att.bridge.name: {
                side: {"failures": burst.count, "seconds": round(now - burst.since, 1),
                       "error": burst.last_error}
                for side, burst in att.failing.items() if burst.since is not None
            }
            for att in attachments
        }
        failing = {name: sides for name, sides in failing.items() if sides}
        ok = (
            self.state == "running" and all(up.values()) and len(up) == len(self.bridges)
            and not failing
        )
        undeliverable = bus.stats().dead_letters_undeliverable if bus is not None else 0
        # degraded, not unavailable: a restart would not help (the broker that refused a
        # dead letter refuses it again) and everything else flows
        status = "unavailable" if not ok else "degraded" if undeliverable else "ok"
        return ok, {
            "status": status, "state": self.state, "bridges": up, "failing": failing,
            "dead_letters_undeliverable": undeliverable,
        }

    def _report(self, bus: Bus) -> None:
        summary = {
            att.bridge.name: {
                "imported": att.port.imported, "acked": att.port.acked,
                "kept_unacked": att.port.kept_unacked,
                "exported": att.exported, "confirmed": att.confirmed,
            }
            for att in self.attachments
        }
        undeliverable = bus.stats().dead_letters_undeliverable
        if bus.undelivered or undeliverable:
            log.error(
                "service.stopped", undelivered=dict(bus.undelivered), bridges=summary,
                dead_letters_undeliverable=undeliverable,
            )
        else:
            log.info("service.stopped", undelivered=0, bridges=summary)


class _Delegate(Bridge):
    """A bridge that forwards everything to another one (same name and features)."""

    def __init__(self, inner: Bridge) -> None:
        self.inner = inner
        self.name = inner.name
        self.features = inner.features
        self.opened = trio.Event()

    async def open(self) -> None:
        await self.inner.open()
        self.opened.set()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        return await self.inner.export(batch, port)

    async def create_topic(self, name: str, **options: Any) -> None:
        await self.inner.create_topic(name, **options)

    async def delete_topic(self, name: str) -> None:
        await self.inner.delete_topic(name)

    async def list_topics(self) -> list[str]:
        return await self.inner.list_topics()

    async def health(self) -> bool:
        return await self.inner.health()

    async def lag(self) -> int | None:
        return await self.inner.lag()

    def __repr__(self) -> str:
        return repr(self.inner)


class _Gated(_Delegate):
    """An importing bridge whose ingest waits for *gate* (every bridge open)."""

    def __init__(self, inner: Bridge, gate: trio.Event) -> None:
        super().__init__(inner)
        self._gate = gate

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        await self._gate.wait()
        await self.inner.ingest(port, task_status)

