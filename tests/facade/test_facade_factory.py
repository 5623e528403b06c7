"""EventFactory: registration, lazy built-in backends, and the errors that name the fix."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from bus import (
    ConfigurationError,
    EventAdapter,
    EventFactory,
    InMemoryAdapter,
    LazyAdapter,
    MemoryBroker,
    MissingDependencyError,
)
from bus._facade import _factory


def test_builtin_names() -> None:
    assert EventFactory.available() == ["kafka", "kinesis", "memory", "pubsub", "rabbitmq"]
    assert isinstance(EventFactory.create_adapter("memory"), InMemoryAdapter)
    assert isinstance(EventFactory.create_adapter(" Memory "), InMemoryAdapter)


def test_memory_options() -> None:
    private = MemoryBroker()
    adapter = EventFactory.create_adapter("memory", broker=private)
    assert isinstance(adapter, InMemoryAdapter) and adapter.broker is private
    named = EventFactory.create_adapter("memory", broker="other")
    assert isinstance(named, InMemoryAdapter) and named.broker is MemoryBroker.named("other")


def test_unknown_backend_lists_known_names_and_how_to_register() -> None:
    with pytest.raises(ConfigurationError) as info:
        EventFactory.create_adapter("zeromq")
    message = str(info.value)
    assert "'zeromq'" in message
    for name in ("memory", "kafka", "rabbitmq", "kinesis", "pubsub"):
        assert name in message
    assert "EventFactory.register_adapter" in message


def test_unknown_option_names_backend_and_accepted_options() -> None:
    with pytest.raises(ConfigurationError, match=r"'memory'.*bootstrap_servers.*accepts: broker"):
        EventFactory.create_adapter("memory", bootstrap_servers="localhost:9092")


@pytest.mark.parametrize(
    ("backend", "extra", "library"),
    [
        ("kafka", "kafka", "aiokafka"),
        ("rabbitmq", "rabbitmq", "aio_pika"),
        ("kinesis", "kinesis", "aioboto3"),
        ("pubsub", "pubsub", "google.cloud.pubsub_v1"),
    ],
)
def test_missing_client_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, extra: str, library: str
) -> None:
    monkeypatch.setattr(_factory, "_module_available", lambda module: module != library)
    with pytest.raises(MissingDependencyError) as info:
        EventFactory.create_adapter(backend)
    assert f"pip install 'trio-bus[{extra}]'" in str(info.value)
    assert library in str(info.value)
    assert isinstance(info.value, ImportError)  # generic handlers keep working


@pytest.mark.parametrize("backend", ["kafka", "rabbitmq", "kinesis", "pubsub"])
def test_bridge_not_shipped_yet_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # Pretend the client libraries are installed, so the missing piece is the bridge.
    monkeypatch.setattr(_factory, "_module_available", lambda module: True)
    real_import = builtins.__import__

    def no_bridges(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("bridges."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bridges)
    with pytest.raises(ConfigurationError) as info:
        EventFactory.create_adapter(backend)
    assert not isinstance(info.value, MissingDependencyError)
    assert "not available in this trio-bus yet" in str(info.value)
    assert "'memory'" in str(info.value)


def test_dependency_missing_inside_bridge_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # The bridge module exists but imports a library that is not installed.
    (tmp_path / "facade_fake_bridge.py").write_text("import facade_no_such_sdk\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    EventFactory.register_adapter("fake", LazyAdapter("facade_fake_bridge:Adapter", "kafka"))
    with pytest.raises(MissingDependencyError, match=r"facade_no_such_sdk.*trio-bus\[kafka\]"):
        EventFactory.create_adapter("fake")


def test_import_of_bus_does_not_import_broker_sdks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bus; "
        "bad = [m for m in ('aiokafka', 'aio_pika', 'aioboto3', 'google.cloud.pubsub_v1') "
        "if m in sys.modules]; print(bad)"
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


def test_register_lazy_by_path() -> None:
    EventFactory.register_adapter("lazy-memory", "bus._facade._memory_adapter:InMemoryAdapter")
    assert isinstance(EventFactory.adapter_class("lazy-memory")(), InMemoryAdapter)
    EventFactory.register_adapter("lazy-bad", "bus._facade._message:EventMessage")
    with pytest.raises(ConfigurationError, match="not an EventAdapter subclass"):
        EventFactory.create_adapter("lazy-bad")


@pytest.mark.parametrize(
    ("name", "adapter"),
    [("", InMemoryAdapter), ("x", object), ("x", "no-colon"), ("x", InMemoryAdapter())],
)
def test_register_rejects_bad_input(name: str, adapter: Any) -> None:
    with pytest.raises(ConfigurationError):
        EventFactory.register_adapter(name, adapter)


def test_event_adapter_is_abstract() -> None:
    with pytest.raises(TypeError):
        EventAdapter()  # type: ignore[abstract]
