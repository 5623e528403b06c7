"""``delete_topic`` on the real brokers removes what the facade created for the topic.

The topic (stream), and where the broker has them the group queues (RabbitMQ's
``trio-bus.<group>.<topic>``) and subscriptions (Pub/Sub's ``<topic>~<group>``); this
adapter's live consumers of the topic are stopped first, so a Kafka consumer cannot make
the broker create the topic again. Each test uses its own topic prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bus import ConfigurationError
from bus.events import BaseEvent, BridgeAdapter

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(120)]


class User(msgspec.Struct):
    id: str


def options(brokers: Any, backend: str, tmp_path: Path) -> dict[str, Any]:
    if backend == "kafka":
        return {"bootstrap_servers": brokers.env("KAFKA_SERVER")}
    if backend == "rabbitmq":
        return {"connection_url": brokers.env("RABBITMQ_URL")}
    if backend == "kinesis":
        return {
            "region_name": brokers.env("AWS_REGION"),
            "endpoint_url": brokers.env("KINESIS_ENDPOINT_URL"),
            "aws_access_key_id": brokers.env("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": brokers.env("AWS_SECRET_ACCESS_KEY"),
            "checkpoints": str(tmp_path / "checkpoints.sqlite"),
        }
    return {"project_id": brokers.env("GCP_PROJECT_ID"),
            "emulator_host": brokers.env("PUBSUB_EMULATOR_HOST")}


@pytest.mark.parametrize("backend", ["kafka", "rabbitmq", "kinesis", "pubsub"])
async def test_delete_topic_removes_what_the_facade_made_while_consumers_live(
    backend: str, brokers: Any, unique: str, tmp_path: Path
) -> None:
    brokers.require(backend)
    prefix = unique.replace("trio-bus-smoke-", "gone")
    events = BaseEvent(model=User, event_type=backend, topic_prefix=prefix,
                       **options(brokers, backend, tmp_path))
    adapter = events.event_adapter
    assert isinstance(adapter, BridgeAdapter)
    got: list[User] = []
    async with events:
        await events.create_topic("doomed")
        # a second group's queue/subscription, made by a pull that ends (nothing yet)
        assert [u async for u in events.pull("doomed", group="audit")] == []
        await events.push("doomed", User("1"))
        await events.pull("doomed", callback=got.append)  # a consumer that lives on
        stream = events.pull("doomed", group="audit", follow=True)
        with trio.fail_after(60):
            assert await anext(stream) == User("1")  # one more, in hand while deleting

        await events.delete_topic("doomed")

        topic = events.topic("doomed")
        # this adapter's consumers of the topic are stopped: nothing of ours polls it
        assert not adapter._callback_topics
        assert all(c.topic != topic or c._runner is None for c in adapter._consumers)
        with trio.fail_after(60):  # a consumer that ended is never restarted
            assert [u async for u in stream] == []
        assert topic not in await events.list_topics()
        _, bridge = await adapter._producer()
        if backend == "rabbitmq":
            for group in ("events", "audit"):  # passive declares of the deleted queues
                with pytest.raises(ConfigurationError, match="has no queue"):
                    await bridge.queue_counts(f"trio-bus.{group}.{topic}")  # type: ignore[attr-defined]
        if backend == "pubsub":
            client = bridge._client  # type: ignore[attr-defined]
            subscriptions = await bridge._call(client.list_subscriptions)  # type: ignore[attr-defined]
            assert not [s for s in subscriptions if s.startswith(f"{topic}~")]
        # a new topic of the same prefix still works: the adapter goes on
        await events.push("after", User("2"))
        assert topic not in await events.list_topics()
