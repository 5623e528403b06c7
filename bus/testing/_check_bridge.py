"""The bridge conformance suite: what every backend must do, as plain async functions.

Like ``trio.testing.check_one_way_stream``, it needs no test framework: give
:func:`check_bridge` a :class:`BridgeKit` (how to make bridges to one running broker, and
what that broker can do) and it runs every case, skipping only those the kit's
:class:`~bus.abc.Features` (or a missing kit hook) rule out. A case that fails raises
``AssertionError`` naming the case. Each case uses topics of its own (a fresh prefix),
so cases can run against a shared broker in any order.

Cases: round trip with keys and headers and typed decode; per-key order under
``concurrency=4``; consumer groups; at-least-once across ``kill -9`` of a consuming child
process; dead letters for poison and malformed input; broker restart mid-stream;
bounded memory under backpressure; the echo guard; an unreachable broker at start.
:func:`check_broker_to_broker` runs one bus between two kits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from .._bridge import Bridge, Features
from .._bus import Bus, open_bus
from .._envelope import H_ERROR, H_ORIGIN, Envelope
from .._errors import BackendUnavailableError
from .._policy import RetryPolicy

__all__ = ["CASES", "BridgeKit", "Order", "check_bridge", "check_broker_to_broker", "run_case"]


class Order(msgspec.Struct, frozen=True):
    """The payload every case sends."""

    n: int
    note: str = ""
    poison: bool = False


@dataclass
class BridgeKit:
    """How the suite reaches one backend.

    ``make(name, group)`` returns a new, unopened bridge to the broker; bridges made with
    the same *group* share a stream (competing consumers), different groups each get all
    of it. The optional hooks enable the cases that need them.
    """

    name: str
    features: Features
    make: Callable[[str, str], Bridge]
    prepare: Callable[[list[str]], Awaitable[None]] | None = None
    """Create these topics on the broker (with several partitions where that applies)
    before a consumer subscribes; for brokers that need topics to exist first."""
    write_raw: Callable[[str, bytes], Awaitable[None]] | None = None
    """Write raw bytes as a message on a topic with the broker's own client."""
    restart_broker: Callable[[], Awaitable[None]] | None = None
    """Stop and start the broker (returns once it answers again)."""
    child: str | None = None
    """``"module:function"``: in a child process, ``function(name, group)`` makes the
    bridge for the kill -9 case. None for brokers inside the process."""
    unreachable: Callable[[], Bridge] | None = None
    """A bridge pointed at an address where no broker listens."""
    settle: float = 0.0
    """Seconds to wait after consumers joined a group before producing (rebalances)."""
    scale: float = 1.0
    """Multiplies message counts (lower it for slow emulators)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the child process."""
    duplicates: bool = False
    """The broker delivers some messages more than once while every consumer lives (a
    faulty broker, ``bus.testing.Faults``): cases count distinct messages, and the echo
    guard, which counts exact deliveries, is skipped."""


Case = Callable[[BridgeKit, str], Awaitable[None]]
CASES: dict[str, Case] = {}


def _case(fn: Case) -> Case:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def _skip_reason(kit: BridgeKit, case: str) -> str | None:
    f = kit.features
    needs: dict[str, list[tuple[bool, str]]] = {
        "per_key_order": [(f.ordered, "Features.ordered is False")],
        "consumer_groups": [(f.consumer_groups, "Features.consumer_groups is False")],
        "at_least_once_kill9": [
            (kit.child is not None, "the broker lives in this process (kit.child is None)"),
            (f.redelivery, "Features.redelivery is False"),
        ],
        "malformed_input": [(kit.write_raw is not None, "kit.write_raw is None")],
        "broker_restart": [
            (f.restartable and kit.restart_broker is not None, "the broker cannot be restarted"),
        ],
        "unreachable_at_start": [(kit.unreachable is not None, "kit.unreachable is None")],
        "echo_guard": [
            (not kit.duplicates, "kit.duplicates: an echo cannot be told from a duplicate"),
        ],
    }
    for ok, reason in needs.get(case, []):
        if not ok:
            return reason
    return None


async def run_case(kit: BridgeKit, case: str) -> str | None:
    """Run one case; returns None if it passed, the reason if it was skipped."""
    reason = _skip_reason(kit, case)
    if reason is not None:
        return reason
    prefix = f"ct{uuid.uuid4().hex[:10]}"
    threads, sockets = _threads(), _sockets()
    try:
        await CASES[case](kit, prefix)
        # after every bus of the case exited: no thread or socket of ours is left
        await _until("the bridges' threads to end", lambda: _threads() <= threads, 5)
        await _until("the bridges' sockets to close", lambda: _sockets() <= sockets, 5)
    except AssertionError as exc:
        raise AssertionError(f"{kit.name}: case {case!r} failed: {exc}") from exc
    return None


def _threads() -> set[int]:
    """Threads now, less trio's own worker-thread cache (idle ``to_thread`` workers
    linger a while by design)."""
    return {t.ident or 0 for t in threading.enumerate() if not t.name.startswith("Trio thread")}


def _sockets() -> set[str]:
    """This process's open sockets (Linux ``socket:[inode]`` names)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


async def check_bridge(kit: BridgeKit) -> dict[str, str]:
    """Run every case against *kit*; returns ``{case: "passed" | "skipped: why"}``."""
    report = {}
    for case in CASES:
        reason = await run_case(kit, case)
        report[case] = "passed" if reason is None else f"skipped: {reason}"
    return report


# -- helpers ------------------------------------------------------------------------


async def _until(what: str, check: Callable[[], bool], seconds: float) -> None:
    """Poll *check* (state of other tasks, processes or brokers) for at most *seconds*."""
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110 - the state may live in another process
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


async def _prepare(kit: BridgeKit, *topics: str) -> None:
    if kit.prepare is not None:
        await kit.prepare(list(topics))


async def _register(kit: BridgeKit, topic: str, group: str) -> None:
    """Join *group* once and leave, so the broker keeps what is published for it before
    its consumer runs (an AMQP queue, a Pub/Sub subscription, a Kafka group)."""
    async with open_bus(name="register") as bus:
        bus.topic(topic, Order)
        att = await bus.attach(kit.make("register", group), import_=[topic])
        await trio.sleep(kit.settle)
        await att.detach()


async def _publish(bus: Bus, topic: str, count: int, *, keys: int = 4) -> None:
    """Publish *count* orders; returns once the broker confirmed the last (so all: one
    export subscription sends batches in order), not bounded by the bus's drain timeout
    when the broker is slow to confirm."""
    for i in range(count):
        await bus.publish(
            topic, Order(i), key=f"k{i % keys}", headers={"n": str(i)}, confirm=(i == count - 1)
        )


def _n(kit: BridgeKit, count: int) -> int:
    return max(4, int(count * kit.scale))


# -- cases --------------------------------------------------------------------------


@_case
async def case_round_trip(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.created"
    await _prepare(kit, topic)
    got: list[Envelope[Order]] = []
    count = _n(kit, 50)
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)
        b.subscribe(f"{prefix}.#", got.append)
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[f"{prefix}.#"])
        await trio.sleep(kit.settle)
        async with open_bus(name="exporter") as a:
            a.topic(topic, Order)
            await a.attach(kit.make("out", f"{prefix}-out"), export=[f"{prefix}.#"])
            await _publish(a, topic, count)
        await _until(f"{count} messages", lambda: len({e.payload.n for e in got}) >= count, 60)
    env = next(e for e in got if e.payload.n == 5)
    assert type(env.payload) is Order, f"payload decoded as {type(env.payload)}"
    assert env.key == "k1", f"key {env.key!r}"
    assert env.headers.get("n") == "5", f"headers {env.headers}"
    assert env.headers.get(H_ORIGIN) == "in", f"origin header {env.headers.get(H_ORIGIN)}"
    assert env.topic == topic


@_case
async def case_per_key_order(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.keyed"
    await _prepare(kit, topic)
    seen: dict[str, list[int]] = {}
    count = _n(kit, 300)
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)

        async def handle(env: Envelope[Order]) -> None:
            await trio.sleep(0.0005 * (env.payload.n % 3))
            seen.setdefault(env.key or "", []).append(env.payload.n)

        b.subscribe(topic, handle, concurrency=4)
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[topic])
        await trio.sleep(kit.settle)
        async with open_bus(name="exporter") as a:
            a.topic(topic, Order)
            await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
            await _publish(a, topic, count, keys=6)
        await _until(f"{count} messages", lambda: len(set().union(*seen.values())) >= count, 60)
    for key, ns in seen.items():
        # a redelivery replays a key's messages in order; nothing handled first overtakes
        firsts = list(dict.fromkeys(ns))
        assert firsts == sorted(firsts), f"key {key}: out of order {ns[:20]}..."


@_case
async def case_consumer_groups(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.grouped"
    await _prepare(kit, topic)
    count = _n(kit, 200)
    got: dict[str, list[int]] = {"m1": [], "m2": [], "other": []}
    async with open_bus(name="m1") as m1, open_bus(name="m2") as m2, open_bus(name="o") as o:
        for member, bus in (("m1", m1), ("m2", m2), ("other", o)):
            bus.topic(topic, Order)
            bus.subscribe(topic, lambda env, m=member: got[m].append(env.payload.n))
        await m1.attach(kit.make("in1", f"{prefix}-g1"), import_=[topic])
        await m2.attach(kit.make("in2", f"{prefix}-g1"), import_=[topic])
        await o.attach(kit.make("in3", f"{prefix}-g2"), import_=[topic])
        await trio.sleep(kit.settle)
        async with open_bus(name="exporter") as a:
            a.topic(topic, Order)
            await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
            await _publish(a, topic, count, keys=16)

        def shared() -> bool:
            return len(set(got["m1"]) | set(got["m2"])) >= count

        await _until("the group to get every message", shared, 60)
        await _until(
            "the other group to get every message", lambda: len(set(got["other"])) >= count, 60
        )
    assert got["m1"] and got["m2"], (
        f"one member got everything: m1 {len(got['m1'])}, m2 {len(got['m2'])}"
    )
    assert set(got["other"]) == set(range(count))


@_case
async def case_at_least_once_kill9(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.durable"
    await _prepare(kit, topic)
    await _register(kit, topic, f"{prefix}-g")
    count = _n(kit, 2000)
    async with open_bus(name="exporter") as a:
        a.topic(topic, Order)
        await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
        for i in range(count):
            await a.publish(topic, Order(i), key=f"k{i % 8}", confirm=(i == count - 1))
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"{prefix}.handled"
    assert kit.child is not None
    child_args = [kit.child, topic, f"{prefix}-g", str(out)]
    cmd = [sys.executable, "-m", "bus.testing._check_child", *child_args]
    env = {**os.environ, **kit.env}

    def handled() -> list[int]:
        return [int(x) for x in out.read_text().split()] if out.exists() else []

    try:
        kills = 0
        for target in (count // 4, count // 2):
            child = await trio.lowlevel.open_process(cmd, env=env)
            try:
                await _until(f"the child to handle {target}", lambda: len(handled()) >= target, 90)  # noqa: B023 - awaited within the iteration
            finally:
                child.send_signal(signal.SIGKILL)
                await child.wait()
            kills += 1
        child = await trio.lowlevel.open_process(cmd, env=env)
        try:
            await _until("every message handled", lambda: set(handled()) >= set(range(count)), 120)
        finally:
            child.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await child.wait()
            if child.poll() is None:
                child.kill()
                await child.wait()
        lines = handled()
        duplicates = len(lines) - len(set(lines))
    finally:
        out.unlink(missing_ok=True)
    assert set(lines) == set(range(count))
    print(f"{kit.name}: kill -9 x{kills}: {count} sent, {len(set(lines))} handled, "
          f"{duplicates} duplicates, 0 lost")


@_case
async def case_poison_goes_to_dead_letters(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.poison"
    await _prepare(kit, topic)
    good: list[int] = []
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)

        def handle(env: Envelope[Order]) -> None:
            if env.payload.poison:
                raise ValueError(f"poison order {env.payload.n}")
            good.append(env.payload.n)

        b.subscribe(topic, handle, retry=RetryPolicy(attempts=2, base_delay=0.01))
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[topic])
        await trio.sleep(kit.settle)
        async with open_bus(name="exporter") as a:
            a.topic(topic, Order)
            await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
            await a.publish(topic, Order(0), key="k")
            await a.publish(topic, Order(1, poison=True), key="k")
            await a.publish(topic, Order(2), key="k", confirm=True)
        await _until("the good messages", lambda: sorted(set(good)) == [0, 2], 60)
        await _until("the dead letter", lambda: bool(b.retained(b.dead_letter_topic)), 10)
    letters = b.retained(b.dead_letter_topic)
    assert len(letters) == 1 or kit.duplicates, f"{len(letters)} dead letters for one poison"
    for letter in letters:
        assert letter.payload.n == 1 and letter.headers[H_ERROR] == "poison order 1"


@_case
async def case_malformed_input(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.malformed"
    await _prepare(kit, topic)
    assert kit.write_raw is not None
    good: list[int] = []
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)
        b.subscribe(topic, lambda env: good.append(env.payload.n))
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[topic])
        await trio.sleep(kit.settle)
        await kit.write_raw(topic, b"\xff this is not json")
        await kit.write_raw(topic, b'{"n": "not a number"}')
        await kit.write_raw(topic, b'{"n": 7}')
        await _until("the good message", lambda: set(good) == {7}, 60)
        await _until(
            "two dead letters",
            lambda: len({e.payload for e in b.retained(b.dead_letter_topic)}) >= 2, 10,
        )
    letters = b.retained(b.dead_letter_topic)
    assert kit.duplicates or good == [7], f"handled {good}"
    assert {e.payload for e in letters} == {b"\xff this is not json", b'{"n": "not a number"}'}
    assert all("Order" in e.headers[H_ERROR] for e in letters), [e.headers for e in letters]


@_case
async def case_broker_restart(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.restart"
    await _prepare(kit, topic)
    assert kit.restart_broker is not None
    count = _n(kit, 400)
    got: set[int] = set()
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)
        b.subscribe(topic, lambda env: got.add(env.payload.n))
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[topic])
        await trio.sleep(kit.settle)
        async with open_bus(name="exporter", drain_timeout=120) as a:
            a.topic(topic, Order)
            await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
            await _publish(a, topic, count // 2)
            await _until("half the messages", lambda: len(got) >= count // 4, 60)
            await kit.restart_broker()
            for i in range(count // 2, count):
                await a.publish(topic, Order(i), key=f"k{i % 4}")
        await _until("every message after the restart", lambda: len(got) >= count, 120)
    assert got == set(range(count))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@_case
async def case_backpressure_bounds_memory(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.backlog"
    await _prepare(kit, topic)
    await _register(kit, topic, f"{prefix}-in")
    count = _n(kit, 5000)
    async with open_bus(name="exporter") as a:
        a.topic(topic, Order)
        await a.attach(kit.make("out", f"{prefix}-out"), export=[topic])
        for i in range(count):
            await a.publish(
                topic, Order(i, note="x" * 200), key=f"k{i % 8}", confirm=(i == count - 1)
            )
    handled: set[int] = set()
    depth = 0
    async with open_bus(name="importer") as b:
        b.topic(topic, Order)

        async def slow(env: Envelope[Order]) -> None:
            nonlocal depth
            depth = max(depth, b.stats().actors["slow"].mailbox_depth)
            if len(handled) < 200:
                await trio.sleep(0.002)
            handled.add(env.payload.n)

        b.subscribe(topic, slow, name="slow", capacity=16)
        before = _rss_bytes()
        await b.attach(kit.make("in", f"{prefix}-in"), import_=[topic])
        await _until("200 handled", lambda: len(handled) >= 200, 60)
        grown = _rss_bytes() - before
        await _until("the whole backlog", lambda: len(handled) >= count, 120)
    assert depth <= 16, f"mailbox grew to {depth} with capacity 16"
    assert grown < 64 << 20, f"RSS grew {grown >> 20} MiB while the backlog waited"


@_case
async def case_echo_guard(kit: BridgeKit, prefix: str) -> None:
    topic = f"{prefix}.order.echo"
    await _prepare(kit, topic)
    local: list[Envelope[Order]] = []
    outside: list[int] = []
    async with open_bus(name="watcher") as w:
        w.topic(topic, Order)
        w.subscribe(topic, lambda env: outside.append(env.payload.n))
        await w.attach(kit.make("watch", f"{prefix}-watch"), import_=[topic])
        async with open_bus(name="both") as b:
            b.topic(topic, Order)
            b.subscribe(topic, local.append)
            await b.attach(kit.make("both", f"{prefix}-both"), export=[topic], import_=[topic])
            await trio.sleep(kit.settle)
            await _publish(b, topic, 10)
            await _until("the messages to come back", lambda: len(local) >= 20, 60)
        await _until("the watcher", lambda: len(outside) >= 10, 60)
        await trio.sleep(1.0)  # an echo would arrive by now
    assert sorted(outside) == list(range(10)), f"the broker saw {sorted(outside)}"
    assert Counter(e.headers.get(H_ORIGIN) for e in local) == {None: 10, "both": 10}


@_case
async def case_unreachable_at_start(kit: BridgeKit, prefix: str) -> None:
    assert kit.unreachable is not None
    async with open_bus() as b:
        start = trio.current_time()
        try:
            await b.attach(kit.unreachable(), export=["x"], connect_timeout=3)
        except BackendUnavailableError:
            pass
        else:
            raise AssertionError("attach to an unreachable broker succeeded")
        took = trio.current_time() - start
    assert took < 10, f"took {took:.1f}s to report an unreachable broker"


async def check_broker_to_broker(source: BridgeKit, sink: BridgeKit) -> None:
    """One bus imports from *source*'s broker and exports to *sink*'s: every message
    arrives on the sink once, and nothing is echoed back to the source."""
    prefix = f"ct{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.order.mirrored"
    await _prepare(source, topic)
    await _prepare(sink, topic)
    count = 100
    arrived: list[int] = []
    async with open_bus(name="sink-reader") as r:
        r.topic(topic, Order)
        r.subscribe(topic, lambda env: arrived.append(env.payload.n))
        await r.attach(sink.make("sink-in", f"{prefix}-r"), import_=[topic])
        async with open_bus(name="mirror") as m:
            m.topic(topic, Order)
            await m.attach(source.make("src", f"{prefix}-m"), import_=[topic])
            await m.attach(sink.make("dst", f"{prefix}-d"), export=[topic])
            await trio.sleep(max(source.settle, sink.settle))
            async with open_bus(name="producer") as p:
                p.topic(topic, Order)
                await p.attach(source.make("src-out", f"{prefix}-p"), export=[topic])
                await _publish(p, topic, count)
            await _until("the sink to get every message", lambda: len(set(arrived)) >= count, 60)
    assert sorted(set(arrived)) == list(range(count))
