"""A/B of two (or more) versions of the ``bus`` package in one process, rounds interleaved.

``python -m benchmarks.ab main .`` loads the ``bus`` package twice, once from ``git
archive main bus`` (any commit-ish of this repository) and once from the working tree
(``.``, or any directory holding a ``bus`` package), then runs the chosen cases for each
version round by round — round 1 of every case of every version, then round 2, ... with
the order of the versions reversed every other round — beside the baselines
(``trio_drain``, ``pyee_sync`` by default), and prints per version the median rate of
every case and the ratios against the baselines of the same rounds.

Both versions live in one interpreter: every ``bus`` module of a version is kept in a
dict and put back into ``sys.modules`` before that version's round, and the bus cases
import ``bus`` when they run. The baselines and the benchmark code itself come from the
working tree. Options: ``--cases``, ``--messages``, ``--rounds``, ``--json PATH``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from types import ModuleType
from typing import Any

from . import _baselines as base
from . import _bus_cases as buscases
from ._harness import Sample, human, machine_info
from ._report import ratios as report_ratios
from .local import quiet_logs

BUS_CASES: dict[str, tuple[Callable[[int], Sample], float]] = {
    "bus_1to1": (buscases.bus_1to1, 1.0),
    "bus_1to1_async": (buscases.bus_1to1_async, 1.0),
    "bus_1to1_batch": (buscases.bus_1to1_batch, 1.0),
    "bus_1to1_middleware": (buscases.bus_1to1_middleware, 0.5),  # versions with middleware
    "bus_1to1_nowait": (buscases.bus_1to1_nowait, 1.0),
    "bus_1to1_traced": (buscases.bus_1to1_traced, 1.0),
    "bus_fanout_1to4": (buscases.bus_fanout_1to4, 0.5),
    "bus_keyed_4workers": (buscases.bus_keyed_4workers, 1.0),
    "bus_request_reply": (buscases.bus_request_reply, 0.1),
}
BASELINES: dict[str, Callable[[int], Sample]] = {
    "trio_drain": base.trio_drain,
    "asyncio_queue": base.asyncio_queue,
    "pyee_sync": base.pyee_sync,
    "blinker": base.blinker,
}
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_bus(name: str) -> bool:
    return name == "bus" or name.startswith("bus.")


@dataclass
class Version:
    """One copy of the ``bus`` package and its modules."""

    label: str
    path: str
    modules: dict[str, ModuleType] = field(default_factory=dict)

    def activate(self) -> None:
        for name in [n for n in sys.modules if _is_bus(n)]:
            del sys.modules[name]
        sys.modules.update(self.modules)


def load(label: str, path: str) -> Version:
    """Import the ``bus`` package found in *path* and keep its modules."""
    for name in [n for n in sys.modules if _is_bus(n)]:
        del sys.modules[name]
    sys.path.insert(0, path)
    try:
        importlib.invalidate_caches()
        pkg = importlib.import_module("bus")
        for sub in ("_bus", "_actor", "_mailbox", "_envelope", "_done"):
            importlib.import_module(f"bus.{sub}")
    finally:
        sys.path.remove(path)
    if not os.path.samefile(os.path.dirname(pkg.__file__ or ""), os.path.join(path, "bus")):
        raise SystemExit(f"{label}: imported bus from {pkg.__file__}, not from {path}")
    return Version(label, path, {n: m for n, m in sys.modules.items() if _is_bus(n)})


def checkout(ref: str, into: str) -> str:
    """``git archive <ref> bus`` unpacked under *into*; returns the directory."""
    data = subprocess.run(
        ["git", "archive", ref, "bus"], cwd=HERE, capture_output=True, check=True
    ).stdout
    target = os.path.join(into, ref.replace("/", "_"))
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target


def resolve(spec: str, tmp: str) -> Version:
    if os.path.isdir(os.path.join(spec, "bus")):
        return load(spec, os.path.abspath(spec))
    return load(spec, checkout(spec, tmp))


def run(
    versions: Sequence[Version], cases: Sequence[str], baselines: Sequence[str],
    messages: int, rounds: int,
) -> dict[str, Any]:
    rates: dict[str, list[float]] = {name: [] for name in baselines}
    extras: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        for name in cases:
            rates[f"{v.label}:{name}"] = []
    plan: list[tuple[Version | None, str]] = [(None, b) for b in baselines]
    for v in versions:
        plan += [(v, c) for c in cases]
    # warm-up: every case once, small
    for step, name in plan:
        _one(step, name, max(1000, messages // 20))
    for rnd in range(rounds):
        order = plan if rnd % 2 == 0 else list(reversed(plan))
        for step, name in order:
            sample = _one(step, name, messages)
            key = name if step is None else f"{step.label}:{name}"
            rates[key].append(sample.rate)
            if sample.extra:
                extras.setdefault(key, []).append(sample.extra)
        print(f"round {rnd + 1}/{rounds} done", file=sys.stderr)
    medians = {k: statistics.median(r) for k, r in rates.items()}
    out: dict[str, Any] = {"medians": medians, "rounds": rates, "extras": extras}
    out["ratios"] = {v.label: version_ratios(v.label, rates, extras, baselines) for v in versions}
    return out


def version_ratios(
    label: str, rates: dict[str, list[float]], extras: dict[str, list[dict[str, Any]]],
    baselines: Sequence[str],
) -> dict[str, float | None]:
    """The report's ratios (``_report.ratios``) for one version, from the medians of this
    run; plus, for 1→1 against each baseline, the median of the per-round quotients."""
    cases: dict[str, dict[str, Any]] = {}
    for key, values in rates.items():
        name = key.split(":", 1)[1] if key.startswith(f"{label}:") else key
        if ":" in name:
            continue  # another version's case
        cases[name] = {"ok": True, "median": statistics.median(values)}
        if key in extras:
            cases[name]["extra_rounds"] = extras[key]
    mine: dict[str, float | None] = {
        k: v for k, v in report_ratios(cases).items() if v is not None
    }
    one = rates.get(f"{label}:bus_1to1")
    if one:
        for b in baselines:
            per = [a / c for a, c in zip(one, rates[b], strict=True)]
            mine[f"bus_1to1_vs_{b}_paired"] = round(statistics.median(per), 3)
    return mine


def _one(v: Version | None, name: str, messages: int) -> Sample:
    import gc

    gc.collect()
    if v is None:
        return BASELINES[name](messages)
    v.activate()
    fn, scale = BUS_CASES[name]
    return fn(max(10, int(messages * scale)))


def report(result: dict[str, Any], versions: Sequence[Version], cases: Sequence[str],
           baselines: Sequence[str]) -> str:
    med = result["medians"]
    lines = [f"{'case':<24}" + "".join(f"{v.label[-18:]:>20}" for v in versions)]
    for b in baselines:
        lines.append(f"{b:<24}{human(med[b]):>20}")
    for c in cases:
        lines.append(
            f"{c:<24}" + "".join(f"{human(med[f'{v.label}:{c}']):>20}" for v in versions)
        )
    for c in cases:
        key0 = f"{versions[0].label}:{c}"
        for v in versions[1:]:
            per = [b / a for a, b in zip(result["rounds"][key0], result["rounds"][f"{v.label}:{c}"],
                                          strict=True)]
            lines.append(f"{c} {v.label} / {versions[0].label}: median of per-round "
                         f"quotients {statistics.median(per):.3f}")
    names = sorted({n for v in versions for n in result["ratios"][v.label]})
    lines.append(f"{'ratio':<34}" + "".join(f"{v.label[-18:]:>20}" for v in versions))
    for name in names:
        cells = []
        for v in versions:
            value = result["ratios"][v.label].get(name)
            cells.append(f"{'—' if value is None else f'{value:,.3f}':>20}")
        lines.append(f"{name:<34}" + "".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    p.add_argument("versions", nargs="+", help="git commit-ish or directory holding bus/")
    p.add_argument("--cases", default="bus_1to1,bus_request_reply")
    p.add_argument("--baselines", default="trio_drain,pyee_sync")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    baselines = [b for b in args.baselines.split(",") if b]
    for c in cases:
        if c not in BUS_CASES:
            p.error(f"unknown case {c!r}; choose from {', '.join(BUS_CASES)}")
    for b in baselines:
        if b not in BASELINES:
            p.error(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
    with tempfile.TemporaryDirectory() as tmp, quiet_logs():
        versions = [resolve(spec, tmp) for spec in args.versions]
        started = time.perf_counter()
        result = run(versions, cases, baselines, args.messages, args.rounds)
        text = report(result, versions, cases, baselines)
    print(text)
    print(f"({args.rounds} rounds of {args.messages} messages, "
          f"{time.perf_counter() - started:.0f} s)")
    if args.json:
        result["machine"] = machine_info()
        result["versions"] = [v.label for v in versions]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
