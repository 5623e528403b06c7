"""trio-bus bridges: one package per broker, each registered once (its ``PLUGIN``, an
entry point of group ``trio_bus.brokers``, read with ``bus.abc.brokers()``), and
``bridges.redis``, the seed facade's Redis Streams adapter (an ``EventAdapter``).

Importing this package, or loading the registry, imports no broker SDK; each broker
package imports its client library when a bridge is made. What this package itself
offers (re-exports only): :func:`from_url` (``kafka://host:port`` and the others: the
registry's URL schemes, plus ``memory://``; see ``bridges._urls``), the topics a
``bus topics create`` keeps (:func:`create_kept_topic`, :func:`delete_kept_topic`), and
the runtime that runs an asyncio client inside trio (:func:`open_runtime`), and how
each broker looks in an AsyncAPI document (:func:`asyncapi_side`, ``bus.asyncapi``). What every
broker package shares is in ``bridges._common``; ``docs/bridges.md`` says what a new
broker must provide.
"""

from ._asyncapi import asyncapi_side as asyncapi_side
from ._runtime import KINDS as KINDS
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeKind as RuntimeKind
from ._runtime import open_runtime as open_runtime
from ._runtime import start_runtime as start_runtime
from ._urls import create_kept_topic as create_kept_topic
from ._urls import delete_kept_topic as delete_kept_topic
from ._urls import from_url as from_url
from ._urls import url_query as url_query

__all__ = [
    "KINDS",
    "Runtime",
    "RuntimeKind",
    "asyncapi_side",
    "create_kept_topic",
    "delete_kept_topic",
    "from_url",
    "open_runtime",
    "start_runtime",
    "url_query",
]
