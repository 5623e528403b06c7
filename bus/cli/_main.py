"""The ``bus`` command line: argparse front door for the subcommands.

``bus tail``, ``bus publish`` and ``bus topics`` (a broker URL each) are in
``_brokers.py``; ``bus bridge CONFIG.toml`` is the service (``_service/``); ``bus bench``
runs the benchmark suites of a source checkout (``_bench.py``); ``bus docs`` prints
the installed documentation (``_docs.py``); ``bus dead-letters`` lists, counts and
replays dead letters (``_dead_letters.py``); ``bus demo`` is the
example application ``bus.cli.demo`` (``add_arguments`` and ``run``), imported only when
that subcommand is chosen.

Before running a command, ``main`` configures logging (``_log.py``: structlog, at
``--log-level``). Every failure the user can cause ends with one line on stderr and a
non-zero exit (2 usage, 1 failure), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from . import _bench

PROG = "bus"
EXIT_USAGE = 2

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr, not the usage block (subparsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _log_options(default: str | None) -> _Parser:
    """``--log-level``, accepted before and after the subcommand."""
    from ._log import LEVELS

    options = _Parser(add_help=False)
    options.add_argument(
        "--log-level", choices=LEVELS, metavar="LEVEL",
        default=default if default is not None else argparse.SUPPRESS,
        help="log events at LEVEL and above on stderr: human-readable on a terminal, JSON "
        f"lines otherwise; one of {', '.join(LEVELS)} (default warning)",
    )
    return options


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trio-bus")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser(demo: ModuleType | None = None) -> argparse.ArgumentParser:
    """The full parser; the demo's own options are added only when ``demo`` is given."""
    from . import _brokers

    parser = _Parser(
        prog=PROG, description="trio-bus: a typed, actor-style event bus on trio.",
        parents=[_log_options(None)],
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (trio-bus) {_version()}",
        help="print the installed trio-bus version and exit",
    )
    common = _log_options(None)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    demo_parser = commands.add_parser(
        "demo", parents=[common], help="run the modular-monolith demo on the memory bus"
    )
    if demo is not None:
        demo.add_arguments(demo_parser)

    _brokers.add_parsers(commands, common)

    from . import _service  # `bus bridge CONFIG.toml` (docs/service.md)

    _service.add_arguments(
        commands.add_parser("bridge", parents=[common], help="mirror topics between brokers")
    )
    _bench.add_parser(commands, common)
    from . import _docs

    _docs.add_parser(commands, common)
    from . import _asyncapi  # `bus asyncapi APP` (docs/asyncapi.md)

    _asyncapi.add_parser(commands, common)
    from . import _dead_letters  # `bus dead-letters list|count|replay URL [TOPIC]`

    _dead_letters.add_parser(commands, common)
    return parser


def _load_demo() -> ModuleType | None:
    try:
        return importlib.import_module("bus.cli.demo")
    except ModuleNotFoundError as exc:
        if exc.name == "bus.cli.demo":
            return None
        raise


def _command_of(args: list[str]) -> str | None:
    """The subcommand named in *args* (skipping ``--log-level LEVEL`` before it)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--log-level":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    demo: ModuleType | None = None
    if _command_of(args_list) == "demo":
        demo = _load_demo()
        if demo is None:
            _error("the demo is not available in this build (module bus.cli.demo is missing)")
            return EXIT_USAGE
    args = build_parser(demo).parse_args(args_list)
    from ._log import configure

    # None when not given: a command with a level of its own (`bus bridge`'s config) sets it
    restore_logging = configure(getattr(args, "log_level", None) or "warning")
    try:
        return _run(args, demo)
    finally:
        restore_logging()


def _run(args: argparse.Namespace, demo: ModuleType | None) -> int:
    try:
        if args.command == "demo":
            assert demo is not None
            return int(demo.run(args))
        if args.command == "bench":
            return _bench.run(args)
        if args.command == "bridge":
            from . import _service

            return _service.run(args)
        if args.command == "docs":
            from . import _docs

            return _docs.run(args, _error)
        if args.command == "dead-letters":
            from . import _dead_letters

            return _dead_letters.run(args, _error)
        if args.command in ("tail", "publish", "topics"):
            from . import _brokers

            return _brokers.run(args, _error)
        if args.command == "asyncapi":
            from . import _asyncapi

            return _asyncapi.run(args, _error)
    except KeyboardInterrupt:
        if args.command != "tail":  # Ctrl-C is how a tail without --count ends
            _error("interrupted")
        return 130
    _error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
