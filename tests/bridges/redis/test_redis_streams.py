"""RedisStreamsAdapter against the real Redis on loopback: publish/subscribe/consume,
competing consumers in a group, topics, and a consumer killed with SIGKILL whose
pending entries a restarted consumer takes over (nothing lost)."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from bridges.redis import RedisStreamsAdapter, _client
from bus import BackendError, ConfigurationError, RetryPolicy, TopicError
from bus.events import EventMessage

pytestmark = pytest.mark.brokers

HERE = Path(__file__).parent


@pytest.fixture
async def url(brokers: Any) -> str:
    brokers.require("redis")
    return str(brokers.env("REDIS_URL"))


@pytest.fixture
async def cleanup(url: str) -> AsyncIterator[list[str]]:
    """Streams to delete after the test."""
    streams: list[str] = []
    yield streams
    admin = RedisStreamsAdapter(url)
    with trio.CancelScope(shield=True):
        for stream in streams:
            if stream in await admin.list_topics():
                await admin.delete_topic(stream)
        await admin.disconnect()


def _messages(topic: str, n: int) -> list[EventMessage]:
    return [
        EventMessage(topic=topic, data={"n": i}, key=f"k{i % 3}", headers={"trace": f"t{i}"})
        for i in range(n)
    ]


async def _until(predicate: Any, seconds: float = 20.0) -> None:
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - state outside this process: poll it
            await trio.sleep(0.02)


async def test_publish_then_consume_and_subscribe(
    url: str, unique: str, cleanup: list[str]
) -> None:
    topic = f"{unique}.orders"
    cleanup.append(topic)
    sent = _messages(topic, 5)
    async with RedisStreamsAdapter(url) as adapter:
        for message in sent:
            await adapter.publish(message)
        # consume: the stored messages, then the iteration ends (follow=False)
        assert [m async for m in adapter.consume(topic)] == sent
        assert [m async for m in adapter.consume(topic, from_beginning=False)] == []

        got: list[EventMessage] = []

        async def handle(message: EventMessage) -> None:
            got.append(message)

        async with trio.open_nursery() as nursery:
            await adapter.subscribe(topic, handle, from_beginning=True, nursery=nursery)
            late = EventMessage(topic=topic, data={"n": 99})
            await adapter.publish(late)
            await adapter.drain()
            assert got == [*sent, late]
            nursery.cancel_scope.cancel()
        assert adapter.delivered == 6
        with pytest.raises(ConfigurationError, match="needs a nursery"):
            await adapter.subscribe(topic, handle)


async def test_group_members_share_the_messages(url: str, unique: str, cleanup: list[str]) -> None:
    topic = f"{unique}.jobs"
    cleanup.append(topic)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    async with (
        RedisStreamsAdapter(url, consumer="a", batch=5) as a,
        RedisStreamsAdapter(url, consumer="b", batch=5) as b,
        trio.open_nursery() as nursery,
    ):
        for name, adapter in (("a", a), ("b", b)):
            async def handle(message: EventMessage, name: str = name) -> None:
                seen[name].append(message.data["n"])
                await trio.sleep(0.001)  # leave room for the other member

            await adapter.subscribe(topic, handle, group="workers", nursery=nursery)
        for message in _messages(topic, 200):
            await a.publish(message)
        await _until(lambda: len(seen["a"]) + len(seen["b"]) >= 200)
        await a.drain()
        await b.drain()
        nursery.cancel_scope.cancel()
    assert sorted(seen["a"] + seen["b"]) == list(range(200))  # each once: no duplicates
    assert seen["a"] and seen["b"]  # both members got some


async def test_topics_create_list_delete(url: str, unique: str, cleanup: list[str]) -> None:
    topic = f"{unique}.t"
    cleanup.append(topic)
    async with RedisStreamsAdapter(url) as adapter:
        await adapter.create_topic(topic, shard_count=2)  # another backend's option: ignored
        await adapter.create_topic(topic)  # exists: no error
        assert topic in await adapter.list_topics()
        assert [m async for m in adapter.consume(topic)] == []
        await adapter.delete_topic(topic)
        assert topic not in await adapter.list_topics()
        with pytest.raises(TopicError, match="no topic"):
            await adapter.delete_topic(topic)
        with pytest.raises(ConfigurationError, match="unknown option"):
            await adapter.create_topic(topic, partitoins=3)


async def test_a_key_of_another_type_is_not_a_topic(
    url: str, unique: str, cleanup: list[str]
) -> None:
    key = f"{unique}.plain"
    cleanup.append(key)
    async with RedisStreamsAdapter(url) as adapter:
        await adapter._call(_set, key)
        with pytest.raises(TopicError, match="not a stream"):
            await adapter.create_topic(key)
        with pytest.raises(BackendError, match="WRONGTYPE") as info:
            await adapter.publish(EventMessage(topic=key, data={}))
        assert type(info.value.__cause__).__module__.startswith("redis")
        await adapter._call(_client.delete_stream, key)


async def _set(client: Any, key: str) -> None:
    await client.set(key, "x")


async def test_maxlen_caps_the_stream(url: str, unique: str, cleanup: list[str]) -> None:
    topic, capped = f"{unique}.all", f"{unique}.capped"
    cleanup += [topic, capped]
    async with RedisStreamsAdapter(url, maxlen=10, approximate=False) as adapter:
        for message in _messages(topic, 30):
            await adapter.publish(message)
        assert [m.data["n"] async for m in adapter.consume(topic)] == list(range(20, 30))
        await adapter.create_topic(capped, max_length=3)
        for message in _messages(capped, 8):
            await adapter.publish(message)
        assert len([m async for m in adapter.consume(capped)]) == 3


async def _dead_letters(adapter: RedisStreamsAdapter, topic: str) -> list[EventMessage]:
    return [m async for m in adapter.consume(topic)]


async def test_a_failing_callback_is_retried_then_dead_lettered_and_acknowledged(
    url: str, unique: str, cleanup: list[str]
) -> None:
    """The bus's rule: the retry policy's attempts, then the dead-letter stream with the
    reason, the entry acknowledged, and the subscription goes on (it used to end, and
    the entry was reclaimed by the group again and again)."""
    topic, dead = f"{unique}.fail", f"{unique}.dead"
    cleanup.extend([topic, dead])
    tries: list[int] = []
    handled: list[int] = []

    async def explode(message: EventMessage) -> None:
        tries.append(message.data["n"])
        if message.data["n"] == 2:
            raise RuntimeError("handler bug")
        handled.append(message.data["n"])

    async with RedisStreamsAdapter(url, dead_letter_topic=dead, claim_idle=0.2) as adapter, \
            trio.open_nursery() as nursery:
        for message in _messages(topic, 4):
            await adapter.publish(message)
        await adapter.subscribe(topic, explode, group="g", from_beginning=True,
                                retry=RetryPolicy(attempts=3, base_delay=0.01), nursery=nursery)
        await _until(lambda: handled == [0, 1, 3] and adapter.dead_lettered == 1)
        await adapter.publish(_messages(topic, 5)[4])  # still subscribed
        await _until(lambda: handled == [0, 1, 3, 4])
        # acknowledged once the callback returned: wait for the XACK, do not race it
        with trio.fail_after(10):
            while await adapter._call(_client.pending_count, topic, "g"):  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert tries.count(2) == 3
        [letter] = await _dead_letters(adapter, dead)
        nursery.cancel_scope.cancel()
    assert (letter.data, letter.key) == ({"n": 2}, "k2")
    assert letter.headers == {
        "trace": "t2", "x-bus-error": "handler bug", "x-bus-error-type": "builtins.RuntimeError",
        "x-bus-original-topic": topic, "x-bus-attempts": "3",
        "x-bus-failed-subscriber": explode.__qualname__,
    }


async def test_an_entry_delivered_too_often_is_dead_lettered_without_its_callback(
    url: str, unique: str, cleanup: list[str]
) -> None:
    """Consumers that die holding an entry (a poison entry that crashes them) make Redis
    deliver it again and again: past max_deliveries (XPENDING's count) it is
    dead-lettered unhandled. Below the limit it is handled as usual."""
    topic, dead = f"{unique}.poison", f"{unique}.dead"
    cleanup.extend([topic, dead])
    got: list[int] = []

    async def handle(message: EventMessage) -> None:
        got.append(message.data["n"])

    async with RedisStreamsAdapter(url, dead_letter_topic=dead, max_deliveries=3,
                                   claim_idle=0.05) as adapter:
        first, second = _messages(topic, 2)
        await adapter._call(_client.create_group, topic, "g", "0")
        # consumers that took the entries and died: message 0 delivered 3 times, 1 twice
        await adapter.publish(first)
        await adapter._call(_client.read_group, topic, "g", "died-1", ">", 10, None)
        await adapter._call(_client.autoclaim, topic, "g", "died-2", 0, 10)
        await adapter.publish(second)
        await adapter._call(_client.read_group, topic, "g", "died-2", ">", 10, None)
        await adapter._call(_client.autoclaim, topic, "g", "died-3", 0, 10)
        async with trio.open_nursery() as nursery:
            await adapter.subscribe(topic, handle, group="g", nursery=nursery)
            await _until(lambda: got == [1] and adapter.dead_lettered == 1)
            await adapter.drain()
            nursery.cancel_scope.cancel()
        assert await adapter._call(_client.pending_count, topic, "g") == 0
        [letter] = await _dead_letters(adapter, dead)
    assert letter.data == {"n": 0} and letter.headers["x-bus-attempts"] == "3"
    assert letter.headers["x-bus-error-type"] == "bridges.redis._failures.TooManyDeliveries"
    assert "4 times without an acknowledgement (max_deliveries=3)" in letter.headers["x-bus-error"]


@pytest.mark.timeout(90)
async def test_killed_consumer_loses_nothing(
    url: str, unique: str, cleanup: list[str], tmp_path: Path
) -> None:
    """SIGKILL a consumer mid-stream; a consumer started afterwards takes over what it
    had taken and not acknowledged: every message sent is handled."""
    topic, group, total = f"{unique}.crash", "billing", 400
    cleanup.append(topic)
    out = tmp_path / "handled-by-child.txt"
    async with RedisStreamsAdapter(url, consumer="survivor", claim_idle=0.5) as survivor:
        for message in _messages(topic, total):
            await survivor.publish(message)
        name = f"doomed-{unique}"  # the child's connections, in CLIENT LIST
        child_url = f"{url}{'&' if '?' in url else '?'}client_name={name}"
        child = await trio.lowlevel.open_process(
            [sys.executable, str(HERE / "redis_child.py"), child_url, topic, group, str(out),
             "120"],
        )
        try:
            # 0..119 handled, and 120 (with what was read with it) taken and never
            # acknowledged: its callback never returns (it wrote OUTFILE.hung)
            await _until(lambda: out.with_name(out.name + ".hung").exists(), 30)
            assert await _connected(survivor, name)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            with trio.move_on_after(10, shield=True):
                await child.wait()
        assert child.returncode == -signal.SIGKILL
        # What the child sent before it died (acknowledgements) reaches the server before
        # its connections close: once they are gone, the pending count is final.
        await _until_disconnected(survivor, name)
        by_child = {int(n) for n in out.read_text().split()}
        assert len(by_child) < total  # killed mid-stream
        pending = await survivor._call(_client.pending_count, topic, group)
        assert pending >= 1  # taken by the child and never acknowledged

        handled: list[int] = []

        async def handle(message: EventMessage) -> None:
            handled.append(message.data["n"])

        async with trio.open_nursery() as nursery:
            await survivor.subscribe(topic, handle, group=group, nursery=nursery)
            await _until(lambda: by_child | set(handled) >= set(range(total)), 30)
            await survivor.drain()
            nursery.cancel_scope.cancel()
        assert by_child | set(handled) == set(range(total))  # sent = handled
        assert survivor.reclaimed >= pending  # the child's pending entries were taken over
        assert await survivor._call(_client.pending_count, topic, group) == 0
        # at-least-once: only what the child had in hand may have been handled twice
        assert len(by_child & set(handled)) <= pending


async def _connected(adapter: RedisStreamsAdapter, name: str) -> bool:
    """Whether the server holds a connection named *name* (CLIENT SETNAME)."""

    async def named(client: Any) -> bool:
        return any(c.get("name") == name for c in await client.client_list())

    return await adapter._call(named)


async def _until_disconnected(adapter: RedisStreamsAdapter, name: str) -> None:
    with trio.fail_after(20):
        while await _connected(adapter, name):  # noqa: ASYNC110 - server state: poll it
            await trio.sleep(0.02)


async def _blocked_reads(client: Any) -> int:
    """How many clients of the server wait in a blocking XREADGROUP."""
    return sum(
        1 for c in await client.client_list()
        if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
    )


async def test_deleting_a_topic_ends_its_subscriptions(
    url: str, unique: str, cleanup: list[str]
) -> None:
    topic = f"{unique}.gone"
    cleanup.append(topic)

    async def ignore(message: EventMessage) -> None:
        pass

    async with RedisStreamsAdapter(url, block=5) as adapter, trio.open_nursery() as nursery:
        await adapter.subscribe(topic, ignore, group="g", nursery=nursery)
        with trio.fail_after(5):  # the subscription waits in a blocking read
            while not await adapter._call(_blocked_reads):  # noqa: ASYNC110 - server state
                await trio.sleep(0.02)
        await adapter.delete_topic(topic)
        with trio.fail_after(3):  # ends quietly well before its 5 s read would time out
            while adapter._subscriptions:  # noqa: ASYNC110 - ends on the server's answer
                await trio.sleep(0.02)


async def test_the_seed_adapter_options_work(url: str, unique: str, cleanup: list[str]) -> None:
    """The seed's adapter takes consumer_group / consumer_name and last_id."""
    topic = f"{unique}.seed"
    cleanup.append(topic)
    async with RedisStreamsAdapter(url) as adapter:
        for message in _messages(topic, 3):
            await adapter.publish(message)
        first = [m async for m in adapter.consume(topic, last_id="0")]
        assert [m.data["n"] for m in first] == [0, 1, 2]
        newest = await adapter._call(_client.last_id, topic)
        assert newest is not None
        assert [m async for m in adapter.consume(topic, last_id=newest.decode())] == []
        reader = adapter.consume(topic, consumer_group="seed", consumer_name="c1")
        assert [m.data["n"] async for m in reader] == [0, 1, 2]
        assert (reader.group, reader.consumer) == ("seed", "c1")
        # each was acknowledged when the next one (or the end) was asked for
        assert await adapter._call(_client.pending_count, topic, "seed") == 0
        async for message in adapter.consume(topic, consumer_group="other"):
            assert message.data["n"] == 0
            break  # the message in hand is not acknowledged: the group keeps it
        # with the two read ahead in the same batch, for this member or a reclaimer
        assert await adapter._call(_client.pending_count, topic, "other") == 3
