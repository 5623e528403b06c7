"""Fixtures for the seed-facade tests: a clean memory broker and settings per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bus._facade import EventFactory, MemoryBroker, settings

_FACADE_ENV = [
    "EVENT_TYPE",
    "KAFKA_SERVER",
    "RABBITMQ_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "KINESIS_ENDPOINT_URL",
    "GCP_PROJECT_ID",
    "GCP_CREDENTIALS_PATH",
    "PUBSUB_EMULATOR_HOST",
    "REDIS_URL",
]


@pytest.fixture(autouse=True)
def clean_facade(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Empty shared brokers, environment-only settings, the factory as shipped."""
    for name in _FACADE_ENV:
        monkeypatch.delenv(name, raising=False)
    registry = dict(EventFactory._adapters)
    MemoryBroker.reset_all()
    yield
    MemoryBroker.reset_all()
    for name in settings.field_names():
        delattr(settings, name)
    EventFactory._adapters.clear()
    EventFactory._adapters.update(registry)
