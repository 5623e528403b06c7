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

A broker module also offers the seed facade's backend (``bus.events``) by subclassing
:class:`BridgeAdapter`: one generic adapter over its bridge on a private bus, so the
facade and ``bus.attach`` share one producer and one consumer per broker.

A message delivered through a port is *done* when every subscriber that received it
handled it or dead-lettered it (and every export of it was confirmed by its broker). The
``on_done`` callback given to ``deliver`` is then called once, in trio's thread, with the
message's :class:`~bus.Delivery`; the bridge acknowledges (AMQP), commits (Kafka: the
highest offset below which everything is done), or checkpoints (Kinesis) only then, so a
process killed at any instant loses nothing: the broker redelivers what was not done.
"""

from __future__ import annotations

from ._bridge import Bridge as Bridge
from ._bridge import ExportResults as ExportResults
from ._bridge import Features as Features
from ._bridge import Port as Port
from ._bridge import Rejected as Rejected
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
from ._facade._bridge_adapter import BridgeAdapter as BridgeAdapter
from ._offsets import OffsetTracker as OffsetTracker

__all__ = [
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
    "Bridge",
    "BridgeAdapter",
    "Delivery",
    "ExportResults",
    "Failure",
    "Features",
    "OffsetTracker",
    "Port",
    "Rejected",
]
