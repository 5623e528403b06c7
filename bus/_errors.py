"""The one exception hierarchy of trio-bus.

Every error the library raises on purpose is a :class:`BusError`. Broker client
exceptions (aiokafka, aio-pika, botocore, google-api-core, redis) never reach users:
they are translated at the boundary into :class:`BackendError` with ``raise ... from``.

::

    BusError
    ├── ConfigurationError          bad argument or setting: the caller's fault
    │   └── MissingDependencyError  a client library is not installed: names the extra
    ├── TopicError                  invalid topic name or pattern
    │   └── UnknownTopicError       publish to a topic nobody declared (strict bus)
    ├── PayloadTypeError            payload is not the topic's declared type
    ├── DecodeError                 bytes that do not decode into the topic's type
    ├── BusClosedError              publish/subscribe after the bus closed
    ├── MailboxFullError            a mailbox with overflow="error" is full
    ├── NotDeliveredError           publish(confirm=True): a subscriber dead-lettered it
    ├── RequestTimeoutError         request/reply got no reply in time
    ├── RequestFailedError          the subscriber handling a request failed for good
    ├── SupervisorGaveUp            an actor crashed more often than its restart limit
    └── BackendError                a broker failed: the remote side's fault
        ├── BackendUnavailableError the broker cannot be reached
        └── Rejected                the broker refused one record for good (returned
                                    by Bridge.export in that record's slot, not raised)

Each class also derives from the closest builtin (``ValueError``, ``TypeError``,
``TimeoutError``...) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._done import Delivery


class BusError(Exception):
    """Base class of every error raised by trio-bus."""


class ConfigurationError(BusError, ValueError):
    """An argument or setting is wrong. The message says which and how to fix it."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional client library is missing. The message names the extra to install."""


class TopicError(BusError, ValueError):
    """A topic name or subscription pattern is not valid."""


class UnknownTopicError(TopicError, LookupError):
    """A topic was used before it was declared with ``bus.topic(name, type)``."""


class PayloadTypeError(BusError, TypeError):
    """A payload does not match the type declared for its topic."""


class DecodeError(BusError, ValueError):
    """Bytes could not be decoded into the topic's payload type."""


class BusClosedError(BusError, RuntimeError):
    """The bus (or adapter) is closed: nothing can be published or subscribed."""


class MailboxFullError(BusError):
    """A subscriber's mailbox is full and its overflow policy is ``"error"``."""


class NotDeliveredError(BusError):
    """``publish(..., confirm=True)``: a subscriber dead-lettered or dropped the message.

    ``delivery.failures`` lists who, what happened and why; the others handled it.
    """

    def __init__(self, message: str, *, delivery: Delivery) -> None:
        super().__init__(message)
        self.delivery = delivery


class RequestTimeoutError(BusError, TimeoutError):
    """A request got no reply within its timeout."""


class RequestFailedError(BusError):
    """A subscriber handling a request failed on its last attempt, so no reply will come.

    Raised by ``bus.request`` instead of waiting for the timeout. The attributes say who
    failed and how (they come from the dead-letter headers, so they cross bridges too).
    """

    def __init__(
        self, message: str, *, subscriber: str, error_type: str, error: str, attempts: int
    ) -> None:
        super().__init__(message)
        self.subscriber = subscriber
        """Name of the subscriber whose handler failed."""
        self.error_type = error_type
        """Qualified name of the exception class it raised, e.g. ``builtins.ValueError``."""
        self.error = error
        """``str()`` of that exception."""
        self.attempts = attempts
        """Attempts made before giving up."""


class SupervisorGaveUp(BusError):
    """An actor crashed outside its handler more times than its restart limit allows."""


class BackendError(BusError):
    """A broker or its client library failed. ``__cause__`` holds the original error."""


class BackendUnavailableError(BackendError, ConnectionError):
    """The broker cannot be reached (refused, reset, timed out)."""


class Rejected(BackendError):
    """The broker refused one record for good (too large, unroutable...).

    Returned (not raised) by :meth:`~bus.abc.Bridge.export` in the slot of that record:
    the bus dead-letters it with this message as the reason and goes on with the rest.
    """
