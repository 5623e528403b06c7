"""Test support for code that uses trio-bus: a recorder and pytest-trio fixtures.

Use the fixtures by adding ``pytest_plugins = ["bus.testing"]`` to your ``conftest.py``
(pytest-trio must be installed and ``trio_mode = true`` set, or tests marked
``@pytest.mark.trio``):

- ``event_bus`` — an open strict bus for the test, seeded (``seed=0``), drained and
  closed after it; ``bus`` is the same bus under its old name (which shadows the ``bus``
  package inside a test, hence ``event_bus``);
- ``@pytest.mark.bus(**options)`` — any :func:`~bus.open_bus` keyword for that test's
  bus: ``seed``, ``drain_timeout``, ``capacity``, ``strict``, ``overflow``, ``retry``...;
- ``bus_options`` — the options the test's bus is opened with (defaults + marker);
- ``bus_factory`` — ``await bus_factory(**options)`` opens another bus with the same
  defaults, closed after the test (for tests that need several);
- ``recorder`` — a :class:`Recorder` on ``event_bus`` capturing every message.

Combine them with pytest-trio's ``autojump_clock`` fixture to make backoffs, timeouts
and retention ages take no real time; the fixed seed makes retry jitter repeat run to
run. The recorder is an ordinary subscriber, so it sees exactly what subscribers see, in
publish order.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from ._bus import Bus, open_bus
from ._envelope import Envelope
from ._errors import ConfigurationError
from ._routing import Pattern

__all__ = [
    "DEFAULT_TEST_OPTIONS",
    "Recorder",
    "bus",
    "bus_factory",
    "bus_options",
    "event_bus",
    "pytest_configure",
    "recorder",
]

DEFAULT_TEST_OPTIONS: dict[str, Any] = {"name": "test-bus", "seed": 0}
"""What the fixtures pass to ``open_bus`` unless the ``bus`` marker or the factory's
arguments say otherwise: a fixed seed, so retry jitter is the same on every run."""
_OPEN_BUS_OPTIONS = frozenset(inspect.signature(open_bus).parameters)


class Recorder:
    """Captures every envelope whose topic matches *pattern* (default: all topics).

    Made with ``Recorder.attach(bus)`` inside an open bus, or by the ``recorder`` fixture.
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope[Any]] = []
        self._changed = trio.lowlevel.ParkingLot()

    @classmethod
    def attach(cls, bus: Bus, pattern: str = "#", *, name: str | None = None) -> Recorder:
        """Subscribe a new recorder; its subscriber is named *name*, or ``recorder``
        (``recorder#2``... when a bus has several)."""
        rec = cls()
        if name is None:
            taken = {sub.name for sub in bus.subscriptions()}
            name, n = "recorder", 2
            while name in taken:
                name, n = f"recorder#{n}", n + 1
        bus.subscribe(pattern, rec._record, name=name, capacity=1_000_000)
        return rec

    def _record(self, env: Envelope[Any]) -> None:
        self.envelopes.append(env)
        self._changed.unpark_all()

    def messages(self, pattern: str = "#") -> list[Envelope[Any]]:
        """Recorded envelopes whose topic matches *pattern*, oldest first."""
        match = Pattern(pattern).matches
        return [env for env in self.envelopes if match(env.topic)]

    def payloads(self, pattern: str = "#") -> list[Any]:
        """The payloads of :meth:`messages`."""
        return [env.payload for env in self.messages(pattern)]

    async def wait_for(self, pattern: str = "#", count: int = 1) -> list[Envelope[Any]]:
        """Wait until *count* messages matching *pattern* were recorded; returns them.

        Bound it with ``trio.fail_after`` (instant under ``autojump_clock``).
        """
        while len(found := self.messages(pattern)) < count:
            await self._changed.park()
        return found

    def assert_published(
        self, topic: str, payload: Any = ..., *, key: Any = ..., count: int | None = None
    ) -> list[Envelope[Any]]:
        """Assert messages on *topic* (a name or pattern) with this payload/key were seen.

        With *count*, exactly that many must match. Returns the matching envelopes.
        """
        found = [
            env
            for env in self.messages(topic)
            if (payload is ... or env.payload == payload) and (key is ... or env.key == key)
        ]
        if (count is None and not found) or (count is not None and len(found) != count):
            seen = [(e.topic, e.key, e.payload) for e in self.envelopes]
            wanted = "at least one" if count is None else f"exactly {count}"
            raise AssertionError(
                f"expected {wanted} message(s) on {topic!r} with payload={payload!r} "
                f"key={key!r}, found {len(found)}; recorded (topic, key, payload): {seen}"
            )
        return found

    def clear(self) -> None:
        self.envelopes.clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bus(**options): open_bus() keywords for the test's event_bus/bus fixture "
        "(seed, drain_timeout, capacity, strict, overflow, retry, ...)",
    )


def _resolve(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    options = dict(DEFAULT_TEST_OPTIONS)
    marker = request.node.get_closest_marker("bus")
    if marker is not None:
        if marker.args:
            raise ConfigurationError(
                f"@pytest.mark.bus takes keywords only (e.g. seed=1), got {marker.args!r}"
            )
        options.update(marker.kwargs)
    options.update(overrides)
    unknown = sorted(set(options) - _OPEN_BUS_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown bus option(s) {unknown}; open_bus() takes {sorted(_OPEN_BUS_OPTIONS)}"
        )
    return options


@pytest.fixture
def bus_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``open_bus`` keywords of this test's bus: the defaults, then the marker's."""
    return _resolve(request, {})


@pytest.fixture
async def event_bus(bus_options: dict[str, Any]) -> AsyncIterator[Bus]:
    """An open bus (seeded; configurable with ``@pytest.mark.bus``), drained and closed
    after the test."""
    async with open_bus(**bus_options) as opened:
        yield opened


@pytest.fixture
async def bus(event_bus: Bus) -> Bus:
    """The ``event_bus`` fixture under its first name (kept for existing tests)."""
    return event_bus


@pytest.fixture
async def bus_factory(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """``await bus_factory(**options)``: open another bus with the test defaults (and the
    ``bus`` marker's options) overridden by *options*; drained and closed after the test.

    Each bus lives in a task of this fixture's nursery, so its lifetime is the fixture's,
    not the calling task's; an error in one of its actors fails the test.
    """
    stops: list[trio.Event] = []

    async def serve(options: dict[str, Any], *, task_status: Any) -> None:
        stop = trio.Event()
        stops.append(stop)
        async with open_bus(**options) as opened:
            task_status.started(opened)
            await stop.wait()

    async def make(**overrides: Any) -> Bus:
        options = _resolve(request, overrides)
        if "name" not in overrides and stops:
            options["name"] = f"{options['name']}-{len(stops) + 1}"
        opened: Bus = await nursery.start(serve, options)
        return opened

    async with trio.open_nursery() as nursery:
        yield make
        for stop in stops:
            stop.set()


@pytest.fixture
async def recorder(event_bus: Bus) -> Recorder:
    """A :class:`Recorder` of every message on the ``event_bus`` fixture."""
    return Recorder.attach(event_bus)
