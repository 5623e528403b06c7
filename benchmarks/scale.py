"""The scale suite: the bus as the application grows, each dimension a ratio in one run.

Issue 18 and SPEC §6 ask that the bus stay flat as an application grows. Every
dimension here measures the same bus at a small and a large size, back to back in the
same round (their order swapped every other round), and reports the median of the
per-round quotients ``large / small``. A rate is a few hundred thousand messages; a
cost is the fastest of several timed batches of the operation (a batch lasts
milliseconds, so on a shared machine the fastest is the one no other process
interrupted):

- rates (msg/s, deliveries/s, round trips/s; higher is better, target ``>=``): 1→1 on a
  bus with 10k other topics and 1,000 wildcard subscribers, keyed delivery over 1M
  rotating keys (and 4,097 against 4,096, where a cliff used to be), fan-out to 64
  subscribers, ``publish_batch`` against ``publish`` on the same fan-out, 10,000
  publisher tasks blocked on one mailbox, 10,000 requests in flight;
- costs (seconds per call; lower is better, target ``<=``): the first publish of every
  topic right after a subscription change against a memoised one, at 1,000 topics x
  1,000 patterns (the worst of five kinds of change, each also reported);
  ``subscribe``, ``close`` and ``delete_topic`` at 10k topics and 8,000 subscriptions
  against an empty bus; building a route that 8,000 subscriptions match against one
  that 1,000 match, per match (linear: 1);
- plain measures: bytes per retained message and per routed topic, ``stats()`` and
  leaving the bus at 8,000 subscriptions.

``bus bench scale`` is the command; ``python -m benchmarks.scale [--quick] OLD NEW``
runs the suite against several versions of the ``bus`` package in one process (as
``benchmarks.ab`` does), rounds interleaved, for a before/after table. The cases use
only the public API (``benchmarks/_scale_cases.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from . import _scale_cases as cases
from ._harness import Progress, human, machine_info
from ._report import Targets, met, targets_json

__all__ = ["FULL", "QUICK", "TINY", "Scale", "run", "table"]


@dataclass(frozen=True)
class Scale:
    """How much work one run does, and how large "large" is."""

    messages: int
    rounds: int
    topics: int = 10_000
    patterns: int = 1_000
    route_topics: int = 1_000
    route_patterns: int = 1_000
    route_cycles: int = 3
    keys: int = 1_000_000
    small_keys: int = 64
    subscribers: int = 64
    small_subscribers: int = 4
    publishers: int = 10_000
    small_publishers: int = 2_000
    requests: int = 10_000
    small_requests: int = 2_000
    sub_topics: int = 10_000
    subscriptions: int = 8_000
    calls: int = 200
    matches: int = 8_000
    small_matches: int = 1_000
    retained: int = 20_000


FULL = Scale(messages=400_000, rounds=5)
QUICK = Scale(messages=100_000, rounds=3)
TINY = Scale(
    messages=400, rounds=1, topics=60, patterns=6, route_topics=20, route_patterns=5,
    route_cycles=1, keys=700, small_keys=8, subscribers=8, small_subscribers=2,
    publishers=40, small_publishers=8, requests=40, small_requests=8, sub_topics=50,
    subscriptions=40, calls=5, matches=80, small_matches=10, retained=200,
)

# name: (kind, unit, what); a "rate" is better higher, a "cost" lower
RATIOS: dict[str, tuple[str, str, str]] = {
    "topics_10k_patterns_1k": (
        "rate", "msg/s", "1→1 with 10k other topics and 1,000 wildcard subscribers / empty bus"
    ),
    "routes_after_change": (
        "cost", "s/publish",
        "first publish of 1,000 topics x 1,000 patterns after a change / memoised (worst)",
    ),
    "keys_1m": ("rate", "msg/s", "concurrency=4, 1M rotating keys / 64 keys"),
    "keys_4097": ("rate", "msg/s", "concurrency=4, 4,097 rotating keys / 4,096"),
    "fanout_64": ("rate", "deliveries/s", "fan-out to 64 subscribers / to 4"),
    "batch_fanout": ("rate", "deliveries/s", "publish_batch fan-out to 4 / publish fan-out"),
    "publishers_10k": (
        "rate", "msg/s", "10,000 publishers on one full mailbox / 2,000 (each publish waits)"
    ),
    "trio_tasks_10k": (
        "rate", "wake-ups/s", "the floor, no bus: 10,000 trio tasks parked in turn / 2,000"
    ),
    "requests_10k": ("rate", "round trips/s", "10,000 requests in flight / 2,000"),
    "subscribe_8k": (
        "cost", "s/call", "subscribe at 10k topics, 8,000 subscriptions / empty bus"
    ),
    "close_8k": ("cost", "s/call", "close at 10k topics, 8,000 subscriptions / empty bus"),
    "delete_topic_10k": (
        "cost", "s/call", "delete_topic at 10k topics, 8,000 subscriptions / empty bus"
    ),
    "route_build_8k": (
        "cost", "s/match", "building a route 8,000 subscriptions match / 1,000, per match"
    ),
}
TARGETS: Targets = {
    "topics_10k_patterns_1k": (">=", 0.9),
    "routes_after_change": ("<=", 2.0),
    "keys_1m": (">=", 0.9),
    "batch_fanout": (">=", 1.0),
    "publishers_10k": (">=", 0.9),
    "requests_10k": (">=", 0.9),
    "subscribe_8k": ("<=", 2.0),
    "close_8k": ("<=", 2.0),
    "delete_topic_10k": ("<=", 2.0),
    "route_build_8k": ("<=", 2.0),
}

Pairs = dict[str, tuple[float, float]]
"""One round of an experiment: ratio name -> (small value, large value)."""


def _pair(flip: bool, small: Callable[[], Any], large: Callable[[], Any]) -> tuple[Any, Any]:
    """Run both sizes, the large one first when *flip*; return (small, large)."""
    if flip:
        b = large()
        return small(), b
    a = small()
    return a, large()


def _topics(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    n = s.messages
    small, large = _pair(
        flip, lambda: cases.steady_1to1(n, 0, 0),
        lambda: cases.steady_1to1(n, s.topics, s.patterns),
    )
    return {"topics_10k_patterns_1k": (small, large)}, {}


def _routes(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    got = cases.routes_after_change(s.route_topics, s.route_patterns, s.route_cycles)
    memo = got["memoised"]
    per_change = {k: round(v / memo, 3) for k, v in got.items() if k != "memoised"}
    worst = max(v for k, v in got.items() if k != "memoised")
    return {"routes_after_change": (memo, worst)}, {"after_change_vs_memoised": per_change}


def _keys(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    n = s.messages
    k1 = _pair(flip, lambda: cases.keyed(n, s.small_keys), lambda: cases.keyed(n, s.keys))
    k2 = _pair(flip, lambda: cases.keyed(n, 4096), lambda: cases.keyed(n, 4097))
    return {"keys_1m": k1, "keys_4097": k2}, {}


def _fanout(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    n = max(10, s.messages // 4)
    few, many = _pair(
        flip, lambda: cases.fanout(n, s.small_subscribers),
        lambda: cases.fanout(max(10, n * s.small_subscribers // s.subscribers), s.subscribers),
    )
    batch = cases.fanout(n, s.small_subscribers, batch=True)
    return {"fanout_64": (few, many), "batch_fanout": (few, batch)}, {}


def _publishers(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    n = s.messages
    small, large = _pair(
        flip, lambda: cases.publishers(n, s.small_publishers),
        lambda: cases.publishers(n, s.publishers),
    )
    floor = _pair(
        flip, lambda: cases.trio_parked(n, s.small_publishers),
        lambda: cases.trio_parked(n, s.publishers),
    )
    one = cases.publishers(n, 1)
    return (
        {"publishers_10k": (small, large), "trio_tasks_10k": floor},
        {"publishers_10k_vs_one_publisher": large / one},
    )


def _requests(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    n = max(10, s.messages // 4)
    small, large = _pair(
        flip, lambda: cases.requests(n, s.small_requests), lambda: cases.requests(n, s.requests)
    )
    roomy = cases.requests(n, s.requests, capacity=2 * s.requests)
    return {"requests_10k": (small, large)}, {"requests_10k_vs_a_mailbox_with_room": large / roomy}


def _subscribe(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    small, large = _pair(
        flip, lambda: cases.subscribe_close(s.calls, 0, s.calls),
        lambda: cases.subscribe_close(s.sub_topics, s.subscriptions, s.calls),
    )
    pairs = {
        "subscribe_8k": (small["subscribe"], large["subscribe"]),
        "close_8k": (small["close"], large["close"]),
        "delete_topic_10k": (small["delete_topic"], large["delete_topic"]),
    }
    return pairs, {"stats_s": large["stats"], "exit_s": large["exit"]}


def _route_build(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    pair = _pair(
        flip, lambda: cases.route_build(s.small_matches), lambda: cases.route_build(s.matches)
    )
    return {"route_build_8k": pair}, {}


def _memory(s: Scale, flip: bool) -> tuple[Pairs, dict[str, Any]]:
    return {}, {
        "retained_bytes_per_message": cases.retained_bytes(s.retained),
        "bytes_per_topic": cases.topic_bytes(s.topics),
    }


EXPERIMENTS: dict[str, Callable[[Scale, bool], tuple[Pairs, dict[str, Any]]]] = {
    "topics": _topics,
    "routes": _routes,
    "keys": _keys,
    "fanout": _fanout,
    "publishers": _publishers,
    "requests": _requests,
    "subscribe": _subscribe,
    "route_build": _route_build,
    "memory": _memory,
}


class _Collected:
    """Every round of every experiment of one version."""

    def __init__(self) -> None:
        self.pairs: dict[str, list[tuple[float, float]]] = {}
        self.info: dict[str, list[Any]] = {}

    def add(self, pairs: Pairs, info: dict[str, Any]) -> None:
        for name, pair in pairs.items():
            self.pairs.setdefault(name, []).append(pair)
        for name, value in info.items():
            self.info.setdefault(name, []).append(value)

    def result(self) -> dict[str, Any]:
        ratios: dict[str, float | None] = {}
        values: dict[str, Any] = {}
        for name, rounds in self.pairs.items():
            kind, unit, what = RATIOS[name]
            ratios[name] = round(statistics.median(b / a for a, b in rounds), 3)
            values[name] = {
                "kind": kind, "unit": unit, "what": what,
                "small": statistics.median(a for a, _ in rounds),
                "large": statistics.median(b for _, b in rounds),
                "rounds": [[a, b] for a, b in rounds],
            }
        measures: dict[str, Any] = {}
        for name, got in self.info.items():
            if isinstance(got[0], dict):
                measures[name] = {k: statistics.median(r[k] for r in got) for k in got[0]}
            else:
                measures[name] = statistics.median(got)
        return {"ratios": ratios, "values": values, "measures": measures}


def run(
    scale: Scale = FULL,
    *,
    progress: bool = True,
    only: Sequence[str] | None = None,
    versions: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Run the suite (for each of *versions*, ``benchmarks.ab.Version``s, if given) and
    return the report; the top-level ``ratios`` are the last version's."""
    from .local import quiet_logs

    started = time.perf_counter()
    chosen = [name for name in EXPERIMENTS if only is None or name in only]
    labels = [v.label for v in versions] if versions else ["this"]
    collected = {label: _Collected() for label in labels}
    bar = Progress(len(chosen) * scale.rounds * len(labels), enabled=progress)
    bar.say(f"{scale.rounds} round(s) of {len(chosen)} experiment(s), {len(labels)} version(s)")
    with quiet_logs():
        for rnd in range(scale.rounds):
            flip = rnd % 2 == 1
            for name in chosen:
                order = list(range(len(labels)))
                for i in reversed(order) if flip else order:
                    if versions:
                        versions[i].activate()
                    gc.collect()
                    t0 = time.perf_counter()
                    collected[labels[i]].add(*EXPERIMENTS[name](scale, flip))
                    bar.step(f"{name} r{rnd + 1}/{scale.rounds}",
                             f"{labels[i]} {time.perf_counter() - t0:.1f}s")
    results = {label: c.result() for label, c in collected.items()}
    last = results[labels[-1]]
    return {
        "suite": "scale",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": asdict(scale),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "versions": labels,
        "results": results,
        "ratios": last["ratios"],
        "measures": last["measures"],
        "targets": targets_json(TARGETS),
        "met": met(last["ratios"], TARGETS),
        "failures": [],
    }


def _value(value: float, unit: str) -> str:
    if unit.startswith("s/"):
        return f"{value * 1e6:,.2f} µs"
    return human(value)


def table(report: dict[str, Any]) -> str:
    """The summary printed by ``bus bench scale``: one block per version."""
    lines: list[str] = []
    for label in report["versions"]:
        got = report["results"][label]
        if len(report["versions"]) > 1:
            lines.append(f"== {label}")
        lines.append(f"{'ratio':<24} {'small':>12} {'large':>12} {'ratio':>8}  {'target':<7} met")
        lines.append("-" * 72)
        for name, value in got["ratios"].items():
            v = got["values"][name]
            target = TARGETS.get(name)
            ok = met({name: value}, TARGETS).get(name) if target else None
            mark = "" if target is None else "yes" if ok else "NO"
            tgt = f"{target[0]} {target[1]:g}" if target else ""
            lines.append(
                f"{name:<24} {_value(v['small'], v['unit']):>12} "
                f"{_value(v['large'], v['unit']):>12} {value:>8.3f}  {tgt:<7} {mark}"
            )
        for name, value in got["measures"].items():
            if isinstance(value, dict):
                shown = ", ".join(f"{k} {x:.2f}" for k, x in value.items())
            elif name.endswith("_s"):
                shown = f"{value * 1e3:,.1f} ms"
            else:
                shown = f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
            lines.append(f"{name}: {shown}")
        lines.append("")
    return "\n".join(lines).rstrip()


def markdown(report: dict[str, Any]) -> str:
    """Every version's ratios side by side, as Markdown (for docs/performance.md)."""
    labels = report["versions"]
    head = "| dimension | " + " | ".join(f"`{label}`" for label in labels) + " | target |"
    lines = [head, "|---|" + "---:|" * len(labels) + "---|"]
    first = report["results"][labels[0]]
    for name in first["ratios"]:
        cells = []
        for label in labels:
            got = report["results"][label]
            v = got["values"][name]
            cells.append(
                f"{got['ratios'][name]:.3f} ({_value(v['small'], v['unit'])} → "
                f"{_value(v['large'], v['unit'])})"
            )
        target = TARGETS.get(name)
        tgt = f"{target[0]} {target[1]:g}" if target else ""
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {tgt} |")
    for name in first["measures"]:
        cells = [_measure(report["results"][label]["measures"].get(name)) for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def _measure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {x:.2f}" for k, x in value.items())
    return f"{value:,.4g}"


def _main(argv: Sequence[str] | None = None) -> int:
    from . import ab

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__.split("\n")[0]
    )
    p.add_argument("versions", nargs="*", help="git commit-ish or directory holding bus/")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--tiny", action="store_true")
    p.add_argument("--only", default=None, help=f"comma-separated: {', '.join(EXPERIMENTS)}")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", metavar="REPORT.json", help="print a saved report as Markdown")
    args = p.parse_args(argv)
    if args.markdown:
        with open(args.markdown, encoding="utf-8") as f:
            print(markdown(json.load(f)))
        return 0
    scale = TINY if args.tiny else QUICK if args.quick else FULL
    only = args.only.split(",") if args.only else None
    with tempfile.TemporaryDirectory() as tmp:
        versions = [ab.resolve(spec, tmp) for spec in args.versions] or None
        report = run(scale, only=only, versions=versions)
    print(table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
