"""AsyncAPI 3.0.0 documents generated from a bus: its typed topics, subscriptions and
bridges, with the CloudEvents mapping, keys as ordering and the dead-letter routing.

    doc = bus.asyncapi.document(bus, describe=bridges.asyncapi_side)
    json.dumps(doc)

``bus asyncapi APP`` prints one; ``docs/asyncapi.md`` says what maps to what and which
``x-trio-bus-...`` extensions carry what AsyncAPI has no field for. This package only
re-exports; the code lives in its private modules.
"""

from ._broker import BrokerSide as BrokerSide
from ._broker import Describe as Describe
from ._document import ASYNCAPI_VERSION as ASYNCAPI_VERSION
from ._document import BridgeSpec as BridgeSpec
from ._document import document as document

__all__ = ["ASYNCAPI_VERSION", "BridgeSpec", "BrokerSide", "Describe", "document"]
