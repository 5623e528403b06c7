"""``bus.attach``: a bridge's life on a bus, from ``open()`` to ``aclose()``.

:func:`attach` opens the bridge (bounded by ``connect_timeout``), makes its export
subscription (one batched subscriber over the export patterns that skips what the bridge
imported) and starts its supervised ingress task; :class:`Attachment` is the result,
which the bus closes when it exits (or :meth:`Attachment.detach` earlier). The bus hands
:func:`attach` what it needs — its state, its router, its registry of attachments, how to
subscribe an export and start a task — so neither reaches into the other.

A broker that keeps failing is retried for ever, and said so: :attr:`Attachment.failing`
holds a :class:`FailureBurst` per side (``export``, ``ingress``) that the service's
``/healthz`` and metrics read, and each burst logs one warning, ``bridge.broker_failing``
(the bridge and broker named), when it starts and one ``bridge.broker_recovered`` (info)
when the side works again; each retry in between is logged at info level only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ._actor import Subscription
from ._bridge import Bridge, ExportResults, Port
from ._envelope import Envelope
from ._errors import BackendUnavailableError, ConfigurationError, Rejected
from ._failing import FailureBurst
from ._log import get_logger
from ._policy import RetryPolicy
from ._route import Router
from ._routing import validate_pattern
from ._state import BusState

__all__ = ["EXPORT_RETRY", "Attachment", "attach"]

log = get_logger("bus")

RESUMED_AFTER = 1.0
"""Seconds ingress must run after a restart, without failing, to end a failure burst."""

EXPORT_RETRY = RetryPolicy(attempts=None, base_delay=0.2, max_delay=10.0)
"""How ``bus.attach`` retries a failed export by default: forever, 0.2 s to 10 s apart."""


class Attachment:
    """A bridge attached to a bus: its export subscription, its port, its ingress task.

    Made by ``bus.attach``. The bus closes it when it exits; :meth:`detach` closes it
    earlier, after which the same bridge (or another of that name) may be attached again.
    """

    def __init__(
        self,
        state: BusState,
        registry: dict[str, Attachment],
        bridge: Bridge,
        port: Port,
        close_timeout: float,
    ) -> None:
        self._state = state
        self._registry = registry
        self.bridge = bridge
        self.port = port
        self.export: Subscription | None = None
        self.export_patterns: tuple[str, ...] = ()
        """The patterns of the bus topics exported to the broker."""
        self.ingress_restarts = 0
        """Times ingress was restarted after it raised."""
        self.exported = 0
        """Records handed to the broker (a record retried counts each time)."""
        self.confirmed = 0
        """Records the broker confirmed."""
        self.export_rejected = 0
        """Records the broker refused for good (dead-lettered)."""
        self.export_failed = 0
        """Records that failed for now (retried with backoff)."""
        self.failing: dict[str, FailureBurst] = {
            "export": FailureBurst(), "ingress": FailureBurst(),
        }
        """Per side, the current burst of broker failures (see the module docstring)."""
        self._close_timeout = close_timeout
        self._ingress_scope: trio.CancelScope | None = None
        self._ingress_ended = trio.Event()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<Attachment of {self.bridge.name!r} ({type(self.bridge).__name__}) "
            f"export={list(self.export_patterns)} import={list(self.port.import_patterns)}"
            f"{' detached' if self._closed else ''}: exported={self.exported} "
            f"confirmed={self.confirmed} imported={self.port.imported} "
            f"acked={self.port.acked}>"
        )

    def _count_results(self, sent: int, results: ExportResults) -> None:
        if results is None:
            self.confirmed += sent
            return
        for result in results:
            if result is None:
                self.confirmed += 1
            elif isinstance(result, Rejected):
                self.export_rejected += 1
            else:
                self.export_failed += 1

    @property
    def broker(self) -> str:
        """The broker's kind, for logs: ``KafkaBridge`` -> ``kafka``."""
        return type(self.bridge).__name__.removesuffix("Bridge").lower() or "broker"

    def _failed(self, side: str, exc: BaseException) -> None:
        if self.failing[side].failed(trio.current_time(), repr(exc)):
            log.warning(
                "bridge.broker_failing", bridge=self.bridge.name, broker=self.broker,
                side=side, error=repr(exc),
            )

    def _recovered(self, side: str) -> None:
        ended = self.failing[side].recovered()
        if ended is not None:
            failures, since = ended
            log.info(
                "bridge.broker_recovered", bridge=self.bridge.name, broker=self.broker,
                side=side, failures=failures, seconds=round(trio.current_time() - since, 3),
            )

    def _export_outcome(self, results: ExportResults) -> None:
        """A batch with a record confirmed ends a burst; one whose every record failed
        for now (none refused for good) is a failure of the broker."""
        if results is None or any(r is None for r in results):
            self._recovered("export")
        elif not any(isinstance(r, Rejected) for r in results):
            self._failed("export", next(r for r in results if r is not None))

    @property
    def exports(self) -> list[Subscription]:
        return [] if self.export is None else [self.export]

    def stop_intake(self) -> None:
        """Stop consuming from the broker; messages already delivered are still handled
        and acknowledged when done (by :meth:`Bridge.aclose` at the latest)."""
        if self._ingress_scope is not None:
            self._ingress_scope.cancel()

    async def detach(self) -> None:
        """Stop ingress, send what is queued for export, then close the bridge."""
        self.stop_intake()
        if self.export is not None:
            self.export.close()
            await self.export.wait_closed()
        await self.aclose()

    async def aclose(self) -> None:
        """Close the bridge once (shielded, bounded by ``close_timeout``); the bus calls
        this when it exits."""
        if self._closed:
            return
        self._closed = True
        self.stop_intake()
        self._registry.pop(self.bridge.name, None)
        with trio.move_on_after(self._close_timeout, shield=True) as scope:
            if self._ingress_scope is not None:
                await self._ingress_ended.wait()  # ingest has returned: nothing races aclose
            try:
                await self.bridge.aclose()
            except Exception as exc:
                log.error("bridge.close_failed", bridge=self.bridge.name, error=repr(exc))
        if scope.cancelled_caught:
            log.error("bridge.close_timeout", bridge=self.bridge.name, timeout=self._close_timeout)
        log.debug("bridge.closed", bridge=self.bridge.name, ingress_restarts=self.ingress_restarts)

    async def _ingress(
        self, retry: RetryPolicy, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the bridge's ingest; restart it with backoff whenever it raises.

        A failure before the first ``started()`` propagates to ``attach`` instead.
        """
        bridge, started = self.bridge, _Started(task_status)
        try:
            await self._supervise_ingress(bridge, started, retry)
        finally:
            self._ingress_ended.set()

    async def _supervise_ingress(
        self, bridge: Bridge, started: _Started, retry: RetryPolicy
    ) -> None:
        with trio.CancelScope() as scope:
            self._ingress_scope = scope
            failures = 0
            while True:
                try:
                    if self.failing["ingress"].failing:
                        await self._ingest_watched(bridge, started)
                    else:
                        await bridge.ingest(self.port, started)
                    return
                except Exception as exc:
                    if not started.done:
                        raise
                    failures += 1
                    self.ingress_restarts += 1
                    self._failed("ingress", exc)
                    delay = retry.delay(failures, self._state.random.random)
                    log.info(  # the burst's warning is bridge.broker_failing
                        "bridge.ingest_restart", bridge=bridge.name, restart=failures,
                        delay=delay, error=repr(exc),
                    )
                    await trio.sleep(delay)
                    if started.ready_again:  # it had consumed again before failing
                        failures, started.ready_again = 0, False


    async def _ingest_watched(self, bridge: Bridge, started: _Started) -> None:
        """``ingest`` during a failure burst: the burst ends once ingest has run
        :data:`RESUMED_AFTER` seconds past its ``started()`` without failing (a bridge may
        say started before its first call to the broker fails)."""
        resumed = started.resumed = trio.Event()
        error: Exception | None = None

        async def watch() -> None:
            await resumed.wait()
            await trio.sleep(RESUMED_AFTER)
            self._recovered("ingress")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            try:
                await bridge.ingest(self.port, started)
            except Exception as exc:  # raised as itself below, not in a group
                error = exc
            nursery.cancel_scope.cancel()
        started.resumed = None
        if error is not None:
            raise error


class _Started:
    """The task status handed to ``ingest``: the first ``started()`` reaches ``attach``;
    after a restart it only records that consuming resumed (resetting the backoff)."""

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status = status
        self.done = False
        self.ready_again = False
        self.resumed: trio.Event | None = None
        """Set when ingest says started again during a failure burst (``_ingest_watched``)."""

    def started(self, value: None = None) -> None:
        if self.done:
            self.ready_again = True
            if self.resumed is not None:
                self.resumed.set()
            return
        self.done = True
        self._status.started()


async def attach(
    bridge: Bridge,
    *,
    state: BusState,
    router: Router,
    registry: dict[str, Attachment],
    subscribe_export: Callable[..., Subscription],
    start: Callable[..., Awaitable[None]],
    export: Sequence[str] = (),
    import_: Sequence[str] = (),
    batch: int = 256,
    capacity: int = 4096,
    retry: RetryPolicy = EXPORT_RETRY,
    connect_timeout: float = 10.0,
    close_timeout: float = 10.0,
    concurrency: int = 1,
) -> Attachment:
    name = bridge.name
    if not export and not import_:
        raise ConfigurationError(
            f"attach({name!r}) needs export=[patterns] and/or import_=[patterns]"
        )
    for pattern in (*export, *import_):
        validate_pattern(pattern)
    if name in registry:
        raise ConfigurationError(
            f"a bridge named {name!r} is already attached to this bus; give each bridge "
            f"its own name= or detach the other first"
        )
    if not connect_timeout > 0:
        raise ConfigurationError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
    if import_ and type(bridge).ingest is Bridge.ingest:
        raise ConfigurationError(f"bridge {name!r} cannot import: it has no ingest()")
    port = Port(state, router, bridge, import_)
    att = Attachment(state, registry, bridge, port, close_timeout)
    registry[name] = att
    try:
        with trio.fail_after(connect_timeout):
            await bridge.open()
    except trio.TooSlowError:
        registry.pop(name, None)
        raise BackendUnavailableError(
            f"bridge {name!r} could not reach its broker within {connect_timeout}s; is it "
            f"running and reachable? (raise attach(connect_timeout=) for a slow start)"
        ) from None
    except BaseException:
        registry.pop(name, None)
        raise
    try:
        if export:

            async def send(envs: Sequence[Envelope[Any]]) -> ExportResults:
                att.exported += len(envs)
                tracing = state.tracing
                sent: Sequence[Envelope[Any]] = envs
                spans: list[Any] = []
                if tracing is not None:
                    sent, spans = tracing.start_export(envs, name)
                try:
                    results = await bridge.export(sent, port)
                except BaseException as exc:
                    if isinstance(exc, Exception):
                        att.export_failed += len(envs)
                        att._failed("export", exc)
                    if tracing is not None:
                        tracing.end_export(spans, exc)
                    raise
                att._count_results(len(envs), results)
                att._export_outcome(results)
                if tracing is not None:
                    tracing.end_export(spans, results)
                return results

            att.export_patterns = tuple(export)
            att.export = subscribe_export(
                export, send, name=f"{name}:export", batch=batch, capacity=capacity,
                retry=retry, skip_origin=name, concurrency=concurrency,
            )
        if import_:
            try:
                with trio.fail_after(connect_timeout):
                    await start(att._ingress, retry, name=f"{name}:ingest")
            except trio.TooSlowError:
                waiting = f" while {bridge.starting}" if bridge.starting else ""
                raise BackendUnavailableError(
                    f"bridge {name!r} did not start consuming within {connect_timeout}s"
                    f"{waiting} (raise attach(connect_timeout=) for a slow start)"
                ) from None
    except BaseException:
        if att.export is not None:
            att.export.close()
        await att.aclose()
        raise
    log.debug("bridge.attached", bridge=name, export=list(export), import_=list(import_))
    return att
