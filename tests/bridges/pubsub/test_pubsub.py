"""The Pub/Sub bridge against Google's emulator on loopback (``make brokers-up``).

Each test uses topics under a prefix of its own and deletes them (and their
subscriptions) afterwards. What the bridge wrote is read back with the generated
google-cloud-pubsub client (unary Pull) and with the official ``cloudevents`` SDK;
foreign messages are written with the same client.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import trio

from bridges.pubsub import FEATURES, PubSubBridge
from bridges.pubsub._names import subscription_id, topic_from_id, topic_id
from bus import BackendUnavailableError, ConfigurationError, Envelope, open_bus
from bus.abc import H_ERROR, H_ORIGINAL_TOPIC

pytestmark = pytest.mark.brokers

HOST = os.environ.get("PUBSUB_EMULATOR_HOST") or "127.0.0.1:8085"
PROJECT = os.environ.get("GCP_PROJECT_ID") or "trio-bus-test"
TIMEOUT = 30


class Order(msgspec.Struct):
    id: str
    amount: int


class Raw:
    """The generated synchronous clients, as a foreign producer or consumer uses them."""

    def __init__(self, prefix: str) -> None:
        import grpc
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber import SubscriberClient
        from google.pubsub_v1.services.subscriber.transports.grpc import (
            SubscriberGrpcTransport,
        )

        self.prefix = prefix
        self.pub = PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(HOST))
        )
        self.sub = SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(HOST))
        )

    def topic(self, name: str) -> str:
        return f"projects/{PROJECT}/topics/{self.prefix}{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{PROJECT}/subscriptions/{self.prefix}{name}"

    async def subscribe(self, topic: str, name: str = "~raw") -> str:
        """A subscription of our own to bus *topic* (made before anything is published)."""
        path = self.subscription(topic + name)

        def make() -> None:
            from google.api_core import exceptions

            try:
                self.pub.create_topic(name=self.topic(topic))
            except exceptions.AlreadyExists:
                pass
            self.sub.create_subscription(
                request={"name": path, "topic": self.topic(topic), "enable_message_ordering": True}
            )

        await trio.to_thread.run_sync(make)
        return path

    async def pull(self, path: str, n: int, *, ack: bool = True) -> list[Any]:
        """At least *n* messages of subscription *path* (acknowledged unless ack=False)."""
        got: list[Any] = []
        with trio.fail_after(TIMEOUT):
            while len(got) < n:
                response = await trio.to_thread.run_sync(
                    lambda: self.sub.pull(
                        request={"subscription": path, "max_messages": 100}, timeout=8
                    )
                )
                got += response.received_messages
        if ack:
            await trio.to_thread.run_sync(
                lambda: self.sub.acknowledge(subscription=path, ack_ids=[m.ack_id for m in got])
            )
        return got

    async def pull_none(self, path: str) -> list[Any]:
        """What one pull of *path* returns (the emulator waits ~2 s when nothing is there)."""
        response = await trio.to_thread.run_sync(
            lambda: self.sub.pull(request={"subscription": path, "max_messages": 100}, timeout=8)
        )
        return list(response.received_messages)

    async def publish(self, topic: str, data: bytes, **fields: Any) -> str:
        from google.pubsub_v1.types import PubsubMessage

        def send() -> str:
            response = self.pub.publish(
                topic=self.topic(topic), messages=[PubsubMessage(data=data, **fields)]
            )
            return str(response.message_ids[0])

        return await trio.to_thread.run_sync(send)

    def cleanup(self) -> None:
        project = f"projects/{PROJECT}"
        for s in self.sub.list_subscriptions(project=project):
            if s.name.rsplit("/", 1)[-1].startswith(self.prefix):
                self.sub.delete_subscription(subscription=s.name)
        for t in self.pub.list_topics(project=project):
            if t.name.rsplit("/", 1)[-1].startswith(self.prefix):
                self.pub.delete_topic(topic=t.name)
        self.pub.transport.close()
        self.sub.transport.close()


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    r = Raw(f"t{uuid.uuid4().hex[:10]}.")
    try:
        yield r
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(r.cleanup)


def bridge(raw: Raw, name: str, **options: Any) -> PubSubBridge:
    return PubSubBridge(PROJECT, name=name, emulator_host=HOST, topic_prefix=raw.prefix, **options)


async def until(check: Callable[[], Any], seconds: float = TIMEOUT) -> None:
    """Poll *check* (state another thread or the emulator changes) for *seconds* at most."""
    with trio.fail_after(seconds):
        while not await check() if _is_async(check) else not check():  # noqa: ASYNC110
            await trio.sleep(0.05)


def _is_async(fn: Callable[[], Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def collector(n: int) -> tuple[list[Envelope[Any]], trio.Event, Callable[[Envelope[Any]], None]]:
    got: list[Envelope[Any]] = []
    enough = trio.Event()

    def handle(env: Envelope[Any]) -> None:
        got.append(env)
        if len(got) >= n:
            enough.set()

    return got, enough, handle


async def test_round_trip_bus_to_pubsub_to_bus(raw: Raw) -> None:
    got, enough, handle = collector(6)
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="b") as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle)
            inbound = bridge(raw, "in")
            await b.attach(inbound, import_=["order.created"])
            async with open_bus(name="a") as a:
                a.topic("order.created", Order)
                await a.attach(bridge(raw, "out"), export=["order.*"])
                for i in range(6):
                    await a.publish(
                        "order.created", Order(f"o{i}", i), key=f"c{i % 2}",
                        headers={"traceparent": f"00-{i}"},
                    )
            await enough.wait()
            await until(lambda: inbound.acked == 6)  # acks go out in batches
    assert sorted(e.payload.amount for e in got) == list(range(6))
    for e in got:
        assert e.key == f"c{e.payload.amount % 2}"
        assert e.headers["traceparent"] == f"00-{e.payload.amount}"
        assert e.topic == "order.created" and e.source == "a" and e.attempt == 1
        assert e.headers["x-bus-origin"] == "in"
    assert len({e.id for e in got}) == 6
    assert inbound.received == 6 and inbound.redelivered == 0


async def test_cloudevents_attributes_read_by_the_sdk(raw: Raw) -> None:
    # cloudevents 2.2 has no Pub/Sub binding; the Pub/Sub binding's binary mode has the
    # HTTP binding's shape (ce-<attr>, content-type), so its reader checks ours.
    from cloudevents.core.bindings.http import HTTPMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat

    path = await raw.subscribe("order.created")
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="shop") as a:
            a.topic("order.created", Order)
            await a.attach(bridge(raw, "out"), export=["order.*"])
            env = await a.publish(
                "order.created", Order("o1", 42), key="c1", headers={"traceparent": "00-x"}
            )
        [received] = await raw.pull(path, 1)
    msg = received.message
    assert msg.ordering_key == "c1"
    attributes = dict(msg.attributes)
    assert attributes["content-type"] == "application/json"
    assert attributes["traceparent"] == "00-x"
    event = from_binary(HTTPMessage(attributes, msg.data), JSONFormat())
    attrs = event.get_attributes()
    assert attrs["id"] == env.id
    assert attrs["type"] == "order.created"
    assert attrs["source"] == "shop"
    assert attrs["specversion"] == "1.0"
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["time"].timestamp() == pytest.approx(env.time, abs=1e-3)
    assert event.get_data() == {"id": "o1", "amount": 42}


async def test_foreign_message_without_cloudevents_attributes_imports(raw: Raw) -> None:
    got, enough, handle = collector(2)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic("payment.done", Order)
            b.subscribe("payment.#", handle)
            await b.attach(bridge(raw, "in"), import_=["payment.done"])
            first = await raw.publish("payment.done", b'{"id":"p1","amount":7}')
            await raw.publish(
                "payment.done", b'{"id":"p2","amount":8}', ordering_key="acct-9",
                attributes={"tenant": "t1"},
            )
            await enough.wait()
    by_id = {e.payload.id: e for e in got}
    assert by_id["p1"].id == first  # Pub/Sub's message id
    assert by_id["p1"].key is None and by_id["p1"].time > 0  # publish_time
    assert by_id["p2"].key == "acct-9"
    assert by_id["p2"].headers["tenant"] == "t1"
    assert all(e.source == "in" for e in got)


async def test_wildcard_import_finds_topics_including_ones_made_later(raw: Raw) -> None:
    got, _, handle = collector(2)
    async with open_bus() as b:
        b.topic("shop.order.created", Order)
        b.topic("shop.stock.low", Order)
        b.subscribe("shop.#", handle)
        admin = bridge(raw, "admin")
        await admin.open()
        try:
            await admin.create_topic("shop.order.created")
            inbound = bridge(raw, "in", relist_interval=0.5)
            await b.attach(inbound, import_=["shop.#"])
            await raw.publish("shop.order.created", b'{"id":"o","amount":1}')
            await admin.create_topic("shop.stock.low")
            sid = subscription_id(topic_id("shop.stock.low", raw.prefix), "in")

            async def subscribed() -> bool:
                return sid in await admin.list_subscriptions("shop.stock.low")

            await until(subscribed)
            await raw.publish("shop.stock.low", b'{"id":"s","amount":2}')
            await until(lambda: len(got) >= 2)
            assert await admin.list_topics() == ["shop.order.created", "shop.stock.low"]
        finally:
            await admin.aclose()
    assert sorted(e.topic for e in got) == ["shop.order.created", "shop.stock.low"]


async def test_acked_only_when_done_and_redelivered_otherwise(raw: Raw) -> None:
    """A message whose handler never finished is not acknowledged: after the bus exits
    it comes back (after the ack deadline) to the next consumer of the group, which
    acknowledges it once done."""
    path = await raw.subscribe("job.run", "~watch")
    started = trio.Event()
    async with open_bus(name="first", drain_timeout=0.5) as b:
        b.topic("job.run", Order)

        async def stuck(env: Envelope[Order]) -> None:
            started.set()
            await trio.sleep_forever()

        b.subscribe("job.run", stuck)
        first = bridge(raw, "worker")
        await b.attach(first, import_=["job.run"])
        await raw.publish("job.run", b'{"id":"j1","amount":1}')
        with trio.fail_after(TIMEOUT):
            await started.wait()
    assert first.received == 1 and first.acked == 0
    await raw.pull(path, 1)  # the watcher's own copy is unaffected
    got, enough, handle = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="second") as b:
            b.topic("job.run", Order)
            b.subscribe("job.run", handle)
            second = bridge(raw, "worker")  # same group: the same subscription
            await b.attach(second, import_=["job.run"])
            await enough.wait()
            await until(lambda: second.acked >= 1, 5)
    assert got[0].payload == Order("j1", 1)
    worker_sub = f"projects/{PROJECT}/subscriptions/" + subscription_id(
        topic_id("job.run", raw.prefix), "worker"
    )
    assert await raw.pull_none(worker_sub) == []  # acknowledged: nothing comes back


@pytest.mark.timeout(60)
async def test_lease_extended_while_in_work_and_expiry_counted_as_redelivery(raw: Raw) -> None:
    """Two groups hold the same message for longer than the 10 s ack deadline: the one
    that extends leases sees it once; the one that gives leases up at once
    (max_lease_duration=0) gets it again, counted as a redelivery with attempt 2."""
    await raw.subscribe("slow.job")  # make the topic
    attempts: dict[str, list[int]] = {"kept": [], "expired": []}
    redelivered = trio.Event()

    async def on_kept(env: Envelope[Order]) -> None:
        attempts["kept"].append(env.attempt)
        await trio.sleep(13)

    async def on_expired(env: Envelope[Order]) -> None:
        attempts["expired"].append(env.attempt)
        if env.attempt > 1:
            redelivered.set()
        else:
            await redelivered.wait()

    kept = bridge(raw, "kept")
    expired = bridge(raw, "expired", max_lease_duration=0)
    async with open_bus(name="k") as bk, open_bus(name="e") as be:
        bk.topic("slow.job", Order)
        be.topic("slow.job", Order)
        bk.subscribe("slow.job", on_kept)
        be.subscribe("slow.job", on_expired, concurrency=2)
        await bk.attach(kept, import_=["slow.job"])
        await be.attach(expired, import_=["slow.job"])
        await raw.publish("slow.job", b'{"id":"s1","amount":1}')
        await until(lambda: len(attempts["expired"]) >= 2 and kept.acked >= 1, 40)
    assert attempts["kept"] == [1] and kept.redelivered == 0 and kept.extended >= 1
    assert attempts["expired"][:2] == [1, 2] and expired.redelivered >= 1


async def test_records_over_the_limits_are_dead_lettered(raw: Raw) -> None:
    path = await raw.subscribe("blob.put")
    async with open_bus(name="a") as a:
        a.topic("blob.put", Order)
        await a.attach(bridge(raw, "out", max_message_bytes=4000), export=["blob.#"])
        await a.publish("blob.put", Order("small", 1))
        await a.publish("blob.put", Order("x" * 5000, 2))  # with attributes: over 4000 B
        await a.publish("blob.put", Order("tagged", 3), headers={"note": "y" * 2000})
        await a.publish("blob.put", Order("goog", 4), headers={"googflag": "1"})
        await a.publish("blob.put", Order("small2", 5))
    letters = a.retained(a.dead_letter_topic)
    reasons = sorted(e.headers[H_ERROR] for e in letters)
    assert len(letters) == 3, reasons
    assert all(e.headers[H_ORIGINAL_TOPIC] == "blob.put" for e in letters)
    assert any("exceeds Pub/Sub's limit of 4000 bytes" in r for r in reasons)
    assert any("'note'" in r and "1024" in r for r in reasons)
    assert any("'goog'" in r for r in reasons)
    got = await raw.pull(path, 2)
    assert sorted(msgspec.json.decode(m.message.data, type=Order).id for m in got) == [
        "small", "small2"
    ]


async def test_missing_topic_is_created_or_rejected(raw: Raw) -> None:
    async with open_bus(name="a") as a:
        a.topic("new.topic", Order)
        a.topic("other.topic", Order)
        await a.attach(bridge(raw, "out"), export=["new.*"])
        await a.attach(bridge(raw, "strict", create_topics=False), export=["other.*"])
        await a.publish("new.topic", Order("n", 1), confirm=True)
        await a.publish("other.topic", Order("o", 2))
    [letter] = a.retained(a.dead_letter_topic)
    assert "does not exist" in letter.headers[H_ERROR]
    admin = bridge(raw, "admin")
    await admin.open()
    try:
        assert await admin.list_topics() == ["new.topic"]
        await admin.delete_topic("new.topic")
        assert await admin.list_topics() == []
    finally:
        await admin.aclose()


async def test_admin_health_and_settings(raw: Raw) -> None:
    b = bridge(raw, "admin", group="billing")
    assert await b.health() is False  # not open
    await b.open()
    try:
        assert await b.health() is True
        await b.create_topic("acct.opened", group=True)
        sid = subscription_id(topic_id("acct.opened", raw.prefix), "billing")
        assert await b.list_subscriptions("acct.opened") == [sid]
        await b.delete_subscription("acct.opened")
        assert await b.list_subscriptions("acct.opened") == []
        with pytest.raises(ConfigurationError, match="unknown Pub/Sub topic option"):
            await b.create_topic("acct.closed", partitions=3)
    finally:
        await b.aclose()
    assert "billing" in repr(b) and "127.0.0.1" in repr(b)
    secret = PubSubBridge(PROJECT, credentials_path="/secret/sa.json")
    assert "sa.json" not in repr(secret) and "sa.json" not in repr(secret._endpoint)
    assert FEATURES.max_message_bytes == 10_000_000 and FEATURES.restartable is False


async def test_unreachable_emulator_is_one_clear_error() -> None:
    async with open_bus() as b:
        start = trio.current_time()
        with pytest.raises(BackendUnavailableError, match="'nowhere'"):
            await b.attach(
                PubSubBridge(PROJECT, name="nowhere", emulator_host="127.0.0.1:1", timeout=2),
                export=["x.y.z"], connect_timeout=10,
            )
        # the bridge's own bounded probe answered, not the bus's connect_timeout
        assert trio.current_time() - start < 5


def test_names() -> None:
    assert topic_id("order.created") == "order.created"
    assert topic_id("ab", "bus.") == "bus.ab"
    assert topic_from_id("bus.order.created", "bus.") == "order.created"
    assert topic_from_id("other.thing", "bus.") is None
    assert topic_from_id("has~tilde") is None
    for bad in ("ab", "1st.order", "goog.x"):
        with pytest.raises(ConfigurationError, match="topic_prefix"):
            topic_id(bad)
    assert subscription_id("order.created", "my group!") == "order.created~my-group-"
    long = subscription_id("t" * 250, "g" * 50)
    assert len(long) == 255 and long != subscription_id("t" * 250, "g" * 51)
