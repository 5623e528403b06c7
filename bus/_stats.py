"""Frozen statistics records returned by ``bus.stats()``.

The live counters are plain integer attributes on the objects that own them (a
subscription counts its own deliveries); ``bus.stats()`` copies them into these
immutable records, so reading stats never races with delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ActorStats", "BusStats", "TopicStats"]


@dataclass(frozen=True, slots=True)
class TopicStats:
    """Counters of one declared topic."""

    published: int
    """Messages published to this topic since the bus opened."""
    retained: int
    """Messages currently held in its retained log (0 without retention)."""
    retained_bytes: int
    """Size of the retained log in bytes of the payloads' JSON encoding (what a bridge
    would send), counted only when the topic's ``Retention`` has ``max_bytes``; envelope
    fields and headers are not included. 0 otherwise."""


@dataclass(frozen=True, slots=True)
class ActorStats:
    """Counters and gauges of one subscriber (actor)."""

    pattern: str
    """The pattern it subscribed with."""
    group: str | None
    """Its competing-consumer group, if any."""
    delivered: int
    """Messages its handler completed successfully."""
    failed: int
    """Handler calls that raised (each retry that fails counts)."""
    retried: int
    """Retries scheduled after a failure."""
    dead_lettered: int
    """Messages sent to the dead-letter topic after the last attempt."""
    dropped: int
    """Messages dropped by a ``drop_oldest``/``drop_newest`` overflow policy."""
    duplicates: int
    """Messages skipped by the dedup window."""
    rejected: int
    """Publishes refused because its mailbox was full under ``overflow="error"`` (no
    subscriber got those messages)."""
    restarts: int
    """Times its supervisor restarted it after a crash outside the handler."""
    mailbox_depth: int
    """Messages waiting in its mailbox(es) now. Mailboxes are bounded in messages
    (``capacity``), never in bytes."""
    handler_seconds_mean: float
    """Mean duration of successful handler calls (one call in 16 is timed)."""
    handler_seconds_max: float
    """Longest timed handler call."""


@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of the whole bus. Its mappings are read-only views, like its fields."""

    topics: Mapping[str, TopicStats]
    """Per declared topic (the bus's private reply topics are not listed)."""
    actors: Mapping[str, ActorStats]
    """Per subscriber, by name."""
    pending_requests: int
    """Requests waiting for a reply."""
    dead_letters_undeliverable: int = 0
    """Dead letters that could not be delivered in turn (their broker refused them, their
    handler failed); they stay in the retained dead-letter log, and the messages they
    came from were not acknowledged to their brokers (logged as
    ``dead_letter.undeliverable``)."""

    def __post_init__(self) -> None:
        # frozen=True stops rebinding the fields; these stop changing what they hold
        for name in ("topics", "actors"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    @property
    def published(self) -> int:
        return sum(t.published for t in self.topics.values())

    @property
    def delivered(self) -> int:
        return sum(a.delivered for a in self.actors.values())

    @property
    def dead_lettered(self) -> int:
        return sum(a.dead_lettered for a in self.actors.values())
