"""The broker backends' option mapping: seed names → their bridge, settings, errors.

No broker is contacted: adapters build their bridges (which connect only when opened).
"""

from __future__ import annotations

import pytest

from bridges.kafka import KafkaAdapter, KafkaBridge
from bridges.kinesis import KinesisAdapter, KinesisBridge
from bridges.pubsub import PubSubAdapter, PubSubBridge
from bridges.rabbitmq import RabbitMQAdapter, RabbitMQBridge
from bus import ConfigurationError
from bus.events import BridgeAdapter, EventFactory, Settings


def test_kafka_seed_options_reach_the_producer() -> None:
    adapter = KafkaAdapter(
        "k1:9092,k2:9092", acks=1, retries=3, batch_size=16384, compression_type="gzip"
    )
    bridge = adapter.make_bridge(name="p", group=None, topic=None, from_beginning=False)
    assert isinstance(bridge, KafkaBridge)
    producer = bridge._producer_options
    assert (producer["acks"], producer["max_batch_size"]) == (1, 16384)
    assert producer["compression_type"] == "gzip"
    assert bridge.retries == 3
    consumer = adapter.make_bridge(name="c", group="g", topic="t", from_beginning=True)
    # one Kafka group per facade group and topic (docs/facade.md, "Kafka groups")
    assert consumer._consumer_options["group_id"] == "g~t"  # type: ignore[attr-defined]
    assert consumer._consumer_options["auto_offset_reset"] == "earliest"  # type: ignore[attr-defined]
    live = adapter.make_bridge(name="c", group="g", topic="t", from_beginning=False)
    assert live._consumer_options["auto_offset_reset"] == "latest"  # type: ignore[attr-defined]
    # a competing member's rebalance waits for the members' next heartbeat: 0.5 s, not 3 s
    assert live._consumer_options["heartbeat_interval_ms"] == 500  # type: ignore[attr-defined]
    own = KafkaAdapter(consumer_options={"heartbeat_interval_ms": 3000, "fetch_max_bytes": 9})
    mine = own.make_bridge(name="c", group="g", topic="t", from_beginning=False)
    assert mine._consumer_options["heartbeat_interval_ms"] == 3000  # type: ignore[attr-defined]
    assert mine._consumer_options["fetch_max_bytes"] == 9  # type: ignore[attr-defined]


def test_rabbitmq_seed_options_and_one_queue_per_group_and_topic() -> None:
    adapter = RabbitMQAdapter(
        "amqp://u:p@127.0.0.1:5672/", publisher_confirms=False, delivery_mode=1
    )
    bridge = adapter.make_bridge(name="c", group="g", topic="user.created", from_beginning=True)
    assert isinstance(bridge, RabbitMQBridge)
    assert bridge.queue == "trio-bus.g.user.created"
    assert bridge._client._confirms is False and bridge._client._delivery_mode == 1
    assert not bridge.features.persistent
    with pytest.raises(ConfigurationError, match="delivery_mode"):
        RabbitMQAdapter(delivery_mode=3)


def test_kinesis_seed_options_and_start_position() -> None:
    adapter = KinesisAdapter(
        "eu-west-1", aws_access_key_id="id", aws_secret_access_key="secret",
        endpoint_url="http://127.0.0.1:4568", shard_count=2,
    )
    assert adapter.region_name == "eu-west-1"
    bridge = adapter.make_bridge(name="c", group="g", topic="t", from_beginning=True)
    assert isinstance(bridge, KinesisBridge)
    assert (bridge.region, bridge.shard_count, bridge.group) == ("eu-west-1", 2, "g")
    assert bridge.initial_position == "TRIM_HORIZON"
    later = adapter.make_bridge(name="c", group="g", topic="t", from_beginning=False)
    assert later.initial_position == "LATEST"  # type: ignore[attr-defined]


def test_pubsub_seed_options() -> None:
    adapter = PubSubAdapter("my-project", emulator_host="127.0.0.1:8085")
    assert adapter.project_id == "my-project"
    bridge = adapter.make_bridge(name="c", group="g", topic="t", from_beginning=True)
    assert isinstance(bridge, PubSubBridge) and bridge.group == "g"


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (KafkaAdapter, {"group_id": "x"}),
        (KafkaAdapter, {"no_such_option": 1}),
        (RabbitMQAdapter, {"queue": "q"}),
        (KinesisAdapter, {"initial_position": "LATEST"}),
        (PubSubAdapter, {"project": "p"}),
        (KafkaAdapter, {"group": ""}),
    ],
)
def test_options_the_adapter_owns_or_the_bridge_lacks_are_refused(
    cls: type[BridgeAdapter], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError):
        cls(**kwargs)


def test_settings_are_the_defaults_and_arguments_override_them() -> None:
    EventFactory.register_adapter("kafka", KafkaAdapter)
    EventFactory.register_adapter("kinesis", KinesisAdapter)
    config = Settings(environ={"KAFKA_SERVER": "env:9092", "AWS_REGION": "us-west-2"})
    from_env = EventFactory.create_adapter("kafka", settings=config)
    assert isinstance(from_env, KafkaAdapter) and from_env.bootstrap_servers == "env:9092"
    override = EventFactory.create_adapter("kafka", settings=config, bootstrap_servers="a:1")
    assert isinstance(override, KafkaAdapter) and override.bootstrap_servers == "a:1"
    partial = EventFactory.create_adapter("kinesis", settings=config)
    assert isinstance(partial, KinesisAdapter) and partial.region_name == "us-west-2"
    mixed = EventFactory.create_adapter("kinesis", settings=config, region_name="eu-west-1")
    assert isinstance(mixed, KinesisAdapter) and mixed.region_name == "eu-west-1"


@pytest.mark.parametrize("make", [
    lambda: KafkaAdapter("127.0.0.1:9"),
    lambda: RabbitMQAdapter("amqp://u:p@127.0.0.1:9/"),
    lambda: KinesisAdapter("eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"),
    lambda: PubSubAdapter("proj-x", emulator_host="127.0.0.1:9"),
])
def test_every_broker_consume_takes_the_memory_options_or_says_why_not(make: object) -> None:
    adapter = make()  # type: ignore[operator]
    assert isinstance(adapter, BridgeAdapter)
    for options in ({}, {"follow": True}, {"follow": False, "group": "g"},
                    {"from_beginning": False}):
        adapter.consume("t", **options)  # accepted: nothing is contacted yet
    with pytest.raises(ConfigurationError, match="offset= is the memory backend's"):
        adapter.consume("t", offset=3)
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) \['fllow'\]"):
        adapter.consume("t", fllow=True)
    with pytest.raises(ConfigurationError, match="end_idle must be > 0"):
        type(adapter)(end_idle=0)  # type: ignore[call-arg]
