"""RedisBridge where it differs from the other brokers (the conformance suite covers the
contract, ``tests/conformance``): a record Redis refuses is dead-lettered and the rest of
its batch delivered; topics are streams and a key of another type is never touched; a
bridge leaves no consumer behind in its group, a tail no group; a service file's
``type = "redis"``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from bridges.redis import PLUGIN, RedisBridge
from bus import ConfigurationError, Envelope, open_bus
from bus.abc import H_ERROR, H_ORIGINAL_TOPIC
from bus.cli._service.config import parse


class Order(msgspec.Struct):
    n: int


@pytest.fixture
def url(brokers: Any) -> str:
    brokers.require("redis")
    return str(brokers.env("REDIS_URL"))


@pytest.fixture
async def admin(url: str) -> AsyncIterator[Any]:
    """A plain redis-py client (sync, in a worker thread) to look at the server; every
    key named ``rb<hex>...`` is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(url)
    yield client
    for key in client.scan_iter(match="rb*"):
        client.delete(key)
    client.close()


def _prefix() -> str:
    return f"rb{uuid.uuid4().hex[:10]}"


@pytest.mark.brokers
async def test_a_record_redis_refuses_is_dead_lettered_and_the_rest_delivered(
    url: str, admin: Any
) -> None:
    prefix = _prefix()
    good, taken = f"{prefix}.order.good", f"{prefix}.order.taken"
    admin.set(taken, "a string, not a stream")  # XADD answers WRONGTYPE
    async with open_bus(name="out") as bus:
        bus.topic(good, Order)
        bus.topic(taken, Order)
        await bus.attach(RedisBridge(url, name="out"), export=[f"{prefix}.#"])
        with trio.fail_after(30):
            await bus.publish(good, Order(1))
            await bus.publish(taken, Order(2))
            await bus.publish(good, Order(3), confirm=True)
            while not bus.retained(bus.dead_letter_topic):  # noqa: ASYNC110
                await trio.sleep(0.01)
        letters = bus.retained(bus.dead_letter_topic)
    assert [msgspec.json.decode(f[b"data"]) for _, f in admin.xrange(good)] == [
        {"n": 1}, {"n": 3},
    ]
    assert admin.get(taken) == b"a string, not a stream"
    assert len(letters) == 1
    assert letters[0].headers[H_ORIGINAL_TOPIC] == taken
    assert "WRONGTYPE" in letters[0].headers[H_ERROR]


@pytest.mark.brokers
async def test_topics_are_streams_and_another_key_is_never_touched(
    url: str, admin: Any
) -> None:
    prefix = _prefix()
    bridge = RedisBridge(url, name="admin")
    await bridge.open()
    try:
        await bridge.create_topic(f"{prefix}.a")
        await bridge.create_topic(f"{prefix}.a")  # idempotent
        assert admin.type(f"{prefix}.a") == b"stream" and admin.xlen(f"{prefix}.a") == 0
        assert f"{prefix}.a" in await bridge.list_topics()
        admin.set(f"{prefix}.s", "mine")
        with pytest.raises(ConfigurationError, match=r"holds a string, not a stream"):
            await bridge.delete_topic(f"{prefix}.s")
        with pytest.raises(ConfigurationError, match=r"holds a string, not a stream"):
            await bridge.create_topic(f"{prefix}.s")
        with pytest.raises(ConfigurationError, match=r"takes no options"):
            await bridge.create_topic(f"{prefix}.b", partitions=3)
        await bridge.delete_topic(f"{prefix}.a")
        await bridge.delete_topic(f"{prefix}.a")  # a missing one is no error
        assert admin.exists(f"{prefix}.a") == 0 and admin.get(f"{prefix}.s") == b"mine"
        assert await bridge.health()
    finally:
        await bridge.aclose()
    assert not await bridge.health()


@pytest.mark.brokers
async def test_a_bridge_leaves_no_consumer_and_nothing_pending(url: str, admin: Any) -> None:
    prefix = _prefix()
    topic = f"{prefix}.order"
    got: list[int] = []
    async with open_bus(name="in") as bus:
        bus.topic(topic, Order)
        bus.subscribe(topic, lambda env: got.append(env.payload.n))
        await bus.attach(RedisBridge(url, name="in", group="g"), import_=[topic])
        for n in range(5):
            admin.xadd(topic, {"data": msgspec.json.encode(Order(n))})
        with trio.fail_after(30):
            while len(got) < 5:  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert got == [0, 1, 2, 3, 4]
    assert admin.xpending(topic, "g")["pending"] == 0
    assert admin.xinfo_consumers(topic, "g") == []


@pytest.mark.brokers
async def test_a_tails_private_group_is_removed_afterwards(url: str, admin: Any) -> None:
    prefix = _prefix()
    topic = f"{prefix}.order"
    admin.xadd(topic, {"data": b'{"n": 0}'})
    options, private = PLUGIN.tail_options(topic, True, "bus-cli-tail-1")  # type: ignore[misc]
    assert private == "bus-cli-tail-1"
    bridge = PLUGIN.from_url(url, name="tail", **options)
    got: list[Envelope[Order]] = []
    async with open_bus(name="tail") as bus:
        bus.topic(topic, Order)
        bus.subscribe(topic, got.append)
        await bus.attach(bridge, import_=[topic])
        with trio.fail_after(30):
            while not got:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert [g["name"] for g in admin.xinfo_groups(topic)] == [b"bus-cli-tail-1"]
    # as `bus tail` does once its bus exited: the bridge opened again to clean up
    assert PLUGIN.tail_cleanup is not None
    await bridge.open()
    try:
        await PLUGIN.tail_cleanup(bridge, private)
    finally:
        await bridge.aclose()
    assert got[0].payload == Order(0)  # from the beginning: what was there before
    assert admin.xinfo_groups(topic) == []


def test_a_service_file_names_a_redis_broker() -> None:
    config = parse(
        {
            "brokers": {"cache": {"type": "redis", "url": "redis://app@127.0.0.1:6379/2",
                                  "password_env": "REDIS_PASSWORD", "group": "mirror",
                                  "claim_idle": 5, "initial_position": "earliest"},
                        "copy": {"type": "redis", "url": "redis://127.0.0.1:6380/0"}},
            "topics": [{"pattern": "order.*", "import_from": "cache", "export_to": "copy"}],
        },
        path="bridge.toml", environ={"REDIS_PASSWORD": "s3cret"},
    )
    bridge = config.brokers["cache"].make()
    assert isinstance(bridge, RedisBridge)
    assert (bridge.name, bridge.group) == ("cache", "mirror")
    assert bridge._url == "redis://app:s3cret@127.0.0.1:6379/2"
    assert bridge._ingress._claim_idle == 5.0 and bridge._ingress._earliest
    assert "s3cret" not in repr(bridge)
    with pytest.raises(ConfigurationError, match=r"initial_position"):
        parse({"brokers": {"cache": {"type": "redis", "initial_position": "newest"},
                           "copy": {"type": "redis"}},
               "topics": [{"pattern": "order.*", "import_from": "cache", "export_to": "copy"}]},
              path="bridge.toml", environ={}).brokers["cache"].make()


@pytest.mark.brokers
async def test_a_stream_deleted_while_read_is_read_again_once_it_is_back(
    url: str, admin: Any
) -> None:
    prefix = _prefix()
    topic = f"{prefix}.order"
    got: list[int] = []

    async def until(count: int) -> None:
        with trio.fail_after(30):
            while len(got) < count:  # noqa: ASYNC110 - entries come from another client
                await trio.sleep(0.01)

    async with open_bus(name="in") as bus:
        bus.topic(topic, Order)
        bus.subscribe(topic, lambda env: got.append(env.payload.n))
        bridge = RedisBridge(url, name="in", group="g", block=0.2)
        await bus.attach(bridge, import_=[topic])
        admin.xadd(topic, {"data": b'{"n": 1}'})
        await until(1)
        admin.delete(topic)  # the blocked XREADGROUP answers UNBLOCKED, then NOGROUP
        admin.xadd(topic, {"data": b'{"n": 2}'})
        await until(2)
        with trio.fail_after(30):
            while await bridge.lag() != 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert got == [1, 2]
    assert [g["name"] for g in admin.xinfo_groups(topic)] == [b"g"]
