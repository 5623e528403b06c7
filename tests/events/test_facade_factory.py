"""EventFactory: the built-in memory backend, the registered brokers' adapters (their
``BrokerPlugin.adapter``), registration, settings, errors."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from bus import ConfigurationError, MissingDependencyError
from bus.abc import Bridge, BrokerPlugin, brokers
from bus.events import EventAdapter, EventFactory, InMemoryAdapter, Settings, _factory
from bus.testing import LOOPBACK_FEATURES, LoopbackBridge, LoopbackBroker

ROOT = Path(__file__).resolve().parents[2]


def _from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    return LoopbackBridge(LoopbackBroker(), name or "fake", **options)


def plugin(name: str, adapter: type | str | None, **fields: Any) -> BrokerPlugin:
    return BrokerPlugin(
        name=name, title=name, schemes=(name.replace("_", "-"),), url_forms=(f"{name}://x",),
        from_url=_from_url, bridge=LoopbackBridge, features=LOOPBACK_FEATURES,
        adapter=adapter, **fields,
    )


class ProbeAdapter(InMemoryAdapter):
    def __init__(self, bus: str = "probe", server: str | None = None) -> None:
        super().__init__(bus)
        self.server = server


def fake_brokers(monkeypatch: pytest.MonkeyPatch, *found: BrokerPlugin) -> None:
    """The registry as the test sets it (what bus.abc.brokers() would load)."""
    registry = MappingProxyType({p.name: p for p in found})
    monkeypatch.setattr(_factory, "brokers", lambda: registry)
    # what other tests loaded or registered is not this test's registry
    monkeypatch.setattr(EventFactory, "_adapters", {"memory": InMemoryAdapter})
    monkeypatch.setattr(EventFactory, "_settings", {})


def test_the_package_registers_its_brokers_adapters() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "trio_bus.backends" not in project["project"]["entry-points"]  # the old group
    offered = {name for name, p in brokers().items() if p.adapter is not None}
    assert {"kafka", "rabbitmq", "kinesis", "pubsub"} <= offered
    assert offered <= set(EventFactory.available())


def test_memory_is_built_in_brokers_come_from_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_brokers(monkeypatch, plugin("probe", ProbeAdapter), plugin("noadapter", None))
    assert EventFactory.available() == ["memory", "probe"]  # a broker without an adapter: no
    assert isinstance(EventFactory.create_adapter("memory"), InMemoryAdapter)
    assert isinstance(EventFactory.create_adapter(" Memory "), InMemoryAdapter)
    assert type(EventFactory.create_adapter("probe")) is ProbeAdapter
    fake_brokers(monkeypatch)
    assert EventFactory.available() == ["memory"]


def test_a_brokers_adapter_is_loaded_on_first_use_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_brokers(monkeypatch, plugin("probe", "bus.events:InMemoryAdapter"))
    assert "probe" not in EventFactory._adapters
    assert EventFactory.adapter_class("probe") is InMemoryAdapter
    assert EventFactory._adapters["probe"] is InMemoryAdapter


def test_a_brokers_settings_fill_its_adapter_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_brokers(monkeypatch, plugin(
        "probe", ProbeAdapter, facade_settings=MappingProxyType({"server": "kafka_server"})
    ))
    config = Settings(environ={"KAFKA_SERVER": "h:1"})
    assert config.adapter_kwargs("probe") == {"server": "h:1"}
    made = EventFactory.create_adapter("probe", settings=config)
    assert isinstance(made, ProbeAdapter) and made.server == "h:1"
    made = EventFactory.create_adapter("probe", settings=config, server="h:2")
    assert isinstance(made, ProbeAdapter) and made.server == "h:2"
    assert Settings(environ={}).adapter_kwargs("probe") == {}  # unset: the adapter's default
    assert config.adapter_kwargs("memory") == {}


def test_register_adapter_takes_the_settings_that_fill_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_brokers(monkeypatch)
    EventFactory.register_adapter("mine", ProbeAdapter, settings={"server": "redis_url"})
    config = Settings(environ={"REDIS_URL": "redis://h"})
    made = EventFactory.create_adapter("mine", settings=config)
    assert isinstance(made, ProbeAdapter) and made.server == "redis://h"
    EventFactory.register_adapter("mine", ProbeAdapter)  # again, without: nothing filled
    assert config.adapter_kwargs("mine") == {}
    fake_brokers(monkeypatch, plugin(
        "probe", ProbeAdapter, facade_settings=MappingProxyType({"server": "kafka_server"})
    ))
    EventFactory.register_adapter("probe", InMemoryAdapter)  # a broker's name: its settings
    assert Settings(environ={"KAFKA_SERVER": "h:1"}).adapter_kwargs("probe") == {"server": "h:1"}
    with pytest.raises(ConfigurationError, match=r"no setting named 'nope'.*redis_url"):
        EventFactory.register_adapter("mine", ProbeAdapter, settings={"server": "nope"})


def test_a_brokers_adapter_errors_name_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    (tmp_path / "facade_fake_backend.py").write_text("import facade_no_such_sdk\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_brokers(
        monkeypatch,
        plugin("needs_sdk", "facade_fake_backend:Adapter", extra="needs"),
        plugin("not_adapter", "bus.events:EventMessage"),
        plugin("missing_attr", "bus.events:NoSuchThing"),
    )
    with pytest.raises(MissingDependencyError, match=r"facade_no_such_sdk.*pip install"):
        EventFactory.create_adapter("needs_sdk")
    with pytest.raises(ConfigurationError, match="not an EventAdapter subclass"):
        EventFactory.create_adapter("not_adapter")
    with pytest.raises(ConfigurationError, match="does not exist"):
        EventFactory.create_adapter("missing_attr")


def test_memory_options() -> None:
    adapter = EventFactory.create_adapter("memory", bus="other")
    assert isinstance(adapter, InMemoryAdapter) and "other" in repr(adapter)


def test_unknown_backend_lists_known_names_and_how_to_register(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_brokers(monkeypatch, plugin("probe", ProbeAdapter))
    with pytest.raises(ConfigurationError) as info:
        EventFactory.create_adapter("zeromq")
    message = str(info.value)
    assert "'zeromq'" in message
    for name in ("memory", "probe"):
        assert name in message
    assert "EventFactory.register_adapter" in message
    assert "trio_bus.brokers" in message


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
