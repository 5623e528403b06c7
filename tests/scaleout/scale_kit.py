"""The machinery of the scale-out tests: members of one group as child processes, a
keyed producer, and the checks (lost, duplicates, per-key order within each process).

A member is ``tests/scaleout/scale_app.py`` (or any command printing ``handled N KEY
SEQ`` lines); its stdout is read line by line as it arrives, and every wait is for such a
line (an event), never for a stretch of time. The checks are plain functions, tested
without brokers in ``test_scale_checks.py``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bus import open_bus
from bus.abc import Bridge
from tests.scaleout.scale_app import Order

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.scaleout.scale_app"


@dataclass(frozen=True)
class Handled:
    n: int
    key: str
    seq: int
    at: float
    """When the test read the line (trio.current_time())."""


@dataclass
class Member:
    name: str
    proc: trio.Process
    handled: list[Handled] = field(default_factory=list)
    ready: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    killed_at: float | None = None
    started_at: float = 0.0
    log: Path | None = None
    """Its stderr."""

    def tail(self) -> str:
        return self.log.read_text()[-1500:] if self.log is not None and self.log.exists() else ""


class Fleet:
    """Child processes of one group, whose lines wake whoever waits on them."""

    def __init__(self, nursery: trio.Nursery, broker: str, topic: str, group: str,
                 logs: Path, env: dict[str, str] | None = None) -> None:
        self.nursery = nursery
        self.logs = logs
        self.broker, self.topic, self.group = broker, topic, group
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.members: list[Member] = []
        self._changed = trio.Event()

    async def start(self, name: str, work: float = 0.001) -> Member:
        """Member *name*, spending 0, 1 or 2 times *work* seconds on an order."""
        log = self.logs / f"{name}.log"
        with log.open("ab") as stderr:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", APP, self.broker, self.topic, self.group, name,
                 str(work)], env=self.env, stdout=subprocess.PIPE, stderr=stderr,
            )
        member = Member(name, proc, started_at=trio.current_time(), log=log)
        self.members.append(member)
        self.nursery.start_soon(self._read, member)
        return member

    async def _read(self, member: Member) -> None:
        assert member.proc.stdout is not None
        buffer = b""
        async with member.proc.stdout:
            while chunk := await member.proc.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                now = trio.current_time()
                for line in lines:
                    words = line.decode().split()
                    if words == ["ready"]:
                        member.ready.set()
                    elif words and words[0] == "handled":
                        member.handled.append(
                            Handled(int(words[1]), words[2], int(words[3]), now)
                        )
                self._wake()
        await member.proc.wait()
        member.exited.set()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, what: str, check: Callable[[], bool], within: float) -> None:
        """Wait for a line (or an exit) after which *check* holds."""
        with trio.move_on_after(within):
            while not check():
                await self._changed.wait()
            return
        raise AssertionError(f"timed out after {within}s waiting for {what}: {self.summary()}")

    def kill(self, member: Member) -> None:
        member.proc.send_signal(signal.SIGKILL)
        member.killed_at = trio.current_time()

    async def stop_all(self, within: float = 40) -> dict[str, int | None]:
        """SIGTERM every live member; their exit codes (SIGKILL after *within* s)."""
        alive = [m for m in self.members if m.proc.returncode is None]
        for member in alive:
            member.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(within):
            for member in alive:
                await member.proc.wait()
        codes = {}
        for member in alive:
            if member.proc.returncode is None:
                member.proc.kill()
                await member.proc.wait()
            codes[member.name] = member.proc.returncode
        return codes

    def kill_all(self) -> None:
        for member in self.members:
            if member.proc.returncode is None:
                member.proc.kill()

    def all_handled(self) -> list[Handled]:
        return [h for m in self.members for h in m.handled]

    async def until_ready(self, member: Member, within: float = 60) -> None:
        await self.until(f"{member.name} to be ready",
                         lambda: member.ready.is_set() or member.exited.is_set(), within)
        if not member.ready.is_set():
            raise AssertionError(f"{member.name} exited before it was ready: {self.summary()}")

    def summary(self) -> str:
        """Each member's count and exit code, and the stderr of those that exited."""
        return ", ".join(
            f"{m.name}: {len(m.handled)} handled"
            + (f" exit {m.proc.returncode}" if m.proc.returncode is not None else "")
            for m in self.members
        ) + "".join(f"\n--- {m.name} stderr:\n{m.tail()}" for m in self.members
                    if m.proc.returncode not in (None, -9, 0))


class Producer:
    """Publishes keyed orders through a bridge of its own, in bursts, until told to stop;
    ``seq`` counts per key, so a member's lines show the order it handled each key in."""

    def __init__(self, topic: str, keys: int = 16) -> None:
        self.topic = topic
        self.keys = keys
        self.sent = 0
        self.stop = trio.Event()
        self.finished = trio.Event()

    async def run(self, bridge: Bridge, per_burst: int = 100, pause: float = 0.05,
                  at_least: int = 0) -> None:
        seqs: Counter[str] = Counter()
        try:
            async with open_bus(name="producer") as bus:
                bus.topic(self.topic, Order)
                await bus.attach(bridge, export=[self.topic])
                while not self.stop.is_set() or self.sent < at_least:
                    for _ in range(per_burst):
                        key = f"k{self.sent % self.keys}"
                        await bus.publish(self.topic, Order(self.sent, seqs[key]), key=key)
                        seqs[key] += 1
                        self.sent += 1
                    await trio.sleep(pause)  # pacing: a stream, not one burst
        finally:
            self.finished.set()


# -- the checks (sans-IO) --------------------------------------------------------------


def lost_and_duplicates(handled: Iterable[int], sent: int) -> tuple[int, int]:
    """(lost, duplicates) among the numbers 0..sent-1 handled (in any process)."""
    counts = Counter(handled)
    lost = sum(1 for n in range(sent) if n not in counts)
    return lost, sum(c - 1 for c in counts.values())


def _breaks(handled: Iterable[tuple[str, int]]) -> list[tuple[int, str, int, int]]:
    """(index, key, seq, highest before) of each out-of-order record (see order_breaks)."""
    highest: dict[str, int] = {}
    seen: defaultdict[str, set[int]] = defaultdict(set)
    breaks = []
    for i, (key, seq) in enumerate(handled):
        top = highest.get(key, -1)
        if seq > top:
            highest[key] = seq
        elif seq not in seen[key]:
            breaks.append((i, key, seq, top))
        seen[key].add(seq)
    return breaks


def order_breaks(handled: Iterable[tuple[str, int]]) -> list[str]:
    """Per-key order within one process: each (key, seq) it handled, in the order it
    handled them, is either past every seq of that key it handled before, or one it
    already handled (a redelivery after a rebalance: the partition came back from its
    committed offset). Anything else was handled out of order: one line each."""
    return [f"key {key}: seq {seq} after {top}, not handled here before"
            for _, key, seq, top in _breaks(handled)]


def out_of_order(handled: Iterable[Handled]) -> list[Handled]:
    """The records of one process that :func:`order_breaks` finds out of order."""
    records = list(handled)
    return [records[i] for i, *_ in _breaks((h.key, h.seq) for h in records)]


def stall(members: list[Member], since: float) -> float:
    """Seconds from *since* until every key last handled by a killed member before
    *since* was handled again by another: how long the group left those keys unserved."""
    keys = {h.key for m in members if m.killed_at is not None for h in m.handled}
    after: dict[str, float] = {}
    for m in members:
        if m.killed_at is not None:
            continue
        for h in m.handled:
            if h.key in keys and h.at >= since:
                after[h.key] = min(after.get(h.key, h.at), h.at)
    if not keys <= after.keys():
        return float("inf")  # a key nobody served again
    return max(after.values(), default=since) - since


def longest_pause(handled: Iterable[Handled], since: float, until: float) -> float:
    """The longest time between *since* and *until* in which nobody handled anything
    (what a rebalance stops the whole group for, while the stream goes on)."""
    times = sorted(h.at for h in handled if since <= h.at <= until)
    edges = [since, *times, until]
    return max(b - a for a, b in itertools.pairwise(edges))
