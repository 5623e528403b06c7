"""Topic names, subscription patterns, and the routing table.

Everything that decides *which subscriptions a topic reaches* lives here, as plain
sans-IO code: no trio, no clock, no tasks. The bus asks :class:`RoutingTable` for the
targets of a topic once and caches the answer until a subscription changes.

Syntax (the same as RabbitMQ topic exchanges, so bridges need no translation):

- a topic name is one or more dot-separated segments of ``[A-Za-z0-9_-]``, e.g.
  ``order.created``; at most 249 characters (Kafka's limit);
- a pattern is a topic name whose segments may also be ``*`` (exactly one segment)
  or ``#`` (zero or more segments): ``order.*``, ``payment.#``, ``#``;
- private topics (a bus's reply topics, ``bus.reply.<id>``) are matched only by patterns
  that spell out their prefix (``bus.reply.#``), never by ``#``, ``bus.#`` or ``*.*.*``:
  a recorder or an audit subscriber on ``#`` does not see request/reply traffic (MQTT
  keeps ``$SYS/...`` away from ``#`` the same way).

This module does not know about mailboxes, delivery or types.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from ._errors import TopicError

__all__ = [
    "PRIVATE_PREFIX",
    "Pattern",
    "RoutingTable",
    "is_pattern",
    "is_private",
    "validate_pattern",
    "validate_topic",
]

MAX_TOPIC_LENGTH = 249
PRIVATE_PREFIX = "bus.reply."
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+\Z")
_SYNTAX = (
    "a name is dot-separated segments of letters, digits, '_' or '-' "
    "(e.g. 'order.created'); patterns may use '*' for one segment and '#' for any number"
)

T = TypeVar("T")


def _check_length(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise TopicError(f"{what} must be a str, got {type(text).__name__}: {text!r}")
    if not text:
        raise TopicError(f"{what} is empty: {_SYNTAX}")
    if len(text) > MAX_TOPIC_LENGTH:
        raise TopicError(
            f"{what} {text[:40]!r}... is {len(text)} characters; the limit is {MAX_TOPIC_LENGTH}"
        )


def validate_topic(name: str) -> str:
    """Return *name* if it is a valid topic name, else raise :class:`TopicError`."""
    _check_length(name, "topic name")
    for segment in name.split("."):
        if not _SEGMENT.match(segment):
            hint = " (wildcards belong in subscription patterns)" if segment in "*#" else ""
            raise TopicError(
                f"invalid topic name {name!r}: bad segment {segment!r}{hint}; {_SYNTAX}"
            )
    return name


def validate_pattern(pattern: str) -> str:
    """Return *pattern* if it is a valid subscription pattern, else raise :class:`TopicError`."""
    _check_length(pattern, "pattern")
    for segment in pattern.split("."):
        if segment not in ("*", "#") and not _SEGMENT.match(segment):
            raise TopicError(f"invalid pattern {pattern!r}: bad segment {segment!r}; {_SYNTAX}")
    return pattern


def is_private(topic: str) -> bool:
    """True for a bus's private topics (reply topics), hidden from wildcards and listings."""
    return topic.startswith(PRIVATE_PREFIX)


def is_pattern(text: str) -> bool:
    """True if *text* holds a wildcard segment."""
    return any(segment in ("*", "#") for segment in text.split("."))


class Pattern:
    """A validated subscription pattern that can test topic names."""

    __slots__ = ("_private", "_segments", "text")

    def __init__(self, text: str) -> None:
        self.text = validate_pattern(text)
        self._segments = tuple(text.split("."))
        self._private = text.startswith(PRIVATE_PREFIX)  # may match private topics

    def matches(self, topic: str) -> bool:
        """True if *topic* (a valid topic name) is selected by this pattern."""
        if not self._private and topic.startswith(PRIVATE_PREFIX):
            return False
        segs = self._segments
        if "#" not in segs and "*" not in segs:
            return topic == self.text
        words = topic.split(".")
        # reachable[j]: the pattern prefix seen so far can consume exactly words[:j]
        reachable = [True] + [False] * len(words)
        for seg in segs:
            nxt = [False] * (len(words) + 1)
            if seg == "#":
                seen = False
                for j in range(len(words) + 1):
                    seen = seen or reachable[j]
                    nxt[j] = seen
            else:
                for j in range(len(words)):
                    if reachable[j] and (seg == "*" or seg == words[j]):
                        nxt[j + 1] = True
            reachable = nxt
        return reachable[-1]

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


class RoutingTable(Generic[T]):
    """Maps topics to the targets whose patterns match them, in subscription order.

    ``route(topic)`` is memoised per topic; any ``add``/``remove`` clears the memo, so
    the hot path (publish) costs one dict lookup.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[Pattern, T]] = []
        self._cache: dict[str, tuple[T, ...]] = {}

    def add(self, pattern: str, target: T) -> None:
        self._entries.append((Pattern(pattern), target))
        self._cache.clear()

    def remove(self, target: T) -> None:
        """Forget every entry for *target* (no error if it had none)."""
        self._entries = [(p, t) for p, t in self._entries if t != target]
        self._cache.clear()

    def route(self, topic: str) -> tuple[T, ...]:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        targets: list[T] = []
        for pattern, target in self._entries:
            if pattern.matches(topic) and target not in targets:
                targets.append(target)
        result = self._cache[topic] = tuple(targets)
        return result

    def __iter__(self) -> Iterator[tuple[Pattern, T]]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
