"""Pub/Sub (Google's emulator) through google-cloud-pubsub: ordering key and attributes."""

from __future__ import annotations

import time

import pytest
from google.cloud import pubsub_v1

pytestmark = pytest.mark.brokers


def test_pubsub_round_trip(
    brokers,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    brokers.require("pubsub")
    project = brokers.env("GCP_PROJECT_ID")
    # The client library reads the emulator's address from the environment only.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", brokers.env("PUBSUB_EMULATOR_HOST"))
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, unique)
    subscription = subscriber.subscription_path(project, unique)
    publisher.create_topic(name=topic)
    try:
        subscriber.create_subscription(
            request={"name": subscription, "topic": topic, "enable_message_ordering": True}
        )
        try:
            future = publisher.publish(
                topic, b"\x00payload\xff", ordering_key="order-42", h_trace="abc"
            )
            message_id = future.result(timeout=10)
            received = []
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                response = subscriber.pull(
                    request={"subscription": subscription, "max_messages": 10}, timeout=5
                )
                received = list(response.received_messages)
            assert len(received) == 1
            message = received[0].message
            assert message.data == b"\x00payload\xff"
            assert message.ordering_key == "order-42"
            assert dict(message.attributes) == {"h_trace": "abc"}
            assert message.message_id == message_id
            subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": [received[0].ack_id]}
            )
        finally:
            subscriber.delete_subscription(request={"subscription": subscription})
    finally:
        publisher.delete_topic(request={"topic": topic})
        publisher.stop()
        subscriber.close()
