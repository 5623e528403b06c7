"""Topic names, subscription patterns, and the routing table.

Everything that decides *which subscriptions a topic reaches* lives here, as plain
sans-IO code: no trio, no clock, no tasks. The bus asks :class:`RoutingTable` for the
targets of a topic once; the table keeps the answer, and a subscription change updates
only the answers it can affect (the tries that make that cheap are in ``_route_index``).

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

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from ._errors import TopicError
from ._route_index import PatternNode, PatternTrie, TopicTrie

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

    __slots__ = ("private", "segments", "text")

    def __init__(self, text: str) -> None:
        self.text = validate_pattern(text)
        self.segments = tuple(text.split("."))
        self.private = text.startswith(PRIVATE_PREFIX)  # may match private topics

    def matches(self, topic: str) -> bool:
        """True if *topic* (a valid topic name) is selected by this pattern."""
        if not self.private and topic.startswith(PRIVATE_PREFIX):
            return False
        segs = self.segments
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

    ``route(topic)`` is memoised per topic, so the hot path (publish) costs one dict
    lookup. A change touches only the routes it can affect, and costs what they hold:

    - ``add(pattern, target)`` appends *target* to the memoised routes of the topics
      *pattern* matches (found by walking a trie of the memoised topics, so ``order.*``
      visits ``order``'s branch only): a new target is the newest, so it goes last, and
      a target already on a route stays where it is;
    - ``remove(target)`` takes *target* out of the routes that hold it (the topics its
      patterns match, found the same way: no reverse index to keep);
    - ``forget(topic)`` drops one topic's memo (a deleted topic);
    - a route not memoised yet is built from a trie of the patterns, so its cost grows
      with the patterns that can match the topic, not with all of them, and the
      matches are merged in subscription order (each node keeps its entries in order)
      and deduplicated in one pass: linear in the matches.

    ``add`` and ``remove`` return the topics whose route changed, for the bus to drop
    what it derived from them. Targets must be hashable (a target on a route once).
    """

    def __init__(self) -> None:
        self._patterns: PatternTrie[T] = PatternTrie()
        self._seq = itertools.count()
        self._entries: dict[T, list[tuple[PatternNode[T], int, Pattern]]] = {}
        self._size = 0
        self._routes: dict[str, tuple[T, ...]] = {}
        self._memoised = TopicTrie()  # the topics in _routes

    def add(self, pattern: str, target: T) -> list[str]:
        """Route the topics *pattern* matches to *target* too; the topics whose
        memoised route changed."""
        parsed = Pattern(pattern)
        node = self._patterns.node(parsed.segments)
        seq = next(self._seq)
        node.entries[seq] = target
        mine = self._entries.get(target)
        if mine is None:
            mine = self._entries[target] = []
        known = bool(mine)  # then it may be on a route already, through another pattern
        mine.append((node, seq, parsed))
        self._size += 1
        changed = []
        routes = self._routes
        for topic in self._matching(parsed):
            route = routes[topic]
            if known and target in route:
                continue
            routes[topic] = (*route, target)
            changed.append(topic)
        return changed

    def remove(self, target: T) -> list[str]:
        """Forget every entry for *target* (no error if it had none); the topics whose
        memoised route changed."""
        entries = self._entries.pop(target, ())
        for node, seq, _ in entries:
            del node.entries[seq]
            self._size -= 1
            self._patterns.prune(node)
        changed = self._routed_by(entries)
        routes = self._routes
        for topic in changed:
            route = routes[topic]
            at = route.index(target)
            routes[topic] = route[:at] + route[at + 1 :]
        return changed

    def forget(self, topic: str) -> None:
        """Drop *topic*'s memoised route (the topic was deleted)."""
        if self._routes.pop(topic, None) is not None:
            self._memoised.discard(topic)

    def routed_to(self, target: T) -> list[str]:
        """The memoised topics whose route holds *target*."""
        return self._routed_by(self._entries.get(target, ()))

    def _routed_by(self, entries: Iterable[tuple[Any, int, Pattern]]) -> list[str]:
        """The memoised topics one of these entries' patterns matches (each once): the
        routes their target is on. No reverse index: the topic trie finds them."""
        found: dict[str, None] = {}
        for _, _, parsed in entries:
            found.update(dict.fromkeys(self._matching(parsed)))
        return list(found)

    def _matching(self, pattern: Pattern) -> Iterator[str]:
        """The memoised topics *pattern* matches (private ones only for its kind)."""
        for topic in self._memoised.matching(pattern.segments):
            if pattern.private or not topic.startswith(PRIVATE_PREFIX):
                yield topic

    def route(self, topic: str) -> tuple[T, ...]:
        try:
            return self._routes[topic]
        except KeyError:
            pass
        result = self._routes[topic] = self._build(topic)
        self._memoised.add(topic)
        return result

    def _build(self, topic: str) -> tuple[T, ...]:
        literal = 2 if topic.startswith(PRIVATE_PREFIX) else 0  # 'bus', 'reply'
        nodes = self._patterns.match(topic.split("."), literal)
        if not nodes:
            return ()
        if len(nodes) == 1:
            return tuple(dict.fromkeys(nodes[0].entries.values()))
        merged = heapq.merge(*(node.entries.items() for node in nodes))  # by seq
        return tuple(dict.fromkeys(target for _, target in merged))

    def __iter__(self) -> Iterator[tuple[Pattern, T]]:
        """Every (pattern, target) entry, in the order they were added."""
        entries = [
            (seq, pattern, target)
            for target, mine in self._entries.items()
            for _, seq, pattern in mine
        ]
        entries.sort(key=lambda entry: entry[0])
        return iter([(pattern, target) for _, pattern, target in entries])

    def __len__(self) -> int:
        return self._size
