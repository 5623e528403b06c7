"""Fixtures for the seed-facade tests: clean settings and factory per test.

The memory backend's shared bus belongs to one trio run, so each test starts with an
empty one by construction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bus.events import EventFactory, settings

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
    """Environment-only settings, the factory as shipped."""
    for name in _FACADE_ENV:
        monkeypatch.delenv(name, raising=False)
    registry = dict(EventFactory._adapters)
    filled_by = dict(EventFactory._settings)
    yield
    for name in settings.field_names():
        delattr(settings, name)
    EventFactory._adapters.clear()
    EventFactory._adapters.update(registry)
    EventFactory._settings.clear()
    EventFactory._settings.update(filled_by)
