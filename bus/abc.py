"""What broker implementers use: the bridge contract, its port, and header names.

Applications use :mod:`bus`; a module that connects a broker uses this one, the way
``trio.abc`` sits apart from what trio applications call. The whole contract::

    Bridge                         one broker attachment; the bus owns its life
      open()                       connect; bounded by attach(connect_timeout=)
      export(batch, port)          egress: send, wait for the broker's confirmation
                                   -> None (all confirmed) or one result per record
      ingest(port, task_status)    ingress: consume until cancelled, port.deliver(...)
                                   each message, ack it when its on_done callback fires
      aclose()                     flush acks/commits of done messages, close the client
      create_topic / delete_topic / list_topics / health      admin
      features                     a Features record: what the broker can do

    Port                           what a bridge may do with the bus (made by the bus)
      encode(env) -> bytes         the payload with its topic's codec
      wants(topic) -> bool         does an import pattern of this attachment match?
      deliver(...) -> Envelope     decode + publish; waits while a mailbox is full
      deliver_nowait(...)          the same, or raises trio.WouldBlock and delivers
                                   nothing: the bridge's signal to pause its consumer

A broker module may also offer the seed facade's backend by subclassing
``bus.events.BridgeAdapter``: one generic adapter over its bridge on a private bus, so the
facade and ``bus.attach`` share one producer and one consumer per broker. (It was
``bus.abc.BridgeAdapter`` before the facade moved to ``bus/events/``; the core may not
import the facade, so no alias is left here.)

Registering a broker (``bus/_plugins.py`` has the whole contract)::

    BrokerPlugin                   one broker's registration: name, URL schemes and
                                   forms, from_url, bridge class, Features, facade adapter
    brokers() -> {name: plugin}    every plugin of entry-point group "trio_bus.brokers"

What a broker module needs besides, so that it imports nothing private of the core:
``get_logger`` (the bus's structlog-or-silent logger), ``redact``/``mask_url``/
``mask_setting``/``file_secrets`` (secrets out of messages and logs), ``validate_topic``/
``validate_pattern``/``is_pattern``/``Pattern`` (the topic syntax), ``RawCodec``/
``codec_for`` (payload codecs), ``describe`` (a value's type for an error message),
``EXPORT_RETRY`` (``attach``'s default export retry), ``Rejected`` (an export result) and
``ClosesOnExit`` (``async with`` for objects that end with ``aclose()``).

A message delivered through a port is *done* when every subscriber that received it
handled it or dead-lettered it (and every export of it was confirmed by its broker). The
``on_done`` callback given to ``deliver`` is then called once, in trio's thread, with the
message's :class:`~bus.Delivery`; the bridge acknowledges (AMQP), commits (Kafka: the
highest offset below which everything is done), or checkpoints (Kinesis) only then, so a
process killed at any instant loses nothing: the broker redelivers what was not done.
"""

from __future__ import annotations

from ._attach import EXPORT_RETRY as EXPORT_RETRY
from ._bridge import Bridge as Bridge
from ._bridge import ExportResults as ExportResults
from ._bridge import Features as Features
from ._bridge import Port as Port
from ._closing import ClosesOnExit as ClosesOnExit
from ._codec import RawCodec as RawCodec
from ._codec import codec_for as codec_for
from ._done import Delivery as Delivery
from ._done import Failure as Failure
from ._envelope import H_ATTEMPTS as H_ATTEMPTS
from ._envelope import H_CORRELATION_ID as H_CORRELATION_ID
from ._envelope import H_DEAD_LETTER_ORIGIN as H_DEAD_LETTER_ORIGIN
from ._envelope import H_ERROR as H_ERROR
from ._envelope import H_ERROR_TYPE as H_ERROR_TYPE
from ._envelope import H_FAILED_SUBSCRIBER as H_FAILED_SUBSCRIBER
from ._envelope import H_IDEMPOTENCY_KEY as H_IDEMPOTENCY_KEY
from ._envelope import H_ORIGIN as H_ORIGIN
from ._envelope import H_ORIGINAL_TOPIC as H_ORIGINAL_TOPIC
from ._envelope import H_REPLY_TO as H_REPLY_TO
from ._envelope import describe as describe
from ._errors import Rejected as Rejected
from ._log import get_logger as get_logger
from ._offsets import OffsetTracker as OffsetTracker
from ._plugins import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._plugins import BrokerPlugin as BrokerPlugin
from ._plugins import brokers as brokers
from ._routing import Pattern as Pattern
from ._routing import is_pattern as is_pattern
from ._routing import validate_pattern as validate_pattern
from ._routing import validate_topic as validate_topic
from ._secrets import file_secrets as file_secrets
from ._secrets import mask_setting as mask_setting
from ._secrets import mask_url as mask_url
from ._secrets import redact as redact
from ._tiers import H_RETRY_ATTEMPT as H_RETRY_ATTEMPT
from ._tiers import H_RETRY_DUE as H_RETRY_DUE
from ._tiers import H_RETRY_ORIGIN as H_RETRY_ORIGIN
from ._tiers import H_RETRY_SUBSCRIBER as H_RETRY_SUBSCRIBER
from ._tiers import H_RETRY_TIER as H_RETRY_TIER
from ._tiers import tier_topic as tier_topic

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXPORT_RETRY",
    "H_ATTEMPTS",
    "H_CORRELATION_ID",
    "H_DEAD_LETTER_ORIGIN",
    "H_ERROR",
    "H_ERROR_TYPE",
    "H_FAILED_SUBSCRIBER",
    "H_IDEMPOTENCY_KEY",
    "H_ORIGIN",
    "H_ORIGINAL_TOPIC",
    "H_REPLY_TO",
    "H_RETRY_ATTEMPT",
    "H_RETRY_DUE",
    "H_RETRY_ORIGIN",
    "H_RETRY_SUBSCRIBER",
    "H_RETRY_TIER",
    "Bridge",
    "BrokerPlugin",
    "ClosesOnExit",
    "Delivery",
    "ExportResults",
    "Failure",
    "Features",
    "OffsetTracker",
    "Pattern",
    "Port",
    "RawCodec",
    "Rejected",
    "brokers",
    "codec_for",
    "describe",
    "file_secrets",
    "get_logger",
    "is_pattern",
    "mask_setting",
    "mask_url",
    "redact",
    "tier_topic",
    "validate_pattern",
    "validate_topic",
]
