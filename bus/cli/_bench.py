"""``bus bench SUITE``: the benchmark suites' options and how each is run.

The suites live in the repository's ``benchmarks/`` folder, which is not part of the
installed wheel: from a source checkout (``pip install -e '.[bench]'``) ``bus bench``
imports them from the checkout; from an installed wheel it says that it needs one.
``local`` measures the in-memory bus against its baselines (``benchmarks.local``),
``bridges`` the broker bridges (``benchmarks.bridges``, needs the brokers running),
``memory`` the resident size under overload, ``scale`` the bus at a small and a large
size (``benchmarks.scale``), ``all`` the four; ``--plot PATH`` draws each ratio against
its target (``benchmarks.plot``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["add_parser", "run"]

PROG = "bus"
EXIT_USAGE = 2
EXIT_FAILED = 1

_PLOT_HELP = (
    "draw every ratio of the run against its target as a PNG chart (needs matplotlib, "
    "the bench extra)"
)


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``bus bench`` and its suites, on the subcommands action *commands*."""
    bench = commands.add_parser("bench", parents=[common], help="run a benchmark suite")
    suites = bench.add_subparsers(dest="suite", metavar="SUITE", required=True)
    local = suites.add_parser(
        "local", parents=[common],
        help="in-process bus vs trio, asyncio, pyee, blinker",
        description="Measure the in-memory bus against its baselines in one run and "
        "report rates, ratios and latency.",
    )
    local.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    local.add_argument("--png", metavar="PATH", help="draw a bar chart (needs matplotlib)")
    local.add_argument("--plot", metavar="PATH", help=_PLOT_HELP)
    size = local.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="fewer messages and rounds (under a minute)"
    )
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke tests
    local.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    bridges = suites.add_parser(
        "bridges", parents=[common],
        help="the bridges vs the raw clients and FastStream (needs brokers)",
        description="Measure the Kafka, RabbitMQ and Kinesis bridges against plain "
        "aiokafka, aio-pika and aioboto3, FastStream's real brokers and confluent-kafka, on "
        "the brokers of `make -s brokers-env` (default: 127.0.0.1), in one run.",
    )
    bridges.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    bridges_size = bridges.add_mutually_exclusive_group()
    bridges_size.add_argument(
        "--quick", action="store_true", help="fewer messages and rounds (about 2 minutes)"
    )
    bridges_size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    bridges.add_argument(
        "--runtimes", metavar="KINDS", type=_runtimes, default=(),
        help="also run the bridge cases on these asyncio runtimes, comma-separated "
        "(thread, trio-asyncio), to compare them",
    )
    bridges.add_argument(
        "--only", metavar="NAMES", type=_names, default=(),
        help="run a subset: brokers (kafka, rabbitmq, kinesis, pubsub, redis) and/or case "
        "names, comma-separated",
    )
    bridges.add_argument(
        "--case-timeout", metavar="SECONDS", type=_non_negative_float, default=None,
        help="seconds one round of a case may take before it is killed and the case "
        "reported failed (default 300; 0: no bound, rounds run in this process)",
    )
    bridges.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    bridges.add_argument("--plot", metavar="PATH", help=_PLOT_HELP)
    scale = suites.add_parser(
        "scale", parents=[common],
        help="the bus at a small and a large size: topics, patterns, keys, publishers...",
        description="Measure each dimension of an application's size (10k topics and "
        "1,000 patterns, routes after a subscription change, 1M keys, 64 subscribers, "
        "10,000 blocked publishers, 10,000 requests, subscribe/close at 8,000 "
        "subscriptions) as a ratio to the same bus at its small size, in one run.",
    )
    scale.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    scale.add_argument("--plot", metavar="PATH", help=_PLOT_HELP)
    scale_size = scale.add_mutually_exclusive_group()
    scale_size.add_argument(
        "--quick", action="store_true", help="fewer messages and rounds (about a minute)"
    )
    scale_size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    scale.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    every = suites.add_parser(
        "all", parents=[common],
        help="local, memory, scale and bridges in one run (bridges need brokers)",
        description="Run the local, memory, scale and bridges suites one after the other; "
        "--json writes their reports in one file, --plot one chart of every ratio "
        "against its target.",
    )
    every.add_argument("--json", metavar="PATH", help="write the reports as one JSON file")
    every.add_argument("--plot", metavar="PATH", help=_PLOT_HELP)
    every_size = every.add_mutually_exclusive_group()
    every_size.add_argument(
        "--quick", action="store_true",
        help="fewer messages and rounds, 10 s of memory (about 4 minutes)",
    )
    every_size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    every.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    memory = suites.add_parser(
        "memory", parents=[common],
        help="resident size under 10x overload with a slow subscriber",
        description="Publish at 10x what a slow subscriber handles and watch the resident "
        "size: flat under the block policy, growing through an unbounded channel.",
    )
    memory.add_argument("--seconds", type=_positive_float, default=60.0, help="default 60")
    memory.add_argument(
        "--contrast-seconds", type=_positive_float, default=10.0,
        help="how long the unbounded channel runs (default 10)",
    )
    memory.add_argument("--json", metavar="PATH", help="write the report as JSON")
    memory.add_argument("--plot", metavar="PATH", help=_PLOT_HELP)


def _runtimes(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("thread", "trio-asyncio")]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown runtime {', '.join(bad) or repr(text)}: use thread and/or trio-asyncio"
        )
    return kinds


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give broker or case names, e.g. --only kafka,redis")
    return names


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _suite(name: str) -> ModuleType:
    """``benchmarks.NAME`` from the source checkout this ``bus`` runs from.

    Raises:
        ModuleNotFoundError: no checkout (an installed wheel), or a library of the bench
            extra is missing; :func:`run` turns it into one line.
    """
    if importlib.util.find_spec("benchmarks") is None:
        # an editable install maps bus/ and bridges/ only: benchmarks/ sits beside them
        root = Path(__file__).resolve().parents[2]
        if (root / "benchmarks" / "__init__.py").is_file() and str(root) not in sys.path:
            sys.path.append(str(root))
    return importlib.import_module(f"benchmarks.{name}")


def _missing(exc: ModuleNotFoundError, extras: str = "bench") -> str:
    if exc.name is not None and exc.name.split(".")[0] == "benchmarks":
        return (
            "bus bench needs a source checkout of trio-bus: the benchmark suite "
            "(benchmarks/) is not part of the installed package; clone the repository, "
            f"run `pip install -e '.[{extras}]'` in it and run `bus bench` from there"
        )
    return f"the benchmarks need {exc.name}: pip install -e '.[{extras}]' in the checkout"


def run(args: argparse.Namespace) -> int:
    """Run the suite *args* names and return the exit code; errors are one line."""
    try:
        local, memory = _suite("local"), _suite("memory")
    except ModuleNotFoundError as exc:
        _error(_missing(exc))
        return EXIT_USAGE
    for option in ("json", "png", "plot"):
        path = getattr(args, option, None)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            _error(f"--{option} {path}: directory does not exist")
            return EXIT_USAGE
    for option in ("png", "plot"):
        path = getattr(args, option, None)
        if path and importlib.util.find_spec("matplotlib") is None:
            print(
                f"{PROG}: note: matplotlib is not installed; --{option} {path} will be "
                "skipped (pip install -e '.[bench]')",
                file=sys.stderr,
            )
    if args.suite == "memory":
        return _bench_memory(args, memory)
    if args.suite == "bridges":
        return _bench_bridges(args)
    if args.suite == "scale":
        report = _bench_scale(args)
        _plot(args, [report])
        return _scale_exit(report)
    if args.suite == "all":
        return _bench_all(args, local, memory)
    report = _bench_local(args, local)
    _plot(args, [report])
    return EXIT_FAILED if report["failures"] else 0


def _bench_local(args: argparse.Namespace, local: ModuleType) -> dict[str, Any]:
    size = local.TINY if args.tiny else local.QUICK if args.quick else local.FULL
    report: dict[str, Any] = local.run(size, progress=not args.no_progress)
    print(local.table(report))
    if getattr(args, "json", None) and args.suite == "local":
        _write_json(report, args.json)
        print(f"report written to {args.json}")
    if getattr(args, "png", None):
        print(local.write_png(report, args.png))
    for failure in report["failures"]:
        _error(failure)
    return report


def _bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    scale = _suite("scale")
    size = scale.TINY if args.tiny else scale.QUICK if args.quick else scale.FULL
    report: dict[str, Any] = scale.run(size, progress=not args.no_progress)
    print(scale.table(report))
    if getattr(args, "json", None) and args.suite == "scale":
        _write_json(report, args.json)
        print(f"report written to {args.json}")
    return report


def _scale_exit(report: dict[str, Any]) -> int:
    """As with ``local``, a missed scale target is a result, not a failure of the run:
    the table says NO; only a case that broke fails the command."""
    for failure in report["failures"]:
        _error(failure)
    return EXIT_FAILED if report["failures"] else 0


def _plot(args: argparse.Namespace, reports: list[dict[str, Any]]) -> None:
    if args.plot:
        print(_suite("plot").write_plot(reports, args.plot))


def _bench_all(args: argparse.Namespace, local: ModuleType, memory: ModuleType) -> int:
    """local, memory, scale, then bridges; one JSON file and one chart for the four."""
    try:
        bridges = _suite("bridges")
    except ModuleNotFoundError as exc:
        _error(_missing(exc, "bench,kafka,rabbitmq"))
        return EXIT_USAGE
    print("== local")
    reports = [_bench_local(args, local)]
    print("\n== memory")
    seconds = (2.0, 1.0) if args.tiny else (10.0, 3.0) if args.quick else (60.0, 10.0)
    reports.append(_run_memory(memory, *seconds, progress=not args.no_progress))
    print(memory.table(reports[-1]))
    print("\n== scale")
    reports.append(_bench_scale(args))
    print("\n== bridges")
    size = bridges.TINY if args.tiny else bridges.QUICK if args.quick else bridges.FULL
    reports.append(bridges.run(size, progress=not args.no_progress))
    print(bridges.table(reports[-1]))
    failures = [*reports[0]["failures"], *reports[2]["failures"], *reports[3]["failures"]]
    for failure in [*reports[2]["failures"], *reports[3]["failures"]]:
        _error(failure)
    if not reports[1]["met"]:
        failures.append("memory: the resident size target was not met")
    if args.json:
        _write_json({"suite": "all", "reports": reports}, args.json)
        print(f"reports written to {args.json}")
    _plot(args, reports)
    return EXIT_FAILED if failures else 0


def _bench_bridges(args: argparse.Namespace) -> int:
    try:
        bridges = _suite("bridges")
    except ModuleNotFoundError as exc:
        _error(_missing(exc, "bench,kafka,rabbitmq"))
        return EXIT_USAGE
    size = bridges.TINY if args.tiny else bridges.QUICK if args.quick else bridges.FULL
    timeout = bridges.CASE_BOUND if args.case_timeout is None else args.case_timeout
    try:
        report = bridges.run(
            size, progress=not args.no_progress, runtimes=args.runtimes, only=args.only,
            bound=timeout or None,
        )
    except bridges.UnknownCase as exc:
        _error(str(exc))
        return EXIT_USAGE
    print(bridges.table(report))
    if args.json:
        _write_json(report, args.json)
        print(f"report written to {args.json}")
    _plot(args, [report])
    for failure in report["failures"]:
        _error(failure)
    return EXIT_FAILED if report["failures"] else 0


def _run_memory(
    memory: ModuleType, seconds: float, contrast: float, progress: bool = True
) -> dict[str, Any]:
    """The memory suite, its progress rewritten in place on stderr when it is a terminal."""
    shown = progress and sys.stderr.isatty()

    def step(case: str, fraction: float) -> None:
        if shown:
            print(f"\r{case:<20} {fraction:6.1%}", end="", file=sys.stderr, flush=True)

    report: dict[str, Any] = memory.run(seconds, contrast, step)
    if shown:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr)
    return report


def _bench_memory(args: argparse.Namespace, memory: ModuleType) -> int:
    report = _run_memory(memory, args.seconds, args.contrast_seconds)
    print(memory.table(report))
    if args.json:
        _write_json(report, args.json)
        print(f"report written to {args.json}")
    _plot(args, [report])
    return 0 if report["met"] else EXIT_FAILED


def _write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")

