"""Shared test setup: the public fixtures of ``bus.testing``, and a bound on every test.

Every async test runs inside ``trio.fail_after``: a regression that makes a test wait
forever fails it with ``TooSlowError`` (at once under ``autojump_clock``, whose clock
jumps to the deadline when everything is blocked) instead of hanging CI. The bound is
``@pytest.mark.timeout(N)`` when given, else ``ASYNC_TEST_SECONDS``; tests on the mock
clock measure it in virtual seconds, where backoffs of minutes are normal and a hang is
still instant, so they get ``VIRTUAL_TEST_SECONDS``. pytest-timeout (the
``timeout`` ini option) stays as a last resort for a hang outside trio's reach.

Tests that talk to a real broker take the ``brokers`` fixture (the harness of
``tests/brokers/harness.py``: client settings, readiness, restart) rather than importing
anything, so nothing depends on pytest's import mode.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

pytest_plugins = ["bus.testing"]

ASYNC_TEST_SECONDS = 60.0
VIRTUAL_TEST_SECONDS = 1e6


def _bounded(test: Callable[..., Awaitable[Any]], seconds: float) -> Callable[..., Any]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        with trio.fail_after(seconds):
            return await test(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(test):
            marker = item.get_closest_marker("timeout")
            if marker and marker.args:
                # below pytest-timeout's bound for the same marker, so trio's fires first
                # and the failure shows where the test was waiting
                seconds = 0.9 * float(marker.args[0])
            elif {"autojump_clock", "mock_clock"} & set(item.fixturenames):
                seconds = VIRTUAL_TEST_SECONDS
            else:
                seconds = ASYNC_TEST_SECONDS
            item.obj = _bounded(test, seconds)


_HARNESS_PATH = Path(__file__).parent / "brokers" / "harness.py"


def load_harness() -> ModuleType:
    """The harness module, loaded by path under a name no test package uses."""
    name = "trio_bus_brokers_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _HARNESS_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class Brokers:
    """What a broker test needs: client settings, a readiness check, a restart."""

    def __init__(self) -> None:
        self.harness = load_harness()

    def env(self, name: str) -> str:
        """A client setting (e.g. KAFKA_SERVER) from the environment, else the harness's."""
        defaults: dict[str, str] = {}
        for broker in self.harness.BROKERS.values():
            defaults.update(broker.env())
        return os.environ.get(name, defaults[name])

    def require(self, name: str) -> None:
        """Fail (not skip) with a clear message when a broker is not answering."""
        why = self.harness.BROKERS[name].probe()
        if why is not None:
            pytest.fail(f"{name} is not answering ({why}); start it with `make brokers-up`")

    def restart(self, name: str) -> None:
        """Stop the broker, start it again (data kept) and wait until it is ready."""
        self.harness.restart(name)


@pytest.fixture(scope="session")
def brokers() -> Brokers:
    return Brokers()


@pytest.fixture
def unique() -> str:
    """A name no other test run uses (Pub/Sub wants ids of 3+ characters)."""
    return f"trio-bus-smoke-{uuid.uuid4().hex[:12]}"
