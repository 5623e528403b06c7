"""trio-bus bridges: one module per broker, each a :class:`bus.Bridge`.

Importing this package loads no broker SDK; each broker module imports its client
library when a bridge is constructed. The broker modules arrive with the bridges issue;
the contract they implement (``Bridge.export`` and ``Bridge.ingest``) is in ``bus``.
"""

__all__: list[str] = []
