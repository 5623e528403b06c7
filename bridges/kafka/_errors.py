"""aiokafka exceptions translated into bus errors, at the bridge's boundary.

Three outcomes for a record the producer could not send:

- **rejected** (:class:`~bus.abc.Rejected`): the broker or client will never take it
  as it is (too large, invalid topic, not authorised): dead-lettered with the reason;
- **unavailable** (:class:`~bus.BackendUnavailableError`): no connection to the cluster;
- **transient** (:class:`~bus.BackendError`): anything else, retried by the bus.

Classification is by class name, so this module imports no client: aiokafka is loaded
only when a bridge opens. Messages name the client's error type and text, never
connection settings (credentials live there).
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError
from bus.abc import Rejected

__all__ = ["classify", "is_unavailable", "translate"]

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
})


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def translate(exc: BaseException, doing: str) -> BackendError:
    """*exc* as a bus error (``raise translate(exc, ...) from exc``)."""
    exc = _unwrap(exc)
    if isinstance(exc, BackendError):
        return exc
    cls = BackendUnavailableError if is_unavailable(exc) else BackendError
    err = cls(f"kafka: {doing} failed: {_describe(exc)}")
    err.__cause__ = exc
    return err
