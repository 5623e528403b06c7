"""trio-bus: a typed, actor-style event bus for one process, built on trio.

This module only re-exports what applications use; the code lives in the private modules
beside it. Broker implementers use :mod:`bus.abc` (``Bridge``, ``Port``, ``Features``...),
tests use :mod:`bus.testing`, and the seed's multi-backend API (``BaseEvent``,
``EventAdapter``, ``EventFactory``, ``EventMessage``, ``settings``) is :mod:`bus.events`.
"""

from ._actor import Actor as Actor
from ._actor import Group as Group
from ._actor import Subscription as Subscription
from ._attach import Attachment as Attachment
from ._bus import Bus as Bus
from ._bus import Topic as Topic
from ._bus import open_bus as open_bus
from ._codec import Codec as Codec
from ._envelope import Envelope as Envelope
from ._errors import BackendError as BackendError
from ._errors import BackendUnavailableError as BackendUnavailableError
from ._errors import BusClosedError as BusClosedError
from ._errors import BusError as BusError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DecodeError as DecodeError
from ._errors import MailboxFullError as MailboxFullError
from ._errors import MissingDependencyError as MissingDependencyError
from ._errors import NotDeliveredError as NotDeliveredError
from ._errors import PayloadTypeError as PayloadTypeError
from ._errors import RequestFailedError as RequestFailedError
from ._errors import RequestTimeoutError as RequestTimeoutError
from ._errors import SupervisorGaveUp as SupervisorGaveUp
from ._errors import TopicError as TopicError
from ._errors import UnknownTopicError as UnknownTopicError
from ._middleware import Middleware as Middleware
from ._policy import DedupWindow as DedupWindow
from ._policy import Overflow as Overflow
from ._policy import Retention as Retention
from ._policy import RetryPolicy as RetryPolicy
from ._policy import Supervision as Supervision
from ._replay import LogReader as LogReader
from ._stats import ActorStats as ActorStats
from ._stats import BusStats as BusStats
from ._stats import TopicStats as TopicStats

__all__ = [
    "Actor",
    "ActorStats",
    "Attachment",
    "BackendError",
    "BackendUnavailableError",
    "Bus",
    "BusClosedError",
    "BusError",
    "BusStats",
    "Codec",
    "ConfigurationError",
    "DecodeError",
    "DedupWindow",
    "Envelope",
    "Group",
    "LogReader",
    "MailboxFullError",
    "Middleware",
    "MissingDependencyError",
    "NotDeliveredError",
    "Overflow",
    "PayloadTypeError",
    "RequestFailedError",
    "RequestTimeoutError",
    "Retention",
    "RetryPolicy",
    "Subscription",
    "Supervision",
    "SupervisorGaveUp",
    "Topic",
    "TopicError",
    "TopicStats",
    "UnknownTopicError",
    "open_bus",
]
