"""Broker URLs (bridges.from_url): each form gives its bridge, configured from the URL;
a bad one is one ConfigurationError naming the problem and the accepted forms; every
scheme but memory:// is found in the broker registry."""

from __future__ import annotations

import pytest

import bridges
from bridges import _urls
from bridges._urls import forms, from_url, memory_broker
from bridges.kafka import KafkaBridge
from bridges.kinesis import KinesisBridge
from bridges.pubsub import PubSubBridge
from bridges.rabbitmq import RabbitMQBridge
from bridges.redis import RedisBridge
from bus import ConfigurationError
from bus.abc import Bridge, BrokerPlugin
from bus.testing import LOOPBACK_FEATURES, LoopbackBridge, LoopbackBroker


def test_memory_is_an_in_process_broker_shared_by_name() -> None:
    a, b, other = from_url("memory://"), from_url("memory://"), from_url("memory://other")
    assert isinstance(a, LoopbackBridge) and isinstance(b, LoopbackBridge)
    assert a.broker is b.broker is memory_broker("")
    assert isinstance(other, LoopbackBridge) and other.broker is not a.broker
    assert a.name == "memory"


def test_kafka_servers_with_default_port() -> None:
    bridge = from_url("kafka://127.0.0.1:9093,broker2", name="k", group_id="g")
    assert isinstance(bridge, KafkaBridge)
    assert bridge.bootstrap_servers == "127.0.0.1:9093,broker2:9092"
    assert (bridge.name, bridge.group_id) == ("k", "g")


def test_amqp_url_is_the_clients_own_and_exchange_from_the_query() -> None:
    bridge = from_url("amqps://u:s3cret@rabbit.example:5671/shop?exchange=orders")
    assert isinstance(bridge, RabbitMQBridge)
    assert bridge.exchange == "orders"
    assert bridge._url == "amqps://u:s3cret@rabbit.example:5671/shop"
    assert "s3cret" not in repr(bridge)


def test_amqp_queue_in_the_query_reads_that_queue_as_it_is() -> None:
    bridge = from_url("amqp://u:p@127.0.0.1:5672/?queue=orders.dead_letter")
    assert isinstance(bridge, RabbitMQBridge)
    assert bridge.queue == "orders.dead_letter"
    assert bridge._existing_queue and bridge._url == "amqp://u:p@127.0.0.1:5672/"
    with pytest.raises(ConfigurationError, match="queue= is empty"):
        from_url("amqp://u:p@127.0.0.1:5672/?queue=")


def test_kinesis_region_and_endpoint() -> None:
    bridge = from_url("kinesis://eu-west-1?endpoint=http://127.0.0.1:4568")
    assert isinstance(bridge, KinesisBridge)
    assert bridge.region == "eu-west-1"
    assert bridge.name == "kinesis"


def test_pubsub_project_and_emulator() -> None:
    bridge = from_url("pubsub://my-project?emulator=127.0.0.1:8085")
    assert isinstance(bridge, PubSubBridge)
    assert bridge._endpoint.project == "my-project"
    assert bridge._endpoint.emulator_host == "127.0.0.1:8085"


def test_redis_url_is_redis_pys_own() -> None:
    bridge = from_url("redis://:s3cret@127.0.0.1:6379/2", group="g")
    assert isinstance(bridge, RedisBridge)
    assert bridge._url == "redis://:s3cret@127.0.0.1:6379/2"
    assert (bridge.name, bridge.group) == ("redis", "g")
    assert "s3cret" not in repr(bridge)


def test_from_url_is_exported_by_the_bridges_package() -> None:
    assert bridges.from_url is from_url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:9092", "it has no scheme"),
        ("nats://127.0.0.1", "unknown scheme 'nats'"),
        ("kafka://", "no bootstrap server"),
        ("kafka://host:99999", "port '99999' is not a number from 1 to 65535"),
        ("kafka://u:pw@host:9092", "credentials go in options"),
        ("kafka://host:9092/topic", "unexpected path '/topic'"),
        ("kafka://host:9092?acks=all", "unknown parameter(s) acks (allowed: none)"),
        ("amqp:///vhost", "no host"),
        ("amqp://guest:pw@host:port/", "the port is not a number"),
        ("kinesis://eu-west-1?endpoint=127.0.0.1:4568", "must be an http:// or https:// URL"),
        ("pubsub://proj?emulator=host:x", "port 'x' is not a number"),
        ("memory://a:b@c", "memory:// takes at most a name"),
        ("redis://", "no host"),
        ("redis://host:6379/cache", "the path is the database number"),
        ("redis://host:6379/0?group=g", "unknown parameter(s) group"),
    ],
)
def test_bad_urls_name_the_problem_and_the_forms(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url(url)
    message = str(caught.value)
    assert problem in message
    assert all(form in message for form in forms())


def test_the_password_of_a_bad_url_is_masked() -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url("amqp://guest:hunter2@host:5672/?queues=q")
    assert "hunter2" not in str(caught.value)
    assert "'amqp://guest:***@host:5672/?queues=q': unknown parameter(s) queues" in str(
        caught.value
    )
    with pytest.raises(ConfigurationError) as caught:
        from_url("amqp://guest:hunter2@host:port/")  # unparseable: the scheme only
    assert "hunter2" not in str(caught.value) and "'amqp://***'" in str(caught.value)


def test_the_forms_are_memory_and_every_registered_brokers() -> None:
    assert forms() == (
        "memory://",
        "kafka://host:port[,host:port]",
        "kinesis://region?endpoint=http://host:port",
        "pubsub://project?emulator=host:port",
        "amqp://user:password@host:port/vhost (or amqps://)",
        "redis://[user:password@]host:port/db (or rediss://)",
    )


def test_a_scheme_is_looked_up_in_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, str | None]] = []

    def fake_from_url(url: str, *, name: str | None = None, **options: object) -> Bridge:
        made.append((url, name))
        return LoopbackBridge(LoopbackBroker(), name or "fake")

    fake = BrokerPlugin(
        name="fake", title="Fake", schemes=("fake", "fakes"), url_forms=("fake://thing",),
        from_url=fake_from_url, bridge=LoopbackBridge, features=LOOPBACK_FEATURES,
    )
    monkeypatch.setattr(_urls, "brokers", lambda: {"fake": fake})
    bridge = from_url("fakes://thing", name="f")
    assert isinstance(bridge, LoopbackBridge) and made == [("fakes://thing", "f")]
    with pytest.raises(ConfigurationError, match=r"unknown scheme 'kafka'.*fake://thing"):
        from_url("kafka://127.0.0.1:9092")


async def test_a_kept_topic_is_the_brokers_own_where_it_keeps_per_reader() -> None:
    from bridges import create_kept_topic, delete_kept_topic

    calls: list[tuple[str, ...]] = []

    class Log:  # keeps a log anyway: the topic is created
        async def create_topic(self, name: str) -> None:
            calls.append(("create_topic", name))

        async def delete_topic(self, name: str) -> None:
            calls.append(("delete_topic", name))

    class PerReader(Log):  # keeps messages per reader: its own way
        async def create_kept_topic(self, name: str, group: str) -> None:
            calls.append(("create_kept_topic", name, group))

        async def delete_kept_topic(self, name: str, group: str) -> None:
            calls.append(("delete_kept_topic", name, group))

    for bridge in (Log(), PerReader()):
        await create_kept_topic(bridge, "t")  # type: ignore[arg-type]
        await delete_kept_topic(bridge, "t", "g")  # type: ignore[arg-type]
    assert calls == [
        ("create_topic", "t"), ("delete_topic", "t"),
        ("create_kept_topic", "t", "bus-cli"), ("delete_kept_topic", "t", "g"),
    ]
