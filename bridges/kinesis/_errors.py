"""botocore / aiobotocore / aiohttp exceptions translated into the bus's (sans-IO).

- no credentials found (botocore's chain came up empty, a profile that does not exist,
  half a key pair), or credentials AWS refused -> :class:`~bus.ConfigurationError` that
  names what to set: a setting of the caller's, not the endpoint's fault (botocore
  raises ``NoCredentialsError`` before sending anything, which read as "endpoint
  unreachable" before);
- no answer from the endpoint (refused, reset, timed out, closed; a 5xx after botocore's
  own retries; throttling that outlasted them) -> :class:`~bus.BackendUnavailableError`;
- every other AWS error (a missing stream, a bad argument) -> :class:`~bus.BackendError`.

The original stays as ``__cause__``; :func:`error_code` reads the AWS error code back
from it so the bridge can act on one (``ResourceNotFoundException``...). Messages name
the bridge and never contain the secret access key.
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError, BusError, ConfigurationError
from bus.abc import redact

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
NO_CREDENTIALS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound",
     "CredentialRetrievalError", "NoAuthTokenError", "TokenRetrievalError",
     "UnauthorizedSSOTokenError", "SSOTokenLoadError"}
)
"""botocore's exceptions (class names) for credentials it could not find or load."""
REFUSED_CREDENTIALS = frozenset(
    {"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature",
     "MissingAuthenticationToken", "ExpiredTokenException", "InvalidClientTokenId",
     "SignatureDoesNotMatch"}
)
"""AWS error codes for credentials it did not accept."""
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for "
    "temporary ones), or AWS_PROFILE to a profile in ~/.aws/credentials, or pass "
    "access_key_id= and secret_access_key= to the bridge (an emulator takes any values)"
)


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


def translate(
    exc: BaseException, context: str, secrets: tuple[str | None, ...] = ()
) -> BusError:
    """The bus error for *exc* (the caller raises it ``from exc``): *context* is the
    bridge's name; *secrets* (the secret access key) are masked in the message."""
    if isinstance(exc, BackendError):
        return exc
    bridge = context
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = redact(what, *secrets)
    code = _code(exc)
    if code is None and type(exc).__name__ in NO_CREDENTIALS:
        return ConfigurationError(
            f"Kinesis bridge {bridge!r}: no usable AWS credentials ({what}); {CREDENTIALS_HINT}"
        )
    if code in REFUSED_CREDENTIALS:
        return ConfigurationError(
            f"Kinesis bridge {bridge!r}: AWS refused the credentials ({what}); check "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile's keys; renew "
            f"an expired AWS_SESSION_TOKEN)"
        )
    if code is None:
        # no AWS answer at all: the endpoint is unreachable or the connection broke
        return BackendUnavailableError(f"Kinesis bridge {bridge!r}: endpoint unreachable ({what})")
    if code in UNAVAILABLE:
        return BackendUnavailableError(f"Kinesis bridge {bridge!r}: {what}")
    return BackendError(f"Kinesis bridge {bridge!r}: {what}")
