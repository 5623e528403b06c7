"""Each broker package registers itself (its ``PLUGIN``, entry point ``trio_bus.brokers``):
the plugin is the one the package exports, names the package's own bridge and facade
adapter and the extra its client comes with, and gives ``bus tail`` its options."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from bus.abc import brokers
from bus.events import BridgeAdapter

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


@pytest.mark.parametrize("name", ["kafka", "kinesis", "pubsub", "rabbitmq"])
def test_a_broker_package_exports_its_registered_plugin(name: str) -> None:
    package = importlib.import_module(f"bridges.{name}")
    plugin = brokers()[name]
    assert package.PLUGIN is plugin
    assert PYPROJECT["project"]["entry-points"]["trio_bus.brokers"][name] == (
        f"bridges.{name}:PLUGIN"
    )
    assert plugin.bridge_class().__module__.startswith(f"bridges.{name}.")
    adapter = plugin.adapter_class()
    assert isinstance(adapter, type) and issubclass(adapter, BridgeAdapter)
    assert plugin.features is package.FEATURES
    assert plugin.extra in PYPROJECT["project"]["optional-dependencies"]


def test_tail_options_read_privately_or_from_the_kept_place() -> None:
    found = brokers()
    kafka, rabbitmq = found["kafka"].tail_options, found["rabbitmq"].tail_options
    kinesis, pubsub = found["kinesis"].tail_options, found["pubsub"].tail_options
    assert kafka and rabbitmq and kinesis and pubsub
    assert kafka("t", True, "f") == ({"group_id": "f", "auto_offset_reset": "earliest"}, "")
    assert kafka("t", False, "f")[0]["auto_offset_reset"] == "latest"
    assert rabbitmq("t", True, "f") == ({"queue": "trio-bus.bus-cli.t"}, "")
    assert rabbitmq("t", False, "f") == ({"queue": "trio-bus.f"}, "trio-bus.f")
    options, private = kinesis("t", False, "f")
    assert (options["group"], options["leases"], options["initial_position"], private) == (
        "f", False, "LATEST", "")
    assert pubsub("t", True, "f") == ({"group": "bus-cli", "create_topics": False}, "")
    assert pubsub("t", False, "f") == ({"group": "f", "create_topics": False}, "f")
    assert found["rabbitmq"].tail_cleanup and found["pubsub"].tail_cleanup
    assert not found["rabbitmq"].lists_topics and found["kafka"].lists_topics


def test_the_facade_settings_of_each_broker() -> None:
    found = brokers()
    assert dict(found["kafka"].facade_settings) == {"bootstrap_servers": "kafka_server"}
    assert dict(found["rabbitmq"].facade_settings) == {"connection_url": "rabbitmq_url"}
    assert found["kinesis"].facade_settings["endpoint_url"] == "kinesis_endpoint_url"
    assert found["pubsub"].facade_settings["emulator_host"] == "pubsub_emulator_host"


def test_where_the_service_keeps_its_dead_letters() -> None:
    found = brokers()
    rabbitmq, pubsub = found["rabbitmq"], found["pubsub"]
    assert (rabbitmq.keep_key, pubsub.keep_key) == ("queue", "group")
    assert rabbitmq.keep_options and pubsub.keep_options

    class Bridge:
        exchange = "shop"

    assert rabbitmq.keep_options(Bridge(), "dead", None) == {"queue": "shop.dead"}
    assert rabbitmq.keep_options(Bridge(), "dead", "mine") == {"queue": "mine"}
    assert pubsub.keep_options(Bridge(), "dead", None) == {"group": "dead-letters"}
    assert pubsub.keep_options(Bridge(), "dead", "ops") == {"group": "ops"}
    assert found["kafka"].keep_options is None and found["kinesis"].keep_options is None
