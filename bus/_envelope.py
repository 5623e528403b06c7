"""The envelope every message travels in, and how its ids are made.

An :class:`Envelope` carries the payload with the attributes a broker or a
CloudEvents consumer needs. Its names map 1:1 onto CloudEvents attributes
(see :meth:`Envelope.cloudevent_attributes`), so bridges can speak CloudEvents
binary mode without a lookup table:

==============  ======================  ==========================================
Envelope        CloudEvents             meaning
==============  ======================  ==========================================
``id``          ``id``                  unique, sortable within its bus
``source``      ``source``              who published (the bus's name)
``topic``       ``type``                the topic name, e.g. ``order.created``
``time``        ``time``                wall-clock seconds since the epoch
``key``         ``partitionkey``        ordering / partition key (extension)
``headers``     extensions              free-form string headers
``attempt``     ``deliveryattempt``     1 on first delivery, +1 per retry
==============  ======================  ==========================================

This module does not route, encode payloads, or know about trio.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from ._done import Delivery
from ._errors import PayloadTypeError

__all__ = ["Envelope", "IdGenerator", "check_headers", "dead_letter_headers", "describe"]

T = TypeVar("T")

# Header names the bus itself writes. Kept here so bridges and tests share one spelling.
H_ERROR = "x-bus-error"
H_ERROR_TYPE = "x-bus-error-type"
H_ORIGINAL_TOPIC = "x-bus-original-topic"
H_FAILED_SUBSCRIBER = "x-bus-failed-subscriber"
H_ATTEMPTS = "x-bus-attempts"
H_REPLY_TO = "reply-to"
H_CORRELATION_ID = "correlation-id"
H_IDEMPOTENCY_KEY = "idempotency-key"
H_ORIGIN = "x-bus-origin"
"""The bridge a message came in through, set by that bridge's port on import only (the
echo guard: that bridge does not export it back). ``publish`` drops it from the headers
it is given: a message published on the bus is the bus's own, whatever headers it copies."""
H_DEAD_LETTER_ORIGIN = "x-bus-dead-letter-origin"
"""On a dead letter: the bridge its message came in through (what ``x-bus-origin`` said).
A dead letter is a new message of the bus's, not an echo: it is exported to every bridge
exporting the dead-letter topic, the broker it came from included (see
:func:`dead_letter_headers`)."""


class Envelope(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """One message: a typed payload plus its routing and delivery attributes.

    Envelopes are immutable; the bus makes a new one (``msgspec.structs.replace``)
    when a retry bumps ``attempt`` or a dead letter adds headers. Build one with keyword
    arguments (the field order is not part of the API; the bus itself builds them
    positionally, which is cheaper).

    An envelope made by a bus holds its id as the integer the id is ``hex()`` of, and
    ``env.id`` renders the string when read (``repr`` too): most messages are handled
    without anyone reading their id, so publishing does not pay for the string. Only
    ``msgspec.structs.asdict`` / ``astuple`` and encoding a whole envelope with msgspec
    would show that integer; read ``env.id`` instead.

    Envelopes are not tracked by the cyclic garbage collector (``gc=False``): at a
    million messages a second, tracking them doubled the collector's work. The one
    consequence: a reference cycle *through* an envelope (a payload or header that
    refers back to its own envelope) would never be freed. Payloads that hold cycles
    among themselves are unaffected.
    """

    id: str
    """Unique id; lexicographic order is publish order within one bus (see the class
    docstring: a bus's own envelopes render it on read)."""
    topic: str
    """The exact topic the message was published to (never a pattern)."""
    payload: T
    """The typed payload, an instance of the topic's declared type."""
    key: str | None = None
    """Ordering key: messages with the same key reach a keyed actor in order."""
    headers: dict[str, str] = {}
    """String headers; carried across bridges (W3C ``traceparent`` among them)."""
    time: float = 0.0
    """Wall-clock publish time, seconds since the Unix epoch."""
    attempt: int = 1
    """Delivery attempt: 1 the first time, incremented by each retry."""
    source: str = "trio-bus"
    """Who published it (CloudEvents ``source``): the bus name, or a bridge's."""
    delivery: Delivery | None = None
    """Done-tracking (:class:`~bus.abc.Delivery`) when someone waits for this message to
    be handled everywhere; ``None`` otherwise. Not part of the message on the wire."""

    def cloudevent_attributes(self, datacontenttype: str = "application/json") -> dict[str, str]:
        """The CloudEvents 1.0 context attributes of this envelope, as strings."""
        attrs = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.topic,
            "time": _dt.datetime.fromtimestamp(self.time, _dt.UTC).isoformat().replace(
                "+00:00", "Z"
            ),
            "datacontenttype": datacontenttype,
            "deliveryattempt": str(self.attempt),
        }
        if self.key is not None:
            attrs["partitionkey"] = self.key
        return attrs

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__)
        return f"{type(self).__name__}({fields})"


# ``id`` is a slot like every field; msgspec builds, copies, compares and hashes envelopes
# through the slot, while attribute reads go through this property, which renders the
# integer a bus stores (see Envelope's docstring). Ids from elsewhere are strings already.
_id_slot = Envelope.__dict__["id"]


def _read_id(env: Envelope[Any]) -> str:
    value = _id_slot.__get__(env, Envelope)
    return value if type(value) is str else hex(value)


setattr(  # noqa: B010 - replaces the slot's descriptor after the class is built
    Envelope, "id",
    property(_read_id, doc="Unique id; lexicographic order is publish order within one bus."),
)


class IdGenerator:
    """Makes ids that are unique across buses and sort in creation order within one.

    An id is ``hex()`` of one integer: the generator's start time in milliseconds, then
    24 random bits, then a 40-bit counter, e.g. ``0x19ac4f0e2b1a3f7c90000000001``. Ids of
    one generator have the same width, so they sort as strings in creation order; ids of
    different generators sort by start time. One C call and one allocation per id
    (``map(hex, count(...))``). The bus's publish takes :attr:`next_int` instead, the
    integer alone (an :class:`Envelope` renders it when its ``id`` is read): both share
    one counter, so ids never repeat whichever is called.
    """

    __slots__ = ("next_id", "next_int", "start")

    def __init__(self) -> None:
        start = (time.time_ns() // 1_000_000) << 64 | int.from_bytes(os.urandom(3)) << 40
        self.start = start
        counter = itertools.count(start + 1)
        # typed Any: it goes into Envelope's ``id`` slot, which renders it on read
        self.next_int: Callable[[], Any] = counter.__next__
        self.next_id = map(hex, counter).__next__

    def __call__(self) -> str:
        return self.next_id()


def dead_letter_headers(headers: dict[str, str], dead_letter_topic: str) -> None:
    """Turn *headers* (a copy, its ``x-bus-original-topic`` set: changed in place) into
    those of a dead letter.

    The origin of a message that came in through a bridge moves from ``x-bus-origin`` to
    ``x-bus-dead-letter-origin``, so the echo guard does not keep its dead letter from
    the broker it came from when that broker is the dead-letter destination. A local
    message's dead letter has neither. The one exception is a message that was on the
    dead-letter topic already (an imported dead letter that failed again): it keeps its
    ``x-bus-origin``, so it is not exported back to where it came from, round and round.
    """
    if headers.get(H_ORIGINAL_TOPIC) == dead_letter_topic:
        return
    origin = headers.pop(H_ORIGIN, None)
    if origin is None:
        headers.pop(H_DEAD_LETTER_ORIGIN, None)  # an earlier dead letter's, not this one's
    else:
        headers[H_DEAD_LETTER_ORIGIN] = origin


def describe(value: Any) -> str:
    """Short type name for error messages."""
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def check_headers(headers: Any) -> dict[str, str]:
    """Headers travel to every broker as strings: refuse anything else, naming it.

    Returns them without ``x-bus-origin`` (a copy, if they had it): only a bridge's port
    sets that header, on import. A handler that passes an imported message's headers on
    to its own publish makes a new message, which every bridge must export (a copied
    origin would make the echo guard skip it)."""
    if not isinstance(headers, dict):
        raise PayloadTypeError(f"headers must be a dict[str, str] or None, got {describe(headers)}")
    for name, value in headers.items():
        if type(name) is not str:
            raise PayloadTypeError(f"header names must be str, got {describe(name)}: {name!r}")
        if type(value) is not str:
            raise PayloadTypeError(
                f"header {name!r} must have a str value, got {describe(value)}: {value!r}; "
                f"headers are strings on every broker, convert it (str(), json) first"
            )
    if H_ORIGIN in headers:
        return {name: value for name, value in headers.items() if name != H_ORIGIN}
    return headers
