"""Kafka ingress throughput with 1 and 2 processes of one application in one group.

A topic of ``--partitions`` partitions is filled with ``--messages`` records (untimed, by
confluent-kafka); then K member processes (``python -m benchmarks.scaleout child ...``:
a bus, a Kafka bridge importing the topic in one group, a typed handler that counts)
start, and once all of them have opened their bus they are told to join together
(a line on stdin) and consume it. Each member prints a progress line every ``STEP`` records with its
``time.monotonic()`` (one clock for every process on Linux) and ``time.process_time()``.
The rate is the group's over the window where **every member is consuming**: from the
first record of the member that started last (the group's rebalances done) to the moment
the group has handled 90% of the records. Rounds alternate K = 1, 2, 1, 2, ...; each
round has its own topic and group; the medians and their ratio are printed, with each
member's CPU use in the window (1.0 = one core busy), the members' CPU per record, the
Kafka broker's CPU use and the load average, and ``--json PATH`` writes them. On a
shared machine the members' CPU share says what limited a round: a member that got
less than a core was waiting for one.

    python -m benchmarks.scaleout [--messages 150000] [--rounds 3] [--partitions 6] [--json PATH]

Talks to the harness's Kafka (``make brokers-env``). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from ._brokers import KAFKA, kafka_cleanup, kafka_create_topic, kafka_delete_topic, kafka_fill


def _broker_cpu() -> float | None:
    """CPU seconds the harness's Kafka has used so far (its pid file under
    ``$TRIO_BUS_BROKERS_DIR``), or None when it cannot be read."""
    base = os.environ.get("TRIO_BUS_BROKERS_DIR", "/tmp/trio-bus-brokers")
    try:
        pid = int(Path(base, "kafka", "pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


STEP = 2000
"""Records between two progress lines of a member."""
ROOT = Path(__file__).resolve().parents[1]


# -- the member process ------------------------------------------------------------------


async def _child(topic: str, group: str, name: str) -> None:
    """Open the bus, say ``ready``, and join the group once a line comes on stdin (so
    the members of a round join together, not one a process start-up after another)."""
    from bridges.kafka import KafkaBridge
    from bus import Envelope, open_bus

    from ._messages import Reading

    count = 0

    def handle(env: Envelope[Reading]) -> None:
        nonlocal count
        count += 1
        if count == 1 or count % STEP == 0:
            os.write(1, f"p {count} {time.monotonic()} {time.process_time()}\n".encode())

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_bus(name=name) as bus:
            bus.topic(topic, Reading)
            bus.subscribe(topic, handle)
            os.write(1, b"ready\n")
            await trio.lowlevel.FdStream(os.dup(0)).receive_some()
            await bus.attach(KafkaBridge(KAFKA, name=name, group_id=group), import_=[topic])
            async for _ in signals:
                break


# -- one round ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    member: int
    count: int
    at: float
    cpu: float


@dataclass(frozen=True)
class Round:
    members: int
    rate: float
    """Records per second of the group while every member consumed."""
    window: float
    cpu: list[float]
    """Each member's CPU seconds per wall second in the window."""
    before: int
    """Records handled before the window (while the group was forming)."""
    per_record_us: float
    """CPU microseconds the members spent per record in the window."""
    broker_cpu: float | None = None
    """The Kafka broker's CPU seconds per wall second from "go" to 90%."""


def window_rate(points: list[Progress], members: int, total: int) -> Round:
    """The group's rate between the last member's first record and 90% of *total*."""
    firsts = [min(p.at for p in points if p.member == m) for m in range(members)]
    start = max(firsts)
    last: dict[int, Progress] = {}
    begin: dict[int, Progress] = {}
    end_at = None
    for p in sorted(points, key=lambda p: p.at):
        last[p.member] = p
        if p.at <= start:
            begin[p.member] = p
        if sum(q.count for q in last.values()) >= 0.9 * total:
            end_at = p.at
            break
    if end_at is None or end_at <= start:
        raise RuntimeError("the group did not reach 90% of the records after all joined")
    done = sum(last[m].count - begin.get(m, Progress(m, 0, start, 0.0)).count
               for m in range(members))
    cpu = [(last[m].cpu - begin[m].cpu) / (last[m].at - begin[m].at)
           if m in begin and last[m].at > begin[m].at else float("nan")
           for m in range(members)]
    before = sum(p.count for p in begin.values())
    spent = sum(last[m].cpu - begin[m].cpu for m in begin)
    return Round(members, done / (end_at - start), end_at - start, cpu, before,
                 1e6 * spent / done)


async def _round(members: int, messages: int, partitions: int) -> Round:
    topic = f"bench-scale-{uuid.uuid4().hex[:10]}"
    group = f"{topic}-g"
    await trio.to_thread.run_sync(kafka_create_topic, topic, partitions)
    await trio.to_thread.run_sync(lambda: kafka_fill(topic, messages, ce_type=topic))
    points: list[Progress] = []
    ready: set[int] = set()
    all_ready = trio.Event()
    reached = trio.Event()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    async def read(m: int, proc: trio.Process) -> None:
        assert proc.stdout is not None
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line == b"ready":
                    ready.add(m)
                    if len(ready) == members:
                        all_ready.set()
                    continue
                _, count, at, cpu = line.split()
                points.append(Progress(m, int(count), float(at), float(cpu)))
            latest: dict[int, int] = {}
            for p in points:
                latest[p.member] = p.count
            if sum(latest.values()) >= 0.9 * messages and len(latest) == members:
                reached.set()

    procs = []
    try:
        async with trio.open_nursery() as nursery:
            for m in range(members):
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "benchmarks.scaleout", "child", topic, group,
                     f"m{m}"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )
                procs.append(proc)
                nursery.start_soon(read, m, proc)
            with trio.fail_after(60):
                await all_ready.wait()
            broker_at, broker_cpu = time.monotonic(), _broker_cpu()
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.send_all(b"go\n")
            with trio.fail_after(300):
                await reached.wait()
            broker_end = _broker_cpu()
            if broker_cpu is not None and broker_end is not None:
                broker_cpu = (broker_end - broker_cpu) / (time.monotonic() - broker_at)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        kafka_delete_topic(topic)
    result = window_rate(points, members, messages)
    return replace(result, broker_cpu=broker_cpu)


async def _main(args: argparse.Namespace) -> dict[str, object]:
    load_before = os.getloadavg()
    rounds: list[Round] = []
    for _ in range(args.rounds):
        for members in (1, 2):
            r = await _round(members, args.messages, args.partitions)
            rounds.append(r)
            print(f"{members} process(es): {r.rate:,.0f} records/s over {r.window:.2f} s; "
                  f"CPU per member {', '.join(f'{c:.2f}' for c in r.cpu)} "
                  f"({r.per_record_us:.1f} us a record), Kafka broker {r.broker_cpu or 0:.2f}; "
                  f"{r.before} handled before every member had joined", flush=True)
    await trio.to_thread.run_sync(kafka_cleanup)
    one = statistics.median(r.rate for r in rounds if r.members == 1)
    two = statistics.median(r.rate for r in rounds if r.members == 2)
    result = {
        "case": "kafka_ingress_scaleout", "messages": args.messages,
        "partitions": args.partitions, "rounds": args.rounds, "cpus": os.cpu_count(),
        "one_process": one, "two_processes": two, "ratio": two / one,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "samples": [{"members": r.members, "rate": r.rate, "window": r.window, "cpu": r.cpu,
                     "before": r.before, "per_record_us": r.per_record_us,
                     "broker_cpu": r.broker_cpu}
                    for r in rounds],
    }
    print(f"medians: 1 process {one:,.0f}/s, 2 processes {two:,.0f}/s ({two / one:.2f}x); "
          f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        trio.run(_child, *argv[1:4])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout")
    parser.add_argument("--messages", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = trio.run(_main, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
