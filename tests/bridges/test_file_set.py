"""Every broker package has the same file set and the same names in it (issue 16,
constraint 6; ``docs/bridges.md``, "Adding a broker"): a broker that differs does so in
extra files its docstring explains, never in the shared ones' names."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from bus.abc import Bridge, brokers
from bus.events import BridgeAdapter

BRIDGES = Path(__file__).parents[2] / "bridges"
FILE_SET = ("_bridge", "_client", "_wire", "_ingress", "_errors", "_adapter", "_plugin")
REDIS_BRIDGE = ("_bridge_wire", "_bridge_ingress", "_bridge_adapter")
"""Redis's custom facade adapter (the seed's) predates its bridge and keeps its own entry
format and reader under ``_wire``/``_ingress``; the bridge's are these
(``bridges/redis/__init__.py``)."""


def _packages() -> list[str]:
    return sorted(p.parent.name for p in BRIDGES.glob("*/__init__.py"))


def test_the_broker_packages_are_the_registered_ones() -> None:
    assert _packages() == sorted(brokers())


@pytest.mark.parametrize("name", _packages())
def test_a_broker_package_has_the_file_set(name: str) -> None:
    files = {p.stem for p in (BRIDGES / name).glob("_*.py")}
    expected = (*FILE_SET, *REDIS_BRIDGE) if name == "redis" else FILE_SET
    assert set(expected) <= files, f"bridges/{name} lacks {sorted(set(expected) - files)}"
    package = importlib.import_module(f"bridges.{name}")
    assert "_wire" in (package.__doc__ or "") and "_errors" in (package.__doc__ or "")


@pytest.mark.parametrize("name", _packages())
def test_the_shared_verbs(name: str) -> None:
    wire = importlib.import_module(f"bridges.{name}._wire")
    errors = importlib.import_module(f"bridges.{name}._errors")
    assert callable(wire.encode) and callable(wire.decode)
    assert list(inspect.signature(errors.translate).parameters) == ["exc", "context", "secrets"]
    assert inspect.signature(errors.translate).parameters["secrets"].default == ()


@pytest.mark.parametrize("name", sorted(brokers()))
def test_the_fixed_names_of_a_broker_package(name: str) -> None:
    package = importlib.import_module(f"bridges.{name}")
    exported = {n: getattr(package, n) for n in package.__all__}
    assert {"FEATURES", "PLUGIN"} <= set(exported)
    assert any(isinstance(v, type) and issubclass(v, Bridge) for v in exported.values())
    assert any(isinstance(v, type) and issubclass(v, BridgeAdapter) for v in exported.values())
