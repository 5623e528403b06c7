"""Running benchmark cases: sizes, rounds, medians, progress, machine facts.

A *case* is a plain callable ``(n) -> Sample``: it moves ``n`` messages (or round
trips) through one mechanism in a fresh event loop and reports how long the timed part
took. The harness knows nothing about trio, asyncio or the bus; it interleaves rounds
of all cases (round 1 of every case, then round 2, ...) so slow drift of the machine
spreads over every case alike instead of biasing one ratio.

No timing ever decides a test: the harness only measures and reports.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TextIO


class CaseFailed(Exception):
    """A case ran but its result is wrong (e.g. per-key order broke); not a timing issue."""


@dataclass(frozen=True)
class Size:
    """How much work one run of the suite does."""

    messages: int
    """Messages per round for the fast cases; slow cases scale this down."""
    rounds: int
    """Repetitions of every case; the reported rate is the median."""


FULL = Size(messages=400_000, rounds=11)
QUICK = Size(messages=100_000, rounds=3)
TINY = Size(messages=400, rounds=1)


@dataclass(frozen=True)
class Sample:
    """One round of one case."""

    count: int
    """Units moved in the timed part (messages, deliveries or round trips)."""
    seconds: float
    """Wall time of the timed part."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Case-specific facts (latency percentiles, order checks...)."""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Case:
    """A named measurement and the rounds collected for it."""

    name: str
    what: str
    unit: str
    run: Callable[[int], Sample]
    scale: float = 1.0
    """Fraction of ``Size.messages`` this case moves per round (slow peers get less)."""
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def messages(self, size: Size) -> int:
        return max(10, int(size.messages * self.scale))

    def result(self) -> dict[str, Any]:
        rates = [s.rate for s in self.samples]
        out: dict[str, Any] = {
            "what": self.what,
            "unit": self.unit,
            "ok": self.error is None and bool(self.samples),
            "error": self.error,
            "median": statistics.median(rates) if rates else None,
            "best": max(rates) if rates else None,
            "rounds": [round(r, 1) for r in rates],
            "count_per_round": self.samples[0].count if self.samples else None,
        }
        extras = [s.extra for s in self.samples if s.extra]
        if extras:
            out["extra_rounds"] = extras
        return out


class Progress:
    """One line on stderr: a bar while on a terminal, a line per step otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        """A line of its own; only before the bar starts, so it never splits the bar."""
        if self.enabled and self.done == 0:
            self.stream.write(text + "\n")
            self.stream.flush()

    def step(self, label: str, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        width = 24
        filled = width * self.done // self.total
        bar = "#" * filled + "-" * (width - filled)
        line = f"[{bar}] {self.done:>3}/{self.total} {elapsed:5.0f}s  {label:<28} {note}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_rounds(cases: Sequence[Case], size: Size, progress: Progress) -> None:
    """Run every case ``size.rounds`` times, interleaved by round, into ``case.samples``.

    A short unrecorded warm-up run of each case comes first: the first run in a fresh
    process pays for imports, allocator growth and cold caches.
    """
    progress.say(f"warming up {len(cases)} case(s), then {size.rounds} round(s) of each")
    for case in cases:
        if case.error is None:
            warm = Case(case.name, case.what, case.unit, case.run)
            run_one(warm, Size(messages=max(10, case.messages(size) // 10), rounds=1))
            case.error = warm.error
    for rnd in range(1, size.rounds + 1):
        for case in cases:
            label = f"{case.name} r{rnd}/{size.rounds}"
            if case.error is not None:
                progress.step(label, "skipped")
                continue
            note = run_one(case, size)
            progress.step(label, note)


def run_one(case: Case, size: Size) -> str:
    """Run one round of ``case``; record a sample or the error, return a short note."""
    gc.collect()
    try:
        sample = case.run(case.messages(size))
    except CaseFailed as exc:
        case.error = f"FAILED: {exc}"
        return case.error
    except ImportError as exc:
        case.error = f"skipped: {exc}"
        return case.error
    case.samples.append(sample)
    return f"{human(sample.rate)} {case.unit}"


def human(rate: float) -> str:
    """``1234567.0`` -> ``'1.23M'``."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if rate >= limit:
            return f"{rate / limit:.2f}{suffix}"
    return f"{rate:.1f}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when the tree has changes), if in git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def machine_info() -> dict[str, Any]:
    """Facts that make two result files comparable (or not)."""
    sched = getattr(os, "sched_getaffinity", None)
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(sched(0)) if sched else None,
        "git_commit": _git_commit(),
        "versions": {
            name: _version(name)
            for name in ("trio-bus", "trio", "msgspec", "pyee", "blinker", "faststream")
        },
    }
