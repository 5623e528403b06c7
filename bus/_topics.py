"""The declared topics of one bus: each one's type, codec, retained log and route memo.

:class:`Topics` answers "what is topic X?" for the whole bus: ``bus.topic()`` declares
through it, publish looks a topic up in :attr:`Topics.specs` (a dict, on the hot path),
a topic nobody declared is declared on first use when a pattern family covers it
(``bus.declare_pattern``) or the bus is not strict, and ``bus.read``/``retained``/
``delete_topic`` use its logs. It knows nothing of subscribers: the route memo each
:class:`TopicSpec` carries is written by the general route (``bus/_route.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._codec import Codec, codec_for
from ._envelope import Envelope
from ._errors import ConfigurationError, UnknownTopicError
from ._policy import Retention, RetentionLog
from ._replay import LogReader, open_position, wake_readers
from ._routing import Pattern, is_private, validate_pattern, validate_topic
from ._stats import TopicStats

if TYPE_CHECKING:
    from ._mailbox import Lane

__all__ = ["TopicSpec", "Topics"]


class TopicSpec:
    """A declared topic: its type, codec, retained log and counter, and its route memo.

    The memo (``targets`` .. ``keyed``) is what publish needs from the routing table,
    derived once per route change by ``Router.memoise``; ``offers is None`` means "not
    derived yet" (the first publish derives it).
    """

    __slots__ = (
        "careful", "codec", "exact", "keyed", "lane", "lanes", "log", "name", "offers",
        "published", "targets",
    )

    def __init__(self, name: str, codec: Codec[Any], retain: Retention | None) -> None:
        self.name = name
        self.codec = codec
        self.exact: type | None = codec.exact
        self.log: RetentionLog[Envelope[Any]] | None = RetentionLog(retain) if retain else None
        self.published = 0
        # the routing table's answer for this topic, memoised here to save a lookup
        self.targets: tuple[Any, ...] = ()  # of bus._route.Target
        self.offers: tuple[Callable[[Envelope[Any]], Lane | None], ...] | None = None
        # a target may refuse (overflow="error"): publish checks all before delivering
        self.careful = False
        # the one mailbox of the one plain subscriber, when that is all there is to do
        # (no retention, no choice of lane): publish appends to it directly; and the
        # mailboxes of several such subscribers (fan-out)
        self.lane: Lane | None = None
        self.lanes: tuple[Lane, ...] | None = None
        # the lanes of the one plain subscriber with several lanes (keyed: concurrency=N)
        self.keyed: list[Lane] | None = None

    def forget_route(self) -> None:
        """The memo no longer holds (retention was added): the next publish derives it."""
        self.offers, self.lane, self.lanes, self.keyed = None, None, None, None

    def retain(self, env: Envelope[Any]) -> None:
        """Append *env* to the retained log (the topic has one)."""
        log = self.log
        assert log is not None
        policy = log.policy
        size = len(self.codec.encode(env.payload)) if policy.max_bytes else 0
        log.append(env, trio.current_time() if policy.max_age is not None else 0.0, size)


class Topics:
    """The declared topics of one bus (see the module docstring)."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.specs: dict[str, TopicSpec] = {}
        self._families: list[tuple[Callable[[str], bool], Codec[Any]]] = []

    def declare(self, name: str, tp: Any, retain: Retention | None) -> TopicSpec:
        """Declare *name* (see ``Bus.topic``): idempotent for the same type and retention."""
        validate_topic(name)
        existing = self.specs.get(name)
        if existing is None:
            spec = self.specs[name] = TopicSpec(name, codec_for(tp), retain)
            return spec
        if existing.codec.type != tp:
            raise ConfigurationError(
                f"topic {name!r} is already declared with type {existing.codec.type_name}; "
                f"cannot redeclare it as {getattr(tp, '__qualname__', tp)!r}"
            )
        if retain is not None:
            if existing.log is None:
                existing.log = RetentionLog(retain)
                existing.forget_route()  # publish must retain now
            elif existing.log.policy != retain:
                raise ConfigurationError(
                    f"topic {name!r} is already declared with {existing.log.policy!r}; "
                    f"cannot redeclare it with {retain!r} (declare it once, or pass "
                    f"retain=None to get a handle on it as it is)"
                )
        return existing

    def declare_pattern(self, pattern: str, codec: Codec[Any]) -> None:
        """Declare each topic matching *pattern* with *codec* when first used."""
        validate_pattern(pattern)
        self._families.append((Pattern(pattern).matches, codec))

    def spec(self, topic: str) -> TopicSpec:
        """The spec of *topic*, declaring it now if a pattern family covers it or the bus
        is not strict; :class:`UnknownTopicError` otherwise."""
        spec = self.specs.get(topic)
        if spec is not None:
            return spec
        validate_topic(topic)
        for matches, codec in self._families:
            if matches(topic):
                spec = self.specs[topic] = TopicSpec(topic, codec, None)
                return spec
        if self.strict:
            raise UnknownTopicError(
                f"topic {topic!r} is not declared; declare it first with "
                f"bus.topic({topic!r}, PayloadType), or open the bus with strict=False"
            )
        spec = self.specs[topic] = TopicSpec(topic, codec_for(object), None)
        return spec

    def names(self) -> list[str]:
        """The declared topics' names, sorted, without the private reply topics."""
        return sorted(name for name in self.specs if not is_private(name))

    def delete(self, topic: str) -> None:
        """Forget *topic*: its log and group positions go, its readers end."""
        spec = self.specs.pop(validate_topic(topic), None)
        if spec is None:
            raise UnknownTopicError(f"cannot delete topic {topic!r}: it is not declared")
        if spec.log is not None:
            spec.log.deleted = True
            wake_readers(spec.log)

    def stats(self, now: float) -> dict[str, TopicStats]:
        """Each public topic's counters (its log trimmed to *now* first)."""
        found = {}
        for name, spec in self.specs.items():
            log = spec.log
            if log is not None:
                log.trim(now)  # then its length is what is retained (no copy)
            if not is_private(name):
                found[name] = TopicStats(
                    published=spec.published,
                    retained=len(log) if log is not None else 0,
                    retained_bytes=log.bytes if log is not None else 0,
                )
        return found

    def reader(
        self,
        topic: str,
        *,
        group: str | None,
        from_beginning: bool,
        offset: int | None,
        follow: bool,
        closed: Callable[[], bool],
    ) -> LogReader:
        """A reader of *topic*'s log (``Bus.read``); refused if it keeps none."""
        log = self.spec(topic).log
        if log is None:
            raise ConfigurationError(
                f"topic {topic!r} keeps no log to read; declare it with "
                f"bus.topic({topic!r}, Type, retain=Retention(max_count=...))"
            )
        return LogReader(
            topic,
            lambda: open_position(log, topic, group, from_beginning=from_beginning, offset=offset),
            follow=follow,
            closed=closed,
        )

    def retained_matching(self, pattern: str) -> list[Envelope[Any]]:
        """The retained messages of every topic matching *pattern*, in publish order."""
        matches = Pattern(pattern).matches
        now = trio.current_time()
        found: list[Envelope[Any]] = []
        for name, spec in self.specs.items():
            if spec.log is not None and matches(name):
                found.extend(spec.log.items(now))
        found.sort(key=lambda e: e.id)
        return found
