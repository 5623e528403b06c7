"""The pytest plugin half of :mod:`bus.testing`: fixtures and the ``bus`` marker.

Imported by ``bus.testing`` only when pytest is installed; see that module's docstring.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from .._bus import Bus, open_bus
from .._errors import ConfigurationError
from ._recorder import Recorder

__all__ = [
    "DEFAULT_TEST_OPTIONS",
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


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("trio"):
        raise pytest.UsageError(
            "bus.testing's fixtures (event_bus, bus_factory, recorder) are trio fixtures and "
            "need the pytest-trio plugin, which is not installed or is disabled: "
            "pip install 'trio-bus[testing]' (and set trio_mode = true, or mark the tests "
            "@pytest.mark.trio)"
        )
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
