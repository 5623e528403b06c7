"""botocore / aiobotocore / aiohttp exceptions translated into the bus's (sans-IO).

- no answer from the endpoint (refused, reset, timed out, closed; a 5xx after botocore's
  own retries; throttling that outlasted them) -> :class:`~bus.BackendUnavailableError`;
- every other AWS error (refused credentials, a missing stream, a bad argument) ->
  :class:`~bus.BackendError`.

The original stays as ``__cause__``; :func:`error_code` reads the AWS error code back
from it so the bridge can act on one (``ResourceNotFoundException``...). Messages name
the bridge and never contain the secret access key.
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError
from bus._secrets import redact

__all__ = ["THROTTLED", "TRANSIENT_RECORD_CODES", "error_code", "is_client_error", "translate"]

THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException",
     "ThrottlingException", "KMSThrottlingException", "RequestLimitExceeded"}
)
UNAVAILABLE = THROTTLED | {"InternalFailure", "ServiceUnavailable", "InternalServerError"}
TRANSIENT_RECORD_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException",
     "ServiceUnavailable"}
)
"""Per-record error codes of ``PutRecords`` that a later retry may cure."""


def is_client_error(exc: BaseException) -> bool:
    """True for exceptions of the AWS client or the network below it."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__
    return module.startswith(("botocore", "aiobotocore", "aioboto3", "aiohttp", "boto3"))


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            code = error.get("Code")
            return str(code) if code else None
    return None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of *exc* or of the client exception it was translated from."""
    seen: BaseException | None = exc
    while seen is not None:
        code = _code(seen)
        if code is not None:
            return code
        seen = seen.__cause__
    return None


def translate(exc: BaseException, bridge: str, secret: str | None) -> BackendError:
    """The bus error for *exc*; the caller raises it ``from exc``."""
    if isinstance(exc, BackendError):
        return exc
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = redact(what, secret)
    code = _code(exc)
    if code is None:
        # no AWS answer at all: the endpoint is unreachable or the connection broke
        return BackendUnavailableError(f"Kinesis bridge {bridge!r}: endpoint unreachable ({what})")
    if code in UNAVAILABLE:
        return BackendUnavailableError(f"Kinesis bridge {bridge!r}: {what}")
    return BackendError(f"Kinesis bridge {bridge!r}: {what}")
