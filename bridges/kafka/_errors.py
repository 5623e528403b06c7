"""aiokafka exceptions translated into bus errors, at the bridge's boundary.

Three outcomes for a record the producer could not send:

- **rejected** (:class:`~bus.abc.Rejected`): the broker or client will never take it
  as it is (too large, invalid topic, not authorised): dead-lettered with the reason;
- **unavailable** (:class:`~bus.BackendUnavailableError`): no connection to the cluster;
- **transient** (:class:`~bus.BackendError`): anything else, retried by the bus.

Classification is by class name (aiokafka) or by error code name (confluent-kafka's
``KafkaException`` carries a ``KafkaError`` whose ``name()`` is e.g.
``MSG_SIZE_TOO_LARGE``), so this module imports no client. Messages name the client's
error type and text, never connection settings (credentials live there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus import BackendError, BackendUnavailableError, Envelope
from bus.abc import ExportResults, Rejected, redact

__all__ = ["classify", "export_results", "is_unavailable", "translate"]

# Never accepted as sent: the bus dead-letters the record.
_PERMANENT = frozenset({
    "MessageSizeTooLargeError",
    "RecordTooLargeError",
    "RecordListTooLargeError",
    "InvalidTopicError",
    "TopicAuthorizationFailedError",
    "CorruptRecordException",
    "InvalidTimestampError",
    "UnsupportedForMessageFormatError",
    # librdkafka's codes
    "MSG_SIZE_TOO_LARGE",
    "INVALID_MSG_SIZE",
    "INVALID_MSG",
    "INVALID_RECORD",
    "TOPIC_EXCEPTION",
    "TOPIC_AUTHORIZATION_FAILED",
    "INVALID_TIMESTAMP",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "_MSG_SIZE_TOO_LARGE",
    "_INVALID_ARG",
})
# The cluster cannot be reached (bootstrap failed, connection lost, no broker).
_UNAVAILABLE = frozenset({
    "KafkaConnectionError",
    "NoBrokersAvailable",
    "NodeNotReadyError",
    "KafkaUnavailableError",
    "BrokerNotAvailableError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "OSError",
    # librdkafka's codes
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_RESOLVE",
    "_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "NETWORK_EXCEPTION",
})


def _code(exc: BaseException) -> str | None:
    """The librdkafka error code name a confluent-kafka ``KafkaException`` carries."""
    err = exc.args[0] if exc.args else None
    name = getattr(err, "name", None)
    if callable(name) and callable(getattr(err, "str", None)):
        return str(name())
    return None


def _names(exc: BaseException) -> set[str]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    code = _code(exc)
    if code is not None:
        names.add(code)
    return names


def _describe(exc: BaseException, secrets: tuple[str | None, ...] = ()) -> str:
    code = _code(exc)
    name = type(exc).__name__
    if code is not None:
        return redact(f"{name}: {code}: {exc.args[0].str()}", *secrets)
    text = str(exc)
    text = text.removeprefix(f"{name}: ")  # aiokafka's errors name themselves in str()
    if text.startswith("Unable to bootstrap from"):
        # aiokafka lists the addresses it tried as Python tuples; the context names them
        return f"no broker answered ({name})"
    return redact(f"{name}: {text}" if text else name, *secrets)


def classify(exc: BaseException, topic: str) -> BaseException:
    """One record's failure as an export result: Rejected, or a transient BackendError."""
    if _names(exc) & _PERMANENT:
        rejected = Rejected(f"kafka rejected the record for {topic!r}: {_describe(exc)}")
        rejected.__cause__ = exc
        return rejected
    return translate(exc, f"sending to {topic!r}")


def is_unavailable(exc: BaseException) -> bool:
    return bool(_names(exc) & _UNAVAILABLE) or isinstance(exc, BackendUnavailableError)


def _unwrap(exc: BaseException) -> BaseException:
    # A trio nursery wraps even one failure in a group: report the failure itself.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def translate(
    exc: BaseException, context: str, secrets: tuple[str | None, ...] = ()
) -> BackendError:
    """*exc* as a bus error (``raise translate(exc, ...) from exc``): *context* says what
    was being done (``"sending 3 records"``); *secrets* (the SASL password) and URL
    passwords are masked in its message."""
    exc = _unwrap(exc)
    if isinstance(exc, BackendError):
        return exc
    cls = BackendUnavailableError if is_unavailable(exc) else BackendError
    err = cls(f"kafka: {context} failed: {_describe(exc, secrets)}")
    err.__cause__ = exc
    return err


def export_results(
    batch: Sequence[Envelope[Any]], sent: list[BaseException | None],
    unencodable: dict[int, BaseException],
) -> ExportResults:
    """The export result from one outcome per sent record (aligned with the records of
    ``_wire.encode_batch``): None when all went through; raises when nothing did and
    nothing was refused for good."""
    if unencodable:
        it = iter(sent)
        sent = [unencodable[i] if i in unencodable else next(it) for i in range(len(batch))]
    if not any(sent):
        return None
    out = [
        r if r is None or isinstance(r, Rejected) else classify(r, env.topic)
        for r, env in zip(sent, batch, strict=True)
    ]
    if all(r is not None for r in sent) and not any(isinstance(o, Rejected) for o in out):
        # Nothing went through and nothing was refused for good: fail the batch whole
        # (the bus retries it with backoff) rather than record by record.
        first = sent[0]
        assert first is not None
        raise translate(first, f"sending {len(batch)} records") from first
    return out
