"""Settings: environment, programmatic assignment, per-call objects, precedence."""

from __future__ import annotations

import pytest

from bridges import redis as redis_streams
from bus.events import EventFactory, InMemoryAdapter, Settings, settings


def test_defaults_without_environment() -> None:
    config = Settings(environ={})
    assert config.event_type == "memory"
    assert config.kafka_server is None
    assert all(v is None for k, v in config.as_dict().items() if k != "event_type")


def test_environment_is_read_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Settings()
    monkeypatch.setenv("EVENT_TYPE", "kafka")
    monkeypatch.setenv("KAFKA_SERVER", "broker1:9092,broker2:9092")
    assert config.event_type == "kafka"
    assert config.kafka_server == "broker1:9092,broker2:9092"


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_TYPE", "")
    assert Settings().event_type == "memory"


def test_assignment_beats_environment_and_del_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_URL", "amqp://env:5672")
    settings.rabbitmq_url = "amqp://prod-rabbitmq:5672"
    assert settings.rabbitmq_url == "amqp://prod-rabbitmq:5672"
    del settings.rabbitmq_url
    assert settings.rabbitmq_url == "amqp://env:5672"


def test_unknown_setting_and_bad_value() -> None:
    with pytest.raises(TypeError, match="unknown setting 'kafka_servers'"):
        Settings(kafka_servers="x")
    with pytest.raises(TypeError, match="must be a str"):
        settings.aws_region = 42  # type: ignore[assignment]


def test_replace_copies_assignments() -> None:
    base = Settings(environ={"AWS_REGION": "us-east-1"}, gcp_project_id="p")
    copy = base.replace(aws_region="eu-west-1")
    assert (copy.aws_region, copy.gcp_project_id) == ("eu-west-1", "p")
    assert base.aws_region == "us-east-1"


def test_adapter_kwargs_mapping() -> None:
    config = Settings(
        environ={
            "KAFKA_SERVER": "k:9092",
            "RABBITMQ_URL": "amqp://r",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "KINESIS_ENDPOINT_URL": "http://localhost:4567",
            "GCP_PROJECT_ID": "proj",
            "GCP_CREDENTIALS_PATH": "/sa.json",
            "PUBSUB_EMULATOR_HOST": "localhost:8085",
            "REDIS_URL": "redis://localhost",
        }
    )
    assert config.adapter_kwargs("kafka") == {"bootstrap_servers": "k:9092"}
    assert config.adapter_kwargs("rabbitmq") == {"connection_url": "amqp://r"}
    assert config.adapter_kwargs("kinesis") == {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIA",
        "aws_secret_access_key": "s3cr3t",
        "endpoint_url": "http://localhost:4567",
    }
    assert config.adapter_kwargs("pubsub") == {
        "project_id": "proj",
        "credentials_path": "/sa.json",
        "emulator_host": "localhost:8085",
    }
    EventFactory.register_adapter("redis-streams", redis_streams.RedisStreamsAdapter)
    assert config.adapter_kwargs("redis-streams") == {}  # registered without settings
    redis_streams.register()  # its registration says which setting fills it
    assert config.adapter_kwargs("redis-streams") == {"redis_url": "redis://localhost"}
    assert config.adapter_kwargs("memory") == {}
    # Only values that are set: the adapter's own defaults cover the rest.
    assert Settings(environ={"AWS_REGION": "eu-west-1"}).adapter_kwargs("kinesis") == {
        "region_name": "eu-west-1"
    }


def test_repr_hides_secrets() -> None:
    config = Settings(environ={"AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert "s3cr3t" not in repr(config)


class RecordingAdapter(InMemoryAdapter):
    """Remembers its constructor kwargs, to observe what the factory passed."""

    def __init__(
        self,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        super().__init__()
        self.kwargs = {
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "endpoint_url": endpoint_url,
        }


def test_precedence_explicit_over_settings_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand in for the kinesis bridge (not shipped yet) to see the merged kwargs.
    EventFactory.register_adapter("kinesis", RecordingAdapter)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    settings.aws_access_key_id = "settings-key"

    adapter = EventFactory.create_adapter("kinesis", region_name="us-west-2")
    assert isinstance(adapter, RecordingAdapter)
    assert adapter.kwargs == {
        "region_name": "us-west-2",  # explicit argument
        "aws_access_key_id": "settings-key",  # programmatic setting
        "aws_secret_access_key": "env-secret",  # environment
        "endpoint_url": None,  # adapter default
    }


def test_per_call_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    EventFactory.register_adapter("kinesis", RecordingAdapter)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    local = Settings(environ={}, aws_region="ap-south-1", event_type="kinesis")
    adapter = EventFactory.create_adapter(settings=local)
    assert isinstance(adapter, RecordingAdapter)
    assert adapter.kwargs["region_name"] == "ap-south-1"


def test_event_type_from_settings_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    EventFactory.register_adapter("kinesis", RecordingAdapter)
    assert type(EventFactory.create_adapter()) is InMemoryAdapter
    monkeypatch.setenv("EVENT_TYPE", "kinesis")
    assert isinstance(EventFactory.create_adapter(), RecordingAdapter)
    settings.event_type = "memory"
    assert type(EventFactory.create_adapter()) is InMemoryAdapter
    assert isinstance(EventFactory.create_adapter("kinesis"), RecordingAdapter)
