"""Fixtures for the smoke tests of the brokers harness (tests/brokers/harness.py).

Tests take the `brokers` fixture rather than importing anything from here, so nothing
depends on pytest's import mode or on another conftest.py elsewhere in tests/.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

_HARNESS_PATH = Path(__file__).with_name("harness.py")


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
