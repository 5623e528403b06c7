"""The project"s import contract: which folder may import which (docs/design.md).

    bus (the core)          bus/*.py and bus/testing/: imports no bridge, no benchmark and
                            no application (bus.cli, bus.events), not even lazily inside
                            a function; bus/__main__.py (``python -m bus``) aside
    bus.events (the facade) the core through bus, bus.abc, bus.testing only
    bus.cli (the command)   the core the same way, and bus.events; the only part of bus/
                            that imports bridges (or benchmarks, from a checkout)
    bridges                 the core through bus, bus.abc, bus.testing only (and the
                            facade through bus.events, for the facade's backends)

Every ``import`` and ``from ... import`` anywhere in a file counts (inside functions too),
and so does ``importlib.import_module("...")`` with a literal name. The check reads the
source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bus", "bridges")
PUBLIC_CORE = ("bus", "bus.abc", "bus.asyncapi", "bus.testing")
APPLICATIONS = ("bus.cli", "bus.events")

# Violations not yet removed, as (importing module, imported module). Stages of issue 16
# empty this list; it must be empty when the issue is done.
KNOWN: set[tuple[str, str]] = set()


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(root: Path, module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_module(root: Path, name: str) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(root: Path, path: Path) -> Iterator[str]:
    """Every module *path* imports, absolute, lazy imports and import_module included."""
    module = module_name(root, path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(root, module, is_package, node)
            yield base
            for alias in node.names:  # `from bus import _bus` imports the module bus._bus
                if _is_module(root, f"{base}.{alias.name}"):
                    yield f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def _layer(module: str) -> str:
    if _within(module, "bridges"):
        return "bridges"
    if module == "bus.__main__":
        return "main"
    for app in APPLICATIONS:
        if _within(module, app):
            return app
    return "core"


def _allowed_core_use(importer: str, imported: str) -> bool:
    """Outside the core, the core is used through its public modules only."""
    if imported in PUBLIC_CORE:
        return True
    own = next((a for a in APPLICATIONS if _within(importer, a)), None)
    if own is not None and _within(imported, own):
        return True  # an application"s own modules
    from_facade_user = importer.startswith("bus.cli") or _within(importer, "bridges")
    return from_facade_user and imported == "bus.events"


def violations(root: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = module_name(root, path)
            layer = _layer(importer)
            for imported in imports(root, path):
                outside = _within(imported, "bridges") or _within(imported, "benchmarks")
                if layer == "core":
                    app = any(_within(imported, a) for a in APPLICATIONS)
                    if outside or app:
                        found.add((importer, imported))
                elif layer == "bus.events" and outside:
                    found.add((importer, imported))
                if layer in ("bridges", *APPLICATIONS) and _within(imported, "bus"):
                    if not _allowed_core_use(importer, imported):
                        found.add((importer, imported))
    return found


def test_the_layers_hold() -> None:
    found = violations(ROOT)
    new = sorted(found - KNOWN)
    assert not new, "imports across the layers (see this file's docstring):\n" + "\n".join(
        f"  {a} imports {b}" for a, b in new
    )
    gone = sorted(KNOWN - found)
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(f"  {a} -> {b}" for a, b in gone)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"bus/__init__.py": "", "bridges/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a core module importing a bridge lazily, inside a function
            {"bus/_x.py": "def f():\n    from bridges import kafka\n"},
            {("bus._x", "bridges")},
        ),
        (  # ... or by name
            {"bus/_x.py": "import importlib\nimportlib.import_module('bridges.kafka')\n"},
            {("bus._x", "bridges.kafka")},
        ),
        (  # the core importing an application
            {"bus/testing/_k.py": "from ..cli import main\n", "bus/cli/__init__.py": ""},
            {("bus.testing._k", "bus.cli")},
        ),
        (  # a bridge reaching a core private, relative or absolute
            {"bridges/k.py": "from bus._log import get_logger\nfrom bus import _bus\n",
             "bus/_log.py": "", "bus/_bus.py": ""},
            {("bridges.k", "bus._log"), ("bridges.k", "bus._bus")},
        ),
        (  # a broker's facade backend: bus.events yes, its private modules no
            {"bridges/a.py": "from bus.events import BridgeAdapter\n"
                             "from bus.events._message import EventMessage\n",
             "bus/events/__init__.py": "", "bus/events/_message.py": ""},
            {("bridges.a", "bus.events._message")},
        ),
        (  # the facade importing a bridge; the CLI may
            {"bus/events/_a.py": "import bridges\n", "bus/cli/_c.py": "import bridges\n"},
            {("bus.events._a", "bridges")},
        ),
        (  # allowed: public core names, an application"s own privates, python -m bus
            {"bus/cli/_c.py": "from bus.abc import Bridge\nfrom ._d import x\n"
                              "from bus.events import BaseEvent\n",
             "bus/cli/_d.py": "", "bus/__main__.py": "from bus.cli import main\n",
             "bridges/k.py": "from bus.testing import check_bridge\n"
                             "from bus.events import EventAdapter\n"},
            set(),
        ),
    ],
)
def test_the_check_finds_each_kind_of_crossing(
    tmp_path: Path, files: dict[str, str], expected: set[tuple[str, str]]
) -> None:
    assert violations(_tree(tmp_path, files)) == expected
