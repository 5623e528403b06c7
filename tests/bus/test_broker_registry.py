"""The broker registry (bus/_plugins.py): BrokerPlugin's checks and brokers() loading the
``trio_bus.brokers`` entry-point group, with fake entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bus._plugins as plugins
from bus import ConfigurationError, MissingDependencyError
from bus.abc import ENTRY_POINT_GROUP, Bridge, BrokerPlugin, Features, brokers
from bus.testing import LOOPBACK_FEATURES, LoopbackBridge, LoopbackBroker


def _from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    return LoopbackBridge(LoopbackBroker(), name or "fake", **options)


def plugin(name: str = "fake", **fields: Any) -> BrokerPlugin:
    values: dict[str, Any] = {
        "name": name, "title": name.title(), "schemes": (name,),
        "url_forms": (f"{name}://host",), "from_url": _from_url,
        "bridge": LoopbackBridge, "features": LOOPBACK_FEATURES,
    }
    return BrokerPlugin(**{**values, **fields})


PLUGIN_MODULE = '''
from bus.abc import BrokerPlugin
from bus.testing import LOOPBACK_FEATURES

def from_url(url, *, name=None, **options):
    from bus.testing import LoopbackBridge, LoopbackBroker
    return LoopbackBridge(LoopbackBroker(), name or "{name}", **options)

PLUGIN = BrokerPlugin(
    name="{name}", title="{name}", schemes=({schemes}), url_forms=("{name}://x",),
    from_url=from_url, bridge="bus.testing:LoopbackBridge", features=LOOPBACK_FEATURES,
    adapter="fake_adapters_nowhere:Adapter", extra="{name}",
)
NOT_A_PLUGIN = object()
'''


@pytest.fixture
def entry_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[list[importlib.metadata.EntryPoint]]:
    """The group's entry points, as the test sets them; brokers() forgets its memo."""
    declared: list[importlib.metadata.EntryPoint] = []

    def fake(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return list(declared) if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, schemes in (("alpha", '"alpha",'), ("beta", '"beta", "betas"'),
                          ("clash", '"alpha",')):
        (tmp_path / f"fake_plugin_{name}.py").write_text(
            PLUGIN_MODULE.format(name=name, schemes=schemes)
        )
    (tmp_path / "fake_plugin_broken.py").write_text("import fake_client_sdk_nowhere\n")
    (tmp_path / "fake_plugin_crashes.py").write_text("raise RuntimeError('boom')\n")
    plugins._load.cache_clear()
    yield declared
    plugins._load.cache_clear()


def _entry(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)


def test_brokers_loads_the_group_by_name_once(
    entry_points: list[importlib.metadata.EntryPoint],
) -> None:
    entry_points += [_entry("beta", "fake_plugin_beta:PLUGIN"),
                     _entry("alpha", "fake_plugin_alpha:PLUGIN")]
    found = brokers()
    assert list(found) == ["alpha", "beta"]
    assert found["beta"].schemes == ("beta", "betas")
    entry_points.clear()  # memoised: the group is not read again
    assert brokers() is found
    with pytest.raises(TypeError):
        found["gamma"] = found["alpha"]  # type: ignore[index]


def test_loading_a_plugin_imports_neither_its_bridge_nor_its_adapter(
    entry_points: list[importlib.metadata.EntryPoint],
) -> None:
    entry_points.append(_entry("alpha", "fake_plugin_alpha:PLUGIN"))
    alpha = brokers()["alpha"]
    assert alpha.bridge == "bus.testing:LoopbackBridge"
    assert alpha.bridge_class() is LoopbackBridge
    with pytest.raises(MissingDependencyError, match=r"pip install 'trio-bus\[alpha\]'"):
        alpha.adapter_class()  # its module is missing: the extra is named


@pytest.mark.parametrize(
    ("entries", "error", "says"),
    [
        ([("broken", "fake_plugin_broken:PLUGIN")], MissingDependencyError,
         r"'broken' = 'fake_plugin_broken:PLUGIN'.*fake_client_sdk_nowhere"),
        ([("crashes", "fake_plugin_crashes:PLUGIN")], ConfigurationError,
         r"'crashes'.*RuntimeError: boom"),
        ([("alpha", "fake_plugin_alpha:NOT_A_PLUGIN")], ConfigurationError,
         r"'alpha'.* is object, not a bus.abc.BrokerPlugin"),
        ([("other", "fake_plugin_alpha:PLUGIN")], ConfigurationError,
         r"'other'.* is named 'alpha': name the entry point like its plugin"),
        ([("alpha", "fake_plugin_alpha:PLUGIN"), ("alpha", "fake_plugin_alpha:PLUGIN")],
         ConfigurationError, r"two broker plugins are named 'alpha'"),
        ([("alpha", "fake_plugin_alpha:PLUGIN"), ("clash", "fake_plugin_clash:PLUGIN")],
         ConfigurationError, r"URL scheme 'alpha' is claimed by broker plugins 'alpha' and "
         r"'clash'"),
    ],
)
def test_a_plugin_that_does_not_load_is_named_in_one_error(
    entry_points: list[importlib.metadata.EntryPoint],
    entries: list[tuple[str, str]], error: type[Exception], says: str,
) -> None:
    entry_points += [_entry(name, value) for name, value in entries]
    with pytest.raises(error, match=says) as caught:
        brokers()
    assert type(caught.value) is error
    entry_points.clear()  # an error is not memoised: the next call reads the group again
    assert brokers() == {}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "Kafka"}, "must be lower case"),
        ({"schemes": ()}, "schemes must be lower-case URL schemes"),
        ({"schemes": ("Kafka",)}, "schemes must be lower-case URL schemes"),
        ({"url_forms": ()}, "url_forms must show"),
        ({"bridge": "bridges.kafka.KafkaBridge"}, "must be a class or 'module:Class'"),
        ({"adapter": "nowhere"}, "must be a class or 'module:Class'"),
        ({"features": {"ordered": True}}, "features must be a bus.abc.Features, got dict"),
    ],
)
def test_a_plugin_is_checked_when_made(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        plugin(**fields)


def test_a_plugin_is_frozen_and_resolves_classes_given_as_classes() -> None:
    made = plugin(adapter=None, features=Features(ordered=False))
    assert made.bridge_class() is LoopbackBridge
    assert made.adapter_class() is None
    assert made.not_in_file == {"name"} and dict(made.file_types) == {}
    with pytest.raises(AttributeError):
        made.name = "other"  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match=r"is not a bus\.abc\.Bridge subclass"):
        plugin(bridge="bus.testing:Recorder").bridge_class()
    with pytest.raises(ConfigurationError, match=r"'bus\.testing:Nowhere' does not exist"):
        plugin(bridge="bus.testing:Nowhere").bridge_class()


def test_the_installed_plugins_load_without_a_broker_sdk() -> None:
    code = (
        "import sys\nfrom bus.abc import brokers\nfound = brokers()\n"
        "heavy = {'aiokafka', 'aio_pika', 'aioboto3', 'google.cloud.pubsub', 'redis',"
        " 'confluent_kafka', 'trio_asyncio'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
