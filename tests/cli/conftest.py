"""``register_broker``: a broker plugin registered for one test, the way a package does
it (an entry point of group ``trio_bus.brokers``), beside the installed ones.

The command line and the service know the brokers only through ``bus.abc.brokers()``;
these tests show that a broker they have never heard of works once registered.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bus._plugins
from bus.abc import ENTRY_POINT_GROUP, BrokerPlugin

MODULE = "cli_test_registered_brokers"


@pytest.fixture
def register_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[BrokerPlugin], None]]:
    module = types.ModuleType(MODULE)
    monkeypatch.setitem(sys.modules, MODULE, module)
    declared: list[importlib.metadata.EntryPoint] = []
    installed = importlib.metadata.entry_points

    def entry_points(**selection: str) -> Any:
        found = installed(**selection)
        if selection.get("group") != ENTRY_POINT_GROUP:
            return found
        return importlib.metadata.EntryPoints([*found, *declared])

    def register(plugin: BrokerPlugin) -> None:
        setattr(module, plugin.name, plugin)
        declared.append(
            importlib.metadata.EntryPoint(plugin.name, f"{MODULE}:{plugin.name}", ENTRY_POINT_GROUP)
        )
        bus._plugins._load.cache_clear()  # brokers() reads the group again

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    yield register
    bus._plugins._load.cache_clear()  # the next test sees the installed brokers only
