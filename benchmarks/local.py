"""The local suite: every in-process case in one run, and the report built from it.

``run(size)`` measures the baselines and the bus side by side (rounds interleaved),
then the latency case paced at half of the bus's measured 1→1 median, and returns a
JSON-ready report: machine facts, per-case rates, ``ratios`` (a fixed set of keys),
``extra_ratios`` (optional peers), ``targets`` and ``met``.
``bus bench local`` (``bus/_cli.py``) is the command-line face of this module.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from . import _baselines as base
from . import _bus_cases as buscases
from ._harness import FULL, QUICK, TINY, Case, Progress, Sample, Size, machine_info, run_rounds
from ._report import extra_ratios, met, ratios, table, targets_json, write_png

__all__ = ["FULL", "QUICK", "TINY", "Size", "run", "table", "write_png"]

FASTSTREAM_SCALE = 0.01


def throughput_cases(with_faststream: bool) -> list[Case]:
    """Baselines first, then the bus; the order is also the table's order."""
    cases = [
        Case(
            "trio_drain",
            "trio channel send_nowait/receive_nowait (the floor)",
            "msg/s",
            base.trio_drain,
        ),
        Case(
            "trio_await",
            "trio channel await send / async for",
            "msg/s",
            base.trio_await,
            scale=0.25,
        ),
        Case("asyncio_queue", "asyncio.Queue 1→1, own asyncio.run", "msg/s", base.asyncio_queue),
        Case("pyee_sync", "pyee EventEmitter.emit → sync handler", "msg/s", base.pyee_sync),
        Case(
            "pyee_async",
            "pyee AsyncIOEventEmitter → async handler",
            "msg/s",
            base.pyee_async,
            scale=0.25,
        ),
        Case("blinker", "blinker Signal.send → receiver", "msg/s", base.blinker),
    ]
    if with_faststream:
        cases.append(
            Case(
                "faststream_kafka",
                "FastStream TestKafkaBroker publish → handler",
                "msg/s",
                base.faststream_kafka,
                scale=FASTSTREAM_SCALE,
            )
        )
    cases += [
        Case("bus_1to1", "bus publish → sync typed handler", "msg/s", buscases.bus_1to1),
        Case(
            "bus_1to1_async", "bus publish → async typed handler", "msg/s", buscases.bus_1to1_async
        ),
        Case(
            "bus_1to1_batch",
            f"bus publish_batch of {buscases.BATCH} → sync typed handler",
            "msg/s",
            buscases.bus_1to1_batch,
        ),
        Case(
            "bus_1to1_middleware",
            "bus publish → sync handler, one no-op middleware (publish + handle)",
            "msg/s",
            buscases.bus_1to1_middleware,
            scale=0.5,
        ),
        Case(
            "bus_fanout_1to4",
            "bus 1 topic → 4 subscribers",
            "deliveries/s",
            buscases.bus_fanout_1to4,
            scale=0.5,
        ),
        Case(
            "bus_keyed_4workers",
            f"bus concurrency=4, {buscases.KEYS} keys, order checked",
            "msg/s",
            buscases.bus_keyed_4workers,
        ),
        Case(
            "bus_request_reply",
            "bus request → responder → reply, sequential",
            "round trips/s",
            buscases.bus_request_reply,
            scale=0.1,
        ),
    ]
    return cases


def latency_case(rate: float) -> Case:
    return Case(
        "bus_latency",
        f"publish→handler latency, paced at {rate:,.0f} msg/s (half the 1→1 median)",
        "msg/s paced",
        functools.partial(buscases.bus_latency, rate=rate),
        scale=0.5,
    )


def faststream_available() -> bool:
    return importlib.util.find_spec("faststream") is not None


def run(
    size: Size = FULL,
    *,
    progress: bool = True,
    only: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run the suite and return the report (see the module docstring)."""
    started = time.perf_counter()
    with quiet_logs():
        return _run(size, progress, only, started)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep the bus's debug lifecycle events out of the table; restore after.

    The bus is silent unless structlog or stdlib logging is configured (``bus/_log.py``);
    only a configured structlog needs filtering here.
    """
    import structlog

    if not structlog.is_configured():
        yield
        return
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def _run(size: Size, progress: bool, only: Iterable[str] | None, started: float) -> dict[str, Any]:
    cases = throughput_cases(with_faststream=faststream_available())
    if only is not None:
        wanted = set(only)
        cases = [c for c in cases if c.name in wanted or c.name == "bus_1to1"]
    with_latency = only is None or "bus_latency" in set(only)
    bar = Progress(
        len(cases) * size.rounds + (size.rounds if with_latency else 0), enabled=progress
    )
    run_rounds(cases, size, bar)
    one_to_one = next(c for c in cases if c.name == "bus_1to1")
    if with_latency:
        if one_to_one.samples:
            rate = sorted(s.rate for s in one_to_one.samples)[len(one_to_one.samples) // 2] / 2
            lat = latency_case(rate)
        else:
            lat = Case("bus_latency", "publish→handler latency", "msg/s paced", _no_rate)
            lat.error = "skipped: bus_1to1 did not run"
        run_rounds([lat], size, bar)
        cases.append(lat)
    results = {c.name: c.result() for c in cases}
    values = ratios(results)
    extras = extra_ratios(results)
    return {
        "suite": "local",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"messages": size.messages, "rounds": size.rounds},
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "cases": results,
        "ratios": values,
        "extra_ratios": extras,
        "targets": targets_json(),
        "met": met({**values, **extras}),
        "keyed_order_ok": _keyed_order_ok(results),
        "failures": [
            f"{c.name}: {c.error}" for c in cases if c.error and c.error.startswith("FAILED")
        ],
    }


def _no_rate(n: int) -> Sample:
    raise RuntimeError("unreachable: bus_latency has no rate to pace at")


def _keyed_order_ok(results: dict[str, dict[str, Any]]) -> bool | None:
    keyed = results.get("bus_keyed_4workers")
    if keyed is None:
        return None
    if keyed["ok"]:
        return True
    return False if str(keyed["error"]).startswith("FAILED") else None


def _main(argv: list[str]) -> int:
    """``python -m benchmarks.local REPORT.json``: the report's tables as Markdown."""
    import json
    import sys

    from ._report import markdown

    if len(argv) != 1:
        print("usage: python -m benchmarks.local REPORT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(markdown(json.load(f)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
