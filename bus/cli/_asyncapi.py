"""``bus asyncapi APP``: print the AsyncAPI 3.0.0 document of an application.

APP is one of:

- ``demo``: the demo shop of ``bus demo`` (its topics, actors and publishers), with
  ``--bridge URL`` its mirror to that broker as ``bus demo --bridge URL`` attaches it;
- a ``bus bridge`` service file (``CONFIG.toml``): its brokers, routes and dead-letter
  destination;
- ``module:function``: ``function(bus)`` (sync or async) declares topics, subscribes and
  attaches on the bus it is given, and may return ``{publisher: [topic, ...]}`` for the
  send operations.

Nothing connects to a broker: bridges are made but not opened (an application's own
``function`` that attaches a bridge does connect it, as its code says). The document is
JSON on stdout, or in ``--out FILE``. JSON is YAML too; no YAML library is a dependency
of trio-bus, so there is no ``--yaml``. Errors are one line and exit 2 (usage) or 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from bus import BusError, ConfigurationError, open_bus
from bus.abc import RawCodec
from bus.asyncapi import BridgeSpec, document

__all__ = ["add_parser", "build", "run"]

EXIT_USAGE = 2
EXIT_FAILED = 1


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "asyncapi", parents=[common],
        help="print the AsyncAPI 3.0 document of an application (bus docs asyncapi)",
    )
    parser.description = (
        "Print the AsyncAPI 3.0.0 document of APP: 'demo' (the demo shop), a bus bridge "
        "service file (CONFIG.toml), or 'module:function' (function(bus) declares topics "
        "and subscriptions). Nothing connects to a broker."
    )
    parser.add_argument("app", metavar="APP", help="demo | CONFIG.toml | module:function")
    parser.add_argument("--out", metavar="FILE", help="write the document to FILE")
    parser.add_argument("--bridge", metavar="URL",
                        help="demo only: describe its mirror to this broker too")
    parser.add_argument("--title", help="info.title (default: the bus's name)")
    parser.add_argument("--doc-version", default="1.0.0", metavar="VERSION",
                        help="info.version, the application's version (default 1.0.0)")


def run(args: argparse.Namespace, error: Callable[[str], None]) -> int:
    try:
        doc = build(args.app, bridge=args.bridge, title=args.title, version=args.doc_version)
    except (ConfigurationError, ImportError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except BusError as exc:
        error(str(exc))
        return EXIT_FAILED
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as exc:
            error(f"cannot write {args.out}: {exc.strerror or exc}")
            return EXIT_FAILED
    else:
        sys.stdout.write(text)
    return 0


def build(
    app: str, *, bridge: str | None = None, title: str | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """The document of *app* (see the module docstring)."""
    if bridge is not None and app != "demo":
        raise ConfigurationError("--bridge goes with APP 'demo' only")
    if app == "demo":
        return trio.run(_demo, bridge, title, version)
    if app.endswith(".toml") or Path(app).is_file():
        return trio.run(_service, app, title, version)
    if ":" in app:
        return trio.run(_function, app, title, version)
    raise ConfigurationError(
        f"APP {app!r} is not 'demo', a .toml service file, nor 'module:function'"
    )


def _describe() -> Any:
    from bridges import asyncapi_side

    return asyncapi_side


async def _demo(url: str | None, title: str | None, version: str) -> dict[str, Any]:
    from .demo.report import DEAD_LETTER_TOPIC, Trace
    from .demo.shop import RETRY, SHOP_REQUESTS, SHOP_SENDS, SHOP_TOPICS, open_shop

    specs: list[BridgeSpec] = []
    if url is not None:
        from bridges import from_url

        specs.append(BridgeSpec(from_url(url), (*SHOP_TOPICS, DEAD_LETTER_TOPIC)))
    async with open_bus(name="shop", retry=RETRY, dead_letter_topic=DEAD_LETTER_TOPIC) as bus:
        open_shop(bus, Trace(lambda line: None), 0, 0.0, {})
        doc = document(
            bus, title=title or "trio-bus demo shop", version=version,
            description="Orders, inventory and payments as actors on one bus (bus demo).",
            sends=SHOP_SENDS, requests=SHOP_REQUESTS, bridges=specs, describe=_describe(),
        )
        for sub in bus.subscriptions():
            sub.close()
    return doc


async def _service(path: str, title: str | None, version: str) -> dict[str, Any]:
    from ._service.config import load

    config = load(path)
    specs = [
        BridgeSpec(broker.make(), tuple(config.exports(name)), tuple(config.imports(name)))
        for name, broker in config.brokers.items()
    ]
    payloads = {r.pattern: (RawCodec() if r.payload == "raw" else object)
                for r in config.routes}
    dead_letter = config.dead_letter.topic if config.dead_letter else "bus.dead_letter"
    async with open_bus(name=config.name, dead_letter_topic=dead_letter) as bus:
        doc = document(
            bus, title=title or config.name, version=version,
            description=f"The bus bridge service of {config.path}.",
            payloads=payloads, bridges=specs, describe=_describe(),
        )
    if config.dead_letter is not None:  # where the service keeps its dead letters
        destination = {"bridge": config.dead_letter.broker, "topic": config.dead_letter.topic}
        if config.dead_letter.place is not None:
            destination["keptIn"] = config.dead_letter.place
        doc["x-trio-bus-dead-letter-destination"] = destination
    return doc


async def _function(ref: str, title: str | None, version: str) -> dict[str, Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"APP {ref!r}: no module {exc.name!r} to import") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigurationError(f"APP {ref!r}: {module_name} has no function {attr!r}")
    async with open_bus(name=module_name) as bus:
        sends = fn(bus)
        if inspect.isawaitable(sends):
            sends = await sends
        if sends is not None and not _is_sends(sends):
            raise ConfigurationError(
                f"APP {ref!r} returned {type(sends).__name__}; return None or "
                "{publisher: [topic, ...]}"
            )
        doc = document(bus, title=title, version=version, sends=sends,
                       describe=_describe())
        for sub in bus.subscriptions():
            sub.close()
    return doc


def _is_sends(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, Sequence) and not isinstance(v, str)
        for k, v in value.items()
    )
