"""EventFactory: the built-in memory backend, entry-point backends, registration, errors."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bus import ConfigurationError, MissingDependencyError
from bus.events import EventAdapter, EventFactory, InMemoryAdapter, _factory

ROOT = Path(__file__).resolve().parents[2]
BROKERS = {
    "kafka": "bridges.kafka:KafkaAdapter",
    "rabbitmq": "bridges.rabbitmq:RabbitMQAdapter",
    "kinesis": "bridges.kinesis:KinesisAdapter",
    "pubsub": "bridges.pubsub:PubSubAdapter",
}


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    points = {
        name: importlib.metadata.EntryPoint(name, value, _factory.ENTRY_POINT_GROUP)
        for name, value in values.items()
    }
    monkeypatch.setattr(_factory, "_entry_points", lambda: points)
    # what other tests loaded or registered is not this test's registry
    monkeypatch.setattr(EventFactory, "_adapters", {"memory": InMemoryAdapter})


def test_the_package_declares_the_broker_backends_as_entry_points() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["trio_bus.backends"] == BROKERS


def test_memory_is_built_in_brokers_come_from_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, **BROKERS)
    assert EventFactory.available() == ["kafka", "kinesis", "memory", "pubsub", "rabbitmq"]
    assert isinstance(EventFactory.create_adapter("memory"), InMemoryAdapter)
    assert isinstance(EventFactory.create_adapter(" Memory "), InMemoryAdapter)
    fake_entry_points(monkeypatch)
    assert EventFactory.available() == ["memory"]


def test_entry_point_is_loaded_on_first_use_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, probe="bus.events._memory_adapter:InMemoryAdapter")
    assert "probe" not in EventFactory._adapters
    assert EventFactory.adapter_class("probe") is InMemoryAdapter
    assert EventFactory._adapters["probe"] is InMemoryAdapter


def test_entry_point_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    (tmp_path / "facade_fake_backend.py").write_text("import facade_no_such_sdk\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(
        monkeypatch,
        needs_sdk="facade_fake_backend:Adapter",
        not_adapter="bus.events._message:EventMessage",
        missing_attr="bus.events._message:NoSuchThing",
    )
    with pytest.raises(MissingDependencyError, match=r"facade_no_such_sdk.*pip install"):
        EventFactory.create_adapter("needs_sdk")
    with pytest.raises(ConfigurationError, match="not an EventAdapter subclass"):
        EventFactory.create_adapter("not_adapter")
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        EventFactory.create_adapter("missing_attr")


def test_memory_options() -> None:
    adapter = EventFactory.create_adapter("memory", bus="other")
    assert isinstance(adapter, InMemoryAdapter) and "other" in repr(adapter)


def test_unknown_backend_lists_known_names_and_how_to_register(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, **BROKERS)
    with pytest.raises(ConfigurationError) as info:
        EventFactory.create_adapter("zeromq")
    message = str(info.value)
    assert "'zeromq'" in message
    for name in ("memory", "kafka", "rabbitmq", "kinesis", "pubsub"):
        assert name in message
    assert "EventFactory.register_adapter" in message
    assert "trio_bus.backends" in message


def test_unknown_option_names_backend_and_accepted_options() -> None:
    with pytest.raises(ConfigurationError, match=r"'memory'.*bootstrap_servers.*accepts: bus"):
        EventFactory.create_adapter("memory", bootstrap_servers="localhost:9092")


def test_import_of_bus_events_does_not_import_broker_modules() -> None:
    code = (
        "import sys, bus, bus.events; "
        "bad = [m for m in ('bridges.kafka', 'aiokafka', 'aio_pika', 'aioboto3', "
        "'google.cloud.pubsub_v1') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class DummyAdapter(InMemoryAdapter):
    pass


def test_register_replace_and_delete() -> None:
    EventFactory.register_adapter("Dummy", DummyAdapter)
    assert isinstance(EventFactory.create_adapter("dummy"), DummyAdapter)
    EventFactory.register_adapter("dummy", InMemoryAdapter)
    assert type(EventFactory.create_adapter("dummy")) is InMemoryAdapter
    del EventFactory._adapters["dummy"]
    with pytest.raises(ConfigurationError):
        EventFactory.create_adapter("dummy")


@pytest.mark.parametrize(
    ("name", "adapter"),
    [("", InMemoryAdapter), ("x", object), ("x", "a.module:Class"), ("x", InMemoryAdapter())],
)
def test_register_rejects_bad_input(name: str, adapter: Any) -> None:
    with pytest.raises(ConfigurationError):
        EventFactory.register_adapter(name, adapter)


def test_event_adapter_is_abstract() -> None:
    with pytest.raises(TypeError):
        EventAdapter()  # type: ignore[abstract]
