"""Bus topic names <-> Pub/Sub topic and subscription ids (sans-IO).

Pub/Sub resource ids are 3-255 characters of letters, digits and ``-_.~+%``, start with
a letter and must not start with ``goog``. Bus topic names are dot-separated segments of
letters, digits, ``_`` and ``-``: every character is allowed as it is, so the topic id is
``topic_prefix + topic`` with no escaping, and reading it back is stripping the prefix.
A bus topic that still breaks a rule (``ab``: too short; ``1st.order``: starts with a
digit; ``goog.x``) is refused with a hint to set ``topic_prefix`` (e.g. ``"bus."``).

A subscription belongs to one topic, so importing means one subscription per imported
topic and consumer group: ``f"{topic_id}~{group}"`` (``~`` never occurs in a bus topic, so
the pair reads back unambiguously). Characters of *group* that ids do not allow become
``-``; an id over 255 characters is shortened and made unique with a hash.
"""

from __future__ import annotations

import hashlib
import re

from bus import ConfigurationError
from bus.abc import validate_topic

__all__ = ["subscription_id", "topic_from_id", "topic_id"]

MAX_ID = 255
_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}\Z")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9\-_.+%]")


def _check(resource: str, rid: str) -> str:
    if not _ID.match(rid) or rid.lower().startswith("goog"):
        raise ConfigurationError(
            f"{rid!r} is not a valid Pub/Sub {resource} id (3-255 letters, digits or "
            f"'-_.~+%', starting with a letter, not with 'goog'); give the bridge a "
            f"topic_prefix= (e.g. 'bus.') so every bus topic maps to a valid id"
        )
    return rid


def topic_id(topic: str, prefix: str = "") -> str:
    """The Pub/Sub topic id of bus *topic*; :class:`~bus.ConfigurationError` if invalid."""
    return _check("topic", prefix + topic)


def topic_from_id(tid: str, prefix: str = "") -> str | None:
    """The bus topic of Pub/Sub topic id *tid*, or None if it is not one of ours (another
    prefix, or a name the bus cannot have)."""
    if not tid.startswith(prefix):
        return None
    topic = tid[len(prefix):]
    try:
        return validate_topic(topic)
    except Exception:
        return None


def subscription_id(tid: str, group: str) -> str:
    """The id of consumer *group*'s subscription to topic id *tid*."""
    sid = f"{tid}~{_NOT_IN_ID.sub('-', group)}"
    if len(sid) > MAX_ID:
        digest = hashlib.sha256(sid.encode()).hexdigest()[:16]
        sid = f"{sid[: MAX_ID - 17]}~{digest}"
    return _check("subscription", sid)
