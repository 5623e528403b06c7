"""Where a case spends its time: cProfile of one case, per-message costs in µs.

``python -m benchmarks.hotspots bus_1to1 --messages 200000`` runs the case once
without a profiler (the honest rate), then once under ``cProfile``, and prints the
functions with the most own time as µs per message (``tottime / messages``) beside
their cumulative cost. cProfile inflates every Python call by a roughly constant
amount, so read the per-message numbers as shares of the profiled total, which is
printed next to the unprofiled one. For a sampling view, run the same case under
pyinstrument: ``python -m pyinstrument -m benchmarks.hotspots bus_1to1 --no-profile``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections.abc import Callable, Sequence

from . import _baselines as base
from . import _bus_cases as buscases
from ._harness import Sample, human

CASES: dict[str, Callable[[int], Sample]] = {
    "bus_1to1": buscases.bus_1to1,
    "bus_1to1_async": buscases.bus_1to1_async,
    "bus_fanout_1to4": buscases.bus_fanout_1to4,
    "bus_keyed_4workers": buscases.bus_keyed_4workers,
    "bus_request_reply": buscases.bus_request_reply,
    "trio_drain": base.trio_drain,
    "asyncio_queue": base.asyncio_queue,
}


def profile(name: str, messages: int, top: int) -> str:
    """Run ``name`` plain, then profiled; return the printable report."""
    case = CASES[name]
    case(min(messages, 10_000))  # warm imports and caches
    plain = case(messages)
    profiler = cProfile.Profile()
    profiler.enable()
    profiled = case(messages)
    profiler.disable()
    per = 1e6 / plain.count
    lines = [
        f"{name}: {plain.count} units, plain {human(plain.rate)}/s = "
        f"{plain.seconds * per:.3f} µs/unit; under cProfile {profiled.seconds * per:.3f} µs/unit",
        f"{'calls/unit':>10} {'own µs':>8} {'cum µs':>8}  function",
    ]
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{_short(filename)}:{line}({func})"))
    rows.sort(reverse=True)
    for tt, ct, nc, where in rows[:top]:
        lines.append(f"{nc / plain.count:>10.2f} {tt * per:>8.3f} {ct * per:>8.3f}  {where}")
    return "\n".join(lines)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotspots")
    parser.add_argument("case", nargs="?", default="bus_1to1", choices=sorted(CASES))
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--no-profile", action="store_true", help="just run the case (for external profilers)"
    )
    args = parser.parse_args(argv)
    if args.no_profile:
        sample = CASES[args.case](args.messages)
        print(f"{args.case}: {human(sample.rate)}/s")
        return 0
    print(profile(args.case, args.messages, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
