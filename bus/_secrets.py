"""Keeping secrets out of reprs, logs and error messages.

Settings, bridges and adapters hold three kinds of secret: a password inside a URL's
userinfo (``amqp://user:pw@host/``, ``redis://:pw@host/0``) or query
(``?password=pw``), a password given on its own (Kafka SASL, an AWS secret key), and
the *contents* of a credentials file (a Google service-account JSON; its path is not
secret). Everything that prints one of those goes through this module:

- :func:`mask_url` for a URL shown in a repr, a log field or an error;
- :func:`redact` for free text (a client library's error message): it blots out given
  secrets, in the spellings a message may quote them, and any URL password in the text
  (in the userinfo or a ``?password=``-like parameter);
- :func:`file_secrets` for the secret values a credentials file holds, to give to
  :func:`redact`;
- :func:`mask_setting` for one named setting (``Settings.__repr__``).

The replacement is always ``***``. This module does no I/O except reading a
credentials file when asked to, and never raises for a value it cannot parse: an
unparseable URL is shown as its scheme only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "file_secrets", "mask_setting", "mask_url", "redact"]

MASK = "***"

# Query parameters some clients read credentials from (redis-py: ?password=).
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "secret", "token", "access_token"})
# Fields of credential files whose values are secret (service accounts, OAuth clients).
_SECRET_FIELDS = frozenset({
    "private_key", "private_key_id", "client_secret", "refresh_token", "password",
    "secret", "token", "access_token", "secret_access_key", "aws_secret_access_key",
})
# scheme://user:password@ inside free text. The user runs up to the first ':' and the
# password up to the last '@' before the host: either may hold an '@' that was not
# percent-encoded (an e-mail address as the user name, say).
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:]*:)(?P<pw>[^\s/]*)@")
# ?password=... (or another secret parameter) of a URL inside free text: the value runs
# to the next parameter, fragment, quote or space (a '.' that ends a sentence included).
_URL_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:" + "|".join(sorted(_SECRET_PARAMS)) + r")=)(?P<pw>[^\s&#'\"]*)",
    re.IGNORECASE,
)
# Lines of a PEM block or other multi-line secrets shorter than this are not masked
# on their own (they would blot out common words).
_MIN_FRAGMENT = 8


def mask_url(url: str) -> str:
    """*url* with its password (userinfo or a password-like query parameter) as ``***``.

    A URL without a password comes back unchanged; one that cannot be parsed comes back
    as ``scheme://***`` rather than risk showing it.
    """
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            port = f":{parts.port}" if parts.port is not None else ""
            netloc = f"{parts.username or ''}:{MASK}@{host}{port}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
                query = urlencode(
                    [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
                    safe="*",
                )
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://" + MASK


def redact(text: str, *secrets: str | None) -> str:
    """*text* with each of *secrets* and any URL password in it replaced by ``***``.

    A secret is also found in the spellings an error message may quote it in (JSON with
    or without ``\\u`` escapes, ``repr``, ``ascii``, the ``repr`` of its UTF-8 bytes,
    percent-encoded in a URL, and each of those JSON-escaped once more, as a JSON log
    line quoting such a message shows it), and a multi-line secret (a PEM key) line by
    line.
    """
    for secret in sorted(_spellings(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _URL_SECRET_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)


def _spellings(secrets: Iterable[str | None]) -> set[str]:
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        quoted = {
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            repr(secret)[1:-1],
            ascii(secret)[1:-1],
            repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
            quote(secret, safe=""),
            quote_plus(secret, safe=""),
        }
        found |= quoted
        found.update(json.dumps(q)[1:-1] for q in quoted)
        if "\n" in secret:
            found.update(
                line.strip() for line in secret.splitlines() if len(line.strip()) >= _MIN_FRAGMENT
            )
    return found


def file_secrets(path: str | Path | None) -> tuple[str, ...]:
    """The secret values held by the credentials file at *path*, for :func:`redact`.

    A JSON object gives the values of its secret fields (``private_key``,
    ``client_secret``, ``refresh_token``...); any other readable file counts as one
    secret as a whole. A missing or unreadable file gives nothing.
    """
    if not path:
        return ()
    try:
        raw = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    try:
        document = json.loads(raw)
    except ValueError:
        return (raw.strip(),) if raw.strip() else ()
    if not isinstance(document, dict):
        return (raw.strip(),)
    return tuple(
        str(value)
        for key, value in document.items()
        if key.lower() in _SECRET_FIELDS and isinstance(value, str) and value
    )


def mask_setting(name: str, value: str | None) -> str | None:
    """How a setting named *name* is shown: secrets as ``***``, URLs without password."""
    if value is None:
        return None
    lowered = name.lower()
    if any(word in lowered for word in ("secret", "password", "token")):
        return MASK
    return mask_url(value) if "://" in value else value
