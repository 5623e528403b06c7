"""Actors: per-key order, groups, overflow policies, retries, dead letters, supervision.

Every time-based test runs on ``MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock`` fixture), so backoffs of seconds take no real time.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bus import (
    Actor,
    Envelope,
    MailboxFullError,
    RetryPolicy,
    Supervision,
    SupervisorGaveUp,
    open_bus,
)
from bus._actor import key_slot
from bus._envelope import H_ATTEMPTS, H_ERROR, H_ERROR_TYPE, H_FAILED_SUBSCRIBER, H_ORIGINAL_TOPIC


async def _keyed_run(messages: list[tuple[str, int]], concurrency: int) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    lanes: dict[str, set[int]] = defaultdict(set)

    async def handler(env: Envelope[int]) -> None:
        assert env.key is not None
        seen[env.key].append(env.payload)
        lanes[env.key].add(id(trio.lowlevel.current_task()))
        if env.payload % 3 == 0:
            await trio.lowlevel.checkpoint()  # interleave workers

    async with open_bus() as bus:
        bus.topic("k", int)
        bus.subscribe("k", handler, concurrency=concurrency, capacity=4)
        for key, value in messages:
            await bus.publish("k", value, key=key)
    assert all(len(tasks) == 1 for tasks in lanes.values()), "a key moved between workers"
    return seen


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 1000)), max_size=60),
    st.integers(1, 5),
)
def test_per_key_order_holds_with_concurrent_workers(
    messages: list[tuple[str, int]], concurrency: int
) -> None:
    seen = trio.run(_keyed_run, messages, concurrency)
    expected: dict[str, list[int]] = defaultdict(list)
    for key, value in messages:
        expected[key].append(value)
    assert dict(seen) == dict(expected)


async def test_concurrency_runs_handlers_in_parallel(autojump_clock: Any) -> None:
    running, peak = 0, 0

    async def handler(env: Envelope[int]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", handler, concurrency=4)
        start = trio.current_time()
        for i in range(8):
            await bus.publish("t", i)  # no key: round-robin over 4 workers
        await bus.drain()
        assert trio.current_time() - start == pytest.approx(2.0)
    assert peak == 4


async def test_groups_compete_and_every_group_gets_everything() -> None:
    got: dict[str, list[int]] = defaultdict(list)

    def member(name: str) -> Any:
        return lambda env: got[name].append(env.payload)

    async with open_bus() as bus:
        bus.topic("job", int)
        for name in ("w1", "w2", "w3"):
            bus.subscribe("job", member(name), name=name, group="workers")
        bus.subscribe("job", member("audit"), name="audit", group="auditors")
        bus.subscribe("job", member("solo"), name="solo")
        for i in range(30):
            await bus.publish("job", i)
    workers = got["w1"] + got["w2"] + got["w3"]
    assert sorted(workers) == list(range(30))  # once per group
    assert all(got[w] for w in ("w1", "w2", "w3"))  # spread over members
    assert got["audit"] == list(range(30)) and got["solo"] == list(range(30))
    stats = bus.stats()
    assert stats.actors["w1"].group == "workers"


async def test_group_members_must_share_the_pattern() -> None:
    async with open_bus() as bus:
        bus.subscribe("a.*", print, group="g")
        with pytest.raises(Exception, match="every member must use that pattern"):
            bus.subscribe("a.#", print, group="g")


async def test_keyed_messages_stick_to_one_group_member() -> None:
    owner: dict[str, set[str]] = defaultdict(set)
    async with open_bus() as bus:
        bus.topic("job", int)
        for name in ("w1", "w2"):
            bus.subscribe(
                "job", lambda env, n=name: owner[env.key].add(n), name=name, group="g"
            )
        for i in range(40):
            await bus.publish("job", i, key=f"k{i % 5}")
    assert all(len(members) == 1 for members in owner.values())


async def test_block_policy_applies_backpressure_and_loses_nothing(autojump_clock: Any) -> None:
    got: list[int] = []

    async def slow(env: Envelope[int]) -> None:
        await trio.sleep(1)
        got.append(env.payload)

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", slow, capacity=2)
        start = trio.current_time()
        for i in range(6):
            await bus.publish("t", i)
        waited = trio.current_time() - start
    # held back by the full mailbox: 0 in hand, 1 and 2 queued, then 3, 4 and 5 each wait
    # for the handler's next second
    assert waited == 3
    assert got == list(range(6))


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop_oldest", [0, 3, 4]), ("drop_newest", [0, 1, 2])]
)
async def test_drop_policies_drop_counted_and_logged(policy: str, kept: list[int]) -> None:
    got: list[int] = []
    busy, gate = trio.Event(), trio.Event()

    async def handler(env: Envelope[int]) -> None:
        busy.set()
        await gate.wait()
        got.append(env.payload)

    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", handler, name="h", capacity=2, overflow=policy)
            await bus.publish("t", 0)
            with trio.fail_after(5):
                await busy.wait()  # the worker holds 0; the mailbox is empty
            for i in range(1, 5):
                await bus.publish("t", i)
            gate.set()
    assert got == kept
    assert bus.stats().actors["h"].dropped == 2
    reports = [e for e in logs if e["event"] == "message.dropped"]
    assert {e["policy"] for e in reports} == {policy}
    assert sum(e["dropped"] for e in reports) == 2


async def test_error_policy_raises_to_the_publisher() -> None:
    busy, gate = trio.Event(), trio.Event()

    async def handler(env: Envelope[int]) -> None:
        busy.set()
        await gate.wait()

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", handler, capacity=1, overflow="error")
        await bus.publish("t", 1)
        with trio.fail_after(5):
            await busy.wait()
        await bus.publish("t", 2)
        with pytest.raises(MailboxFullError, match="overflow policy is 'error'"):
            await bus.publish("t", 3)
        gate.set()


async def test_publishing_to_own_full_mailbox_fails_instead_of_deadlocking() -> None:
    async def echo(env: Envelope[int]) -> None:
        if env.payload == 0:
            await bus.publish("t", 1)  # fills the mailbox (capacity 1)
            await bus.publish("t", 2)  # would wait for itself forever

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", echo, name="echo", capacity=1, retry=RetryPolicy(attempts=1))
        await bus.publish("t", 0)
    [letter] = bus.retained(bus.dead_letter_topic)
    assert letter.payload == 0
    assert "published to its own full mailbox" in letter.headers[H_ERROR]


async def test_failing_handler_is_retried_with_backoff_then_succeeds(autojump_clock: Any) -> None:
    attempts: list[tuple[int, float]] = []

    async def flaky(env: Envelope[int]) -> None:
        attempts.append((env.attempt, trio.current_time()))
        if env.attempt < 3:
            raise RuntimeError("not yet")

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe(
            "t", flaky, name="f",
            retry=RetryPolicy(attempts=3, base_delay=1, factor=2, jitter=0),
        )
        await bus.publish("t", 1)
    assert [a for a, _ in attempts] == [1, 2, 3]
    t0 = attempts[0][1]
    assert [round(t - t0, 6) for _, t in attempts] == [0, 1, 3]
    stats = bus.stats().actors["f"]
    assert (stats.delivered, stats.failed, stats.retried, stats.dead_lettered) == (1, 2, 2, 0)


async def test_a_sync_burst_with_failures_counts_every_message_once(autojump_clock: Any) -> None:
    """A sync handler drains queued messages in bursts; a failure mid-burst is retried
    and the burst ends there: every message is handled once, in order, counted once."""
    seen: list[tuple[int, int]] = []

    def handler(env: Envelope[int]) -> None:
        seen.append((env.payload, env.attempt))
        if env.payload % 7 == 3 and env.attempt == 1:
            raise RuntimeError("once")

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", handler, name="h", retry=RetryPolicy(attempts=2, jitter=0))
        for i in range(40):  # queued before the worker runs: bursts of many
            await bus.publish("t", i)
    firsts = [p for p, attempt in seen if attempt == 1]
    assert firsts == list(range(40))
    assert [p for p, attempt in seen if attempt == 2] == [3, 10, 17, 24, 31, 38]
    stats = bus.stats().actors["h"]
    assert (stats.delivered, stats.failed, stats.retried) == (40, 6, 6)


async def test_poison_message_goes_to_the_dead_letter_topic_and_actor_keeps_going(
    autojump_clock: Any,
) -> None:
    handled: list[int] = []
    dead: list[Envelope[Any]] = []

    def handler(env: Envelope[int]) -> None:
        if env.payload == 13:
            raise ValueError("unlucky number")
        handled.append(env.payload)

    async with open_bus() as bus:
        bus.topic("n", int)
        bus.subscribe("n", handler, name="numbers", retry=RetryPolicy(attempts=2, jitter=0))
        bus.subscribe(bus.dead_letter_topic, dead.append, name="dlq")
        for i in (12, 13, 14):
            await bus.publish("n", i)
    assert handled == [12, 14]
    [letter] = dead
    assert letter.payload == 13 and letter.topic == "bus.dead_letter" and letter.attempt == 2
    assert letter.headers[H_ERROR] == "unlucky number"
    assert letter.headers[H_ERROR_TYPE] == "builtins.ValueError"
    assert letter.headers[H_ORIGINAL_TOPIC] == "n"
    assert letter.headers[H_FAILED_SUBSCRIBER] == "numbers"
    assert letter.headers[H_ATTEMPTS] == "2"
    assert [e.payload for e in bus.retained("bus.dead_letter")] == [13]  # kept for inspection
    assert bus.stats().actors["numbers"].dead_lettered == 1


async def test_retry_keeps_later_messages_of_the_lane_waiting(autojump_clock: Any) -> None:
    order: list[int] = []

    def handler(env: Envelope[int]) -> None:
        if env.payload == 1 and env.attempt == 1:
            raise RuntimeError("once")
        order.append(env.payload)

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", handler, retry=RetryPolicy(attempts=2))
        for i in range(4):
            await bus.publish("t", i, key="same")
    assert order == [0, 1, 2, 3]


class Counter(Actor):
    def __init__(self, fail_starts: int) -> None:
        self.fail_starts = fail_starts
        self.starts = 0
        self.stopped = False
        self.seen: list[int] = []

    async def on_start(self) -> None:
        self.starts += 1
        if self.starts <= self.fail_starts:
            raise ConnectionError("database not ready")

    async def handle(self, env: Envelope[int]) -> None:
        self.seen.append(env.payload)

    async def on_stop(self) -> None:
        self.stopped = True


async def test_supervisor_restarts_a_crashed_actor_with_backoff(autojump_clock: Any) -> None:
    actor = Counter(fail_starts=2)
    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", actor, name="counter", supervision=Supervision(base_delay=1))
            for i in range(3):
                await bus.publish("t", i)  # queued while the actor restarts: not lost
    assert actor.starts == 3 and actor.seen == [0, 1, 2] and actor.stopped
    assert bus.stats().actors["counter"].restarts == 2
    restarts = [e for e in logs if e["event"] == "actor.restart"]
    assert [e["delay"] for e in restarts] == [1.0, 2.0]


async def test_supervisor_gives_up_after_the_limit_and_the_error_surfaces(
    autojump_clock: Any,
) -> None:
    actor = Counter(fail_starts=100)
    with pytest.raises(SupervisorGaveUp, match="'counter' crashed 3 times") as info:
        async with open_bus() as bus:
            bus.subscribe(
                "t", actor, name="counter", supervision=Supervision(max_restarts=2, window=60)
            )
            await trio.sleep(100)
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_close_subscription_stops_delivery() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", lambda env: got.append(env.payload))
        await bus.publish("t", 1)
        await bus.drain()
        sub.close()
        await bus.publish("t", 2)
    assert got == [1] and sub.closed


async def test_keys_map_to_lanes_by_crc32_so_every_process_agrees() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", lambda env: None, concurrency=4)
        for key in ("order-1", "order-2", "customer-77", "ä-ü"):
            env = await bus.publish("t", 1, key=key)
            lane = sub.select(env)
            assert lane is not None and lane.index == zlib.crc32(key.encode()) % 4
    assert key_slot("order-1", 4) == zlib.crc32(b"order-1") % 4


async def _lanes_used(keys: list[str], concurrency: int, confirm: bool) -> list[int]:
    """The lane index each keyed message was handled on, published one way or the other."""
    used: dict[int, int] = {}

    def handler(env: Envelope[int]) -> None:
        used[env.payload] = workers.index(trio.lowlevel.current_task())

    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", handler, concurrency=concurrency)
        await trio.testing.wait_all_tasks_blocked()
        workers = [lane.worker for lane in sub.lanes]
        for i, key in enumerate(keys):
            await bus.publish("t", i, key=key, confirm=confirm)
    return [used[i] for i in range(len(keys))]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=30), st.integers(2, 5))
def test_publish_puts_a_key_on_the_lane_the_general_path_and_key_slot_choose(
    keys: list[str], concurrency: int
) -> None:
    """publish's inlined keyed path (one plain subscriber with several lanes) agrees with
    the general one (confirm=True goes through select) and with key_slot."""
    fast = trio.run(_lanes_used, keys, concurrency, False)
    general = trio.run(_lanes_used, keys, concurrency, True)
    assert fast == general == [key_slot(key, concurrency) for key in keys]


async def test_per_key_order_and_crc32_lanes_hold_past_any_number_of_keys() -> None:
    """10,000 keys (a key->lane memo of 4,096 used to be emptied when full): every key
    keeps its order and runs on the lane key_slot gives it, through a small mailbox
    that makes the publisher wait and the workers interleave."""
    keys = [f"key-{i}" for i in range(10_000)]
    seen: dict[str, list[int]] = defaultdict(list)
    ran: dict[str, set[object]] = defaultdict(set)

    async def handler(env: Envelope[int]) -> None:
        seen[env.key or ""].append(env.payload)
        ran[env.key or ""].add(trio.lowlevel.current_task())
        if env.payload % 7 == 0:
            await trio.lowlevel.checkpoint()

    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", handler, concurrency=4, capacity=8)
        for rnd in range(3):
            for key in keys:
                await bus.publish("t", rnd, key=key)
        await bus.drain()
        workers = [lane.worker for lane in sub.lanes]
    for key in keys:
        assert seen[key] == [0, 1, 2], key
        assert ran[key] == {workers[zlib.crc32(key.encode()) % 4]}, key


async def _retry_times(seed: int) -> list[float]:
    times: list[float] = []

    def fails(env: Envelope[int]) -> None:
        times.append(trio.current_time())
        raise RuntimeError("again")

    async with open_bus(seed=seed) as bus:
        bus.topic("t", int)
        bus.subscribe("t", fails, retry=RetryPolicy(attempts=4, base_delay=1, jitter=0.5))
        await bus.publish("t", 1)
    return times


async def test_a_seeded_bus_repeats_its_retry_jitter(autojump_clock: Any) -> None:
    first, again, other = await _retry_times(5), await _retry_times(5), await _retry_times(6)
    deltas = [[round(b - a, 9) for a, b in itertools.pairwise(t)] for t in (first, again, other)]
    assert deltas[0] == deltas[1] != deltas[2]
