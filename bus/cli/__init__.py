"""The ``bus`` command (``bus = "bus.cli:main"``): an application on top of the core.

``bus demo`` (the example application :mod:`bus.cli.demo`), ``bus tail``/``publish``/
``topics`` against any backend by URL, ``bus bridge CONFIG.toml`` (the bridge service),
``bus bench`` (the benchmark suites, from a source checkout). This package is the only
part of ``bus`` that imports ``bridges`` (and ``benchmarks``); it uses the core through
``bus``, ``bus.abc`` and ``bus.testing`` only, and knows the brokers only through the
registry (``bus.abc.brokers()``). See ``docs/cli.md``.

Re-exports only; the code lives in the private modules beside it.
"""

from ._main import build_parser as build_parser
from ._main import main as main

__all__ = ["build_parser", "main"]
