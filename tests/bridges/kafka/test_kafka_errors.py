"""aiokafka exceptions become bus errors: rejected, unavailable or transient."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import errors as ke

from bridges.kafka._errors import classify, translate
from bus import BackendError, BackendUnavailableError
from bus.abc import Rejected


def test_permanent_failures_are_rejected_with_the_reason() -> None:
    for exc in (ke.MessageSizeTooLargeError("1200000 bytes"), ke.RecordTooLargeError(),
                ke.InvalidTopicError(), ke.TopicAuthorizationFailedError()):
        result = classify(exc, "order.created")
        assert isinstance(result, Rejected), exc
        assert type(exc).__name__ in str(result) and "order.created" in str(result)
        assert result.__cause__ is exc


def test_connection_failures_are_unavailable_and_others_transient() -> None:
    down = classify(ke.KafkaConnectionError("no route"), "t")
    assert isinstance(down, BackendUnavailableError)
    assert isinstance(translate(ke.NodeNotReadyError(), "x"), BackendUnavailableError)
    other = classify(ke.NotEnoughReplicasError(), "t")
    assert type(other) is BackendError and not isinstance(other, Rejected)
    assert isinstance(translate(ke.KafkaTimeoutError(), "sending"), BackendError)


def test_a_failed_bootstrap_reads_as_one_sentence_without_tuples() -> None:
    # what aiokafka raises when no bootstrap server answers
    exc = ke.KafkaConnectionError(
        "Unable to bootstrap from [('127.0.0.1', 9093, <AddressFamily.AF_INET: 2>)]"
    )
    err = translate(exc, "connecting to 127.0.0.1:9093")
    assert str(err) == (
        "kafka: connecting to 127.0.0.1:9093 failed: no broker answered (KafkaConnectionError)"
    )
    named = translate(ke.KafkaConnectionError("x"), "consuming")  # its str() names it
    assert str(named) == "kafka: consuming failed: KafkaConnectionError: x"


def test_single_failures_are_unwrapped_from_exception_groups() -> None:
    group = ExceptionGroup("nursery", [ExceptionGroup("inner", [ke.KafkaConnectionError("x")])])
    err = translate(group, "consuming")
    assert isinstance(err, BackendUnavailableError)
    assert "KafkaConnectionError" in str(err)
    already = BackendError("mine")
    assert translate(already, "x") is already


async def test_a_missing_compression_library_names_the_fix(monkeypatch: Any) -> None:
    from aiokafka import codec

    from bridges.kafka import KafkaBridge
    from bus import MissingDependencyError

    monkeypatch.setattr(codec, "has_snappy", lambda: False)
    bridge = KafkaBridge("127.0.0.1:1", compression_type="snappy")
    with pytest.raises(MissingDependencyError, match=r"trio-bus\[kafka\]"):
        await bridge.open()
