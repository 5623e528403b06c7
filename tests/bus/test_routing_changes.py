"""Routes stay right after every kind of subscription change, and changes touch only
the routes they affect: the routing table and the bus, each against a naive router that
recomputes every route from scratch (hypothesis drives the sequences of changes)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import Envelope, open_bus
from bus._routing import Pattern, RoutingTable

TOPICS = [
    "a", "b", "a.b", "a.c", "b.a", "a.b.c", "a.a.a", "c.b.a", "bus.reply.x", "bus.reply",
    "bus.other",
]
PATTERNS = st.one_of(
    st.lists(st.sampled_from(["a", "b", "c", "*", "#"]), min_size=1, max_size=4).map(".".join),
    st.sampled_from(["bus.reply.#", "bus.reply.*", "bus.#", "*.*.*", "#", "bus.reply.x"]),
)


def naive(entries: list[tuple[str, str]], topic: str) -> tuple[str, ...]:
    """Every entry tested, in the order added; a target once (the reference router)."""
    targets: list[str] = []
    for pattern, target in entries:
        if Pattern(pattern).matches(topic) and target not in targets:
            targets.append(target)
    return tuple(targets)


def _plain_match(segs: list[str], words: list[str]) -> bool:
    """AMQP matching by recursion, with no private-topic rule."""
    if not segs:
        return not words
    head, rest = segs[0], segs[1:]
    if head == "#":
        return any(_plain_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _plain_match(rest, words[1:])


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), PATTERNS, st.sampled_from("pqrst")),
        st.tuples(st.just("remove"), st.sampled_from("pqrst")),
        st.tuples(st.just("route"), st.sampled_from(TOPICS)),
        st.tuples(st.just("forget"), st.sampled_from(TOPICS)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_table_agrees_with_a_naive_router_after_every_change(
    steps: list[tuple[str, ...]],
) -> None:
    table: RoutingTable[str] = RoutingTable()
    entries: list[tuple[str, str]] = []
    memoised: dict[str, tuple[str, ...]] = {}  # what the table has answered and keeps
    for step in steps:
        if step[0] == "add":
            _, pattern, target = step
            changed = table.add(pattern, target)
            entries.append((pattern, target))
        elif step[0] == "remove":
            changed = table.remove(step[1])
            entries = [(p, t) for p, t in entries if t != step[1]]
        elif step[0] == "forget":
            table.forget(step[1])
            memoised.pop(step[1], None)
            changed = []
        else:
            memoised[step[1]] = table.route(step[1])
            changed = []
        # a change reports exactly the memoised routes it changed, and they are right
        now = {topic: naive(entries, topic) for topic in memoised}
        assert set(changed) == {t for t in memoised if now[t] != memoised[t]}, step
        memoised = now
        for topic in TOPICS:
            assert table.route(topic) == naive(entries, topic), (step, topic)
        for topic in TOPICS:
            if topic not in memoised:
                table.forget(topic)  # keep the table's memo as the test tracks it
        assert len(table) == len(entries)
        assert [(p.text, t) for p, t in table] == entries


def test_adding_a_pattern_touches_only_the_topics_it_matches() -> None:
    table: RoutingTable[str] = RoutingTable()
    for topic in ("order.created", "order.paid", "stock.low", "order.x.y"):
        table.route(topic)
    assert sorted(table.add("order.*", "s")) == ["order.created", "order.paid"]
    assert table.add("audit.#", "a") == []
    assert table.add("stock.low", "s") == ["stock.low"]
    assert sorted(table.routed_to("s")) == ["order.created", "order.paid", "stock.low"]
    assert sorted(table.remove("s")) == ["order.created", "order.paid", "stock.low"]
    assert table.route("order.paid") == ()


def test_a_route_matched_by_thousands_keeps_subscription_order() -> None:
    table: RoutingTable[int] = RoutingTable()
    for i in range(3000):
        table.add(("t.x", "t.*", "#", "*.x")[i % 4], i)
    assert table.route("t.x") == tuple(range(3000))
    table.remove(1500)
    assert table.route("t.x") == tuple(i for i in range(3000) if i != 1500)


# -- the bus ------------------------------------------------------------------------------

BUS_TOPICS = ["a.b", "a.c", "b.a", "a.b.c", "c"]
bus_ops = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from(["a.*", "#", "*.a", "a.b", "c", "a.#"])),
        st.tuples(st.just("group"), st.sampled_from(["g1", "g2"]), st.sampled_from([1, 2])),
        st.tuples(st.just("careful"), st.sampled_from(["a.*", "#"])),
        st.tuples(st.just("close"), st.integers(0, 20)),
        st.tuples(st.just("delete"), st.sampled_from(BUS_TOPICS)),
        st.tuples(st.just("publish"),),
    ),
    max_size=25,
)


async def _bus_run(steps: list[tuple[Any, ...]]) -> None:
    got: dict[str, list[int]] = defaultdict(list)
    live: list[tuple[str, Any, str | None]] = []  # (pattern, subscription, group)
    group_patterns = {"g1": "a.#", "g2": "*.b"}
    seq = 0

    def handler(name: str) -> Any:
        return lambda env: got[name].append(env.payload)

    async with open_bus(strict=False) as bus:
        for topic in BUS_TOPICS:
            bus.topic(topic, int)
        for step in steps:
            kind = step[0]
            if kind in ("subscribe", "careful"):
                name = f"s{len(live)}"
                overflow = "error" if kind == "careful" else "block"
                sub = bus.subscribe(
                    step[1], handler(name), name=name, overflow=overflow, capacity=10_000
                )
                live.append((step[1], sub, None))
            elif kind == "group":
                name = f"s{len(live)}"
                sub = bus.subscribe(
                    group_patterns[step[1]], handler(name), name=name, group=step[1],
                    concurrency=step[2], overflow="error" if step[2] == 2 else "block",
                    capacity=10_000,
                )
                live.append((group_patterns[step[1]], sub, step[1]))
            elif kind == "close":
                open_ = [entry for entry in live if not entry[1].closed]
                if open_:
                    open_[step[1] % len(open_)][1].close()
            elif kind == "delete":
                bus.delete_topic(step[1])
                bus.topic(step[1], int)
            else:
                got.clear()
                for topic in BUS_TOPICS:
                    seq += 1
                    await bus.publish(topic, seq)
                    expected: dict[str | None, int] = defaultdict(int)
                    for pattern, sub, group in live:
                        if not sub.closed and Pattern(pattern).matches(topic):
                            expected[group or sub.name] = 1
                    await bus.drain()
                    reached: dict[str | None, int] = defaultdict(int)
                    for _, sub, group in live:
                        reached[group or sub.name] += got[sub.name].count(seq)
                    assert {k: v for k, v in reached.items() if v} == dict(expected), (
                        topic, steps,
                    )


@settings(max_examples=60, deadline=None)
@given(bus_ops)
def test_the_bus_delivers_where_a_naive_router_says_after_every_change(
    steps: list[tuple[Any, ...]],
) -> None:
    trio.run(_bus_run, [*steps, ("publish",)])


async def test_derived_names_count_on_without_reusing_a_taken_name() -> None:
    def h(env: Envelope[Any]) -> None:
        pass

    async with open_bus() as bus:
        names = [bus.subscribe("t", h).name for _ in range(3)]
        bus.subscribe("t", h, name=f"{h.__qualname__}#4")  # an explicit name takes the next suffix
        names += [bus.subscribe("t", h).name for _ in range(2)]
        other = bus.subscribe("t", lambda env: None).name
    base = h.__qualname__
    assert names == [base, f"{base}#2", f"{base}#3", f"{base}#5", f"{base}#6"]
    assert other.endswith(".<lambda>") and "#" not in other


async def test_a_group_member_that_may_refuse_makes_publish_all_or_nothing_at_once() -> None:
    """A memoised topic whose group gains an ``overflow="error"`` member: publish checks
    every mailbox first from the next message on, so a refusal reaches nobody."""
    from bus import MailboxFullError

    release = trio.Event()
    plain: list[int] = []

    async def stuck(env: Envelope[int]) -> None:
        await release.wait()

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: plain.append(env.payload), name="plain")
        first = bus.subscribe("t", lambda env: None, name="m1", group="g")
        await bus.publish("t", 0)  # the route is memoised: plain, g
        first.close()
        bus.subscribe("t", stuck, name="m2", group="g", overflow="error", capacity=1)
        await bus.publish("t", 1)  # m2 holds it in its handler
        await trio.testing.wait_all_tasks_blocked()
        await bus.publish("t", 2)  # m2's mailbox is now full
        try:
            await bus.publish("t", 3)
        except MailboxFullError:
            pass
        else:
            raise AssertionError("m2's full mailbox did not refuse")
        release.set()
    assert plain == [0, 1, 2]  # 3 reached nobody


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(TOPICS), max_size=12),
    st.lists(PATTERNS, min_size=1, max_size=4),
)
def test_the_topic_trie_finds_what_each_pattern_matches_and_prunes_behind_it(
    names: list[str], patterns: list[str]
) -> None:
    from bus._route_index import TopicTrie

    trie = TopicTrie()
    for name in names:
        trie.add(name)
    for pattern in patterns:
        segments = pattern.split(".")
        found = list(trie.matching(segments))
        assert len(found) == len(set(found))
        # the trie does not apply the private rule (the table does): compare without it
        assert set(found) == {n for n in set(names) if _plain_match(segments, n.split("."))}
    assert len(trie) == len(set(names))
    for name in names:
        trie.discard(name)
    assert len(trie) == 0 and trie._root.children is None  # nothing left behind


def test_removing_every_target_leaves_no_pattern_branch_behind() -> None:
    table: RoutingTable[str] = RoutingTable()
    for i, pattern in enumerate(["a.b.c", "a.*", "#", "a.#.c", "b"]):
        table.add(pattern, f"t{i}")
    for i in range(5):
        table.remove(f"t{i}")
    assert table._patterns.root.children == {} and len(table) == 0
