"""Broker URLs: one string naming a broker, turned into the bridge that speaks to it.

``from_url(url, name=None, **options)`` is what the ``bus`` command line (and any
application that keeps its broker in one setting) uses. ``memory://`` (or
``memory://NAME``) is a :class:`~bus.testing.LoopbackBridge` over an in-process broker,
one per NAME in this process: nothing leaves the process. Every other scheme belongs to a
registered broker (``bus.abc.brokers()``, each broker's ``PLUGIN``), whose ``from_url``
reads the rest of the URL with the helpers here (:func:`parse`, :func:`hostport`,
:func:`bad`). The forms our brokers take:

==========================================  ===========================================
``kafka://host:port[,host:port]``           :class:`bridges.kafka.KafkaBridge`
``amqp://user:password@host:port/vhost``    :class:`bridges.rabbitmq.RabbitMQBridge`
(and ``amqps://``)                          (the URL is aio-pika's own)
``kinesis://region?endpoint=http://h:p``    :class:`bridges.kinesis.KinesisBridge`
``pubsub://project?emulator=host:port``     :class:`bridges.pubsub.PubSubBridge`
==========================================  ===========================================

*options* go to the bridge's constructor (``group_id=``, ``initial_position=``...). A
URL that does not fit raises :class:`~bus.ConfigurationError` naming what is wrong and
the accepted forms of every registered broker; its password is masked in the message, as
everywhere else. Importing this module loads no broker client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from bus import ConfigurationError
from bus.abc import Bridge, BrokerPlugin, brokers, mask_url

__all__ = [
    "KEEP_GROUP", "BrokerURL", "bad", "create_kept_topic", "delete_kept_topic", "forms",
    "from_url", "hostport", "memory_broker", "parse", "plugin_for", "schemes", "url_query",
]

MEMORY_FORM = "memory://"

_brokers: dict[str, Any] = {}


def forms() -> tuple[str, ...]:
    """Every accepted URL form: ``memory://`` and each registered broker's."""
    return (MEMORY_FORM, *(form for p in brokers().values() for form in p.url_forms))


def schemes() -> tuple[str, ...]:
    """Every URL scheme :func:`from_url` takes."""
    return ("memory", *(scheme for p in brokers().values() for scheme in p.schemes))


def plugin_for(url: str) -> BrokerPlugin | None:
    """The registered broker whose scheme *url* has (None for ``memory://`` or none)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return next((p for p in brokers().values() if scheme in p.schemes), None)


def memory_broker(name: str = "") -> Any:
    """The in-process broker behind ``memory://NAME`` (made on first use)."""
    from bus.testing import LoopbackBroker

    broker = _brokers.get(name)
    if broker is None:
        broker = _brokers[name] = LoopbackBroker(partitions=1)  # one process: one order
    return broker


def bad(url: str, why: str) -> ConfigurationError:
    """The one error for a URL that does not fit: what is wrong, and the accepted forms."""
    return ConfigurationError(
        f"bad broker URL {mask_url(url)!r}: {why}; use one of: {', '.join(forms())}"
    )


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """A URL split once, its query checked against what its broker takes."""

    url: str
    scheme: str
    parts: SplitResult
    query: dict[str, str]

    @property
    def netloc(self) -> str:
        return self.parts.netloc

    def no_path(self) -> None:
        """Raise :func:`bad` if the URL has a path (most brokers take none)."""
        if self.parts.path not in ("", "/"):
            raise bad(self.url, f"unexpected path {self.parts.path!r}")


def parse(url: str, query: Sequence[str] = ()) -> BrokerURL:
    """Split *url*; raise :func:`bad` if it has a query parameter not in *query*, or a
    fragment."""
    scheme = url.split("://", 1)[0].lower()
    try:
        parts = urlsplit(url)
        found = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise bad(url, str(exc)) from None
    unknown = sorted(set(found) - set(query))
    if unknown:
        allowed = ", ".join(query) or "none"
        raise bad(url, f"unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})")
    if parts.fragment:
        raise bad(url, "a fragment (#...) means nothing here")
    return BrokerURL(url, scheme, parts, found)


def url_query(url: str) -> dict[str, str]:
    """The query parameters of *url* (``?queue=NAME`` of an ``amqp://`` URL...); empty if
    it has none or does not parse (:func:`from_url` says what is wrong with it)."""
    try:
        return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return {}


def hostport(url: str, text: str, default_port: int) -> str:
    """``host:port`` from *text* (``host`` alone takes *default_port*), or :func:`bad`."""
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        host, port = text, str(default_port)
    if not host:
        raise bad(url, f"no host in {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise bad(url, f"port {port!r} is not a number from 1 to 65535")
    return f"{host}:{int(port)}"


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """The bridge for broker *url*, named *name* (default: the scheme's broker name)."""
    if not isinstance(url, str) or "://" not in url:
        raise bad(str(url), "it has no scheme")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        return _memory(parse(url), name, options)
    plugin = plugin_for(url)
    if plugin is None:
        raise bad(url, f"unknown scheme {scheme!r}")
    return plugin.from_url(url, name=name, **options)


def _memory(url: BrokerURL, name: str | None, options: Any) -> Bridge:
    from bus.testing import LoopbackBridge

    url.no_path()
    if "@" in url.netloc or ":" in url.netloc:
        raise bad(url.url, "memory:// takes at most a name, no user, password or port")
    return LoopbackBridge(memory_broker(url.netloc), name or "memory", **options)


KEEP_GROUP = "bus-cli"
"""The consumer group whose queue (RabbitMQ) or subscription (Pub/Sub) keeps a topic's
messages for ``bus tail --from-beginning``."""


async def create_kept_topic(bridge: Bridge, name: str, group: str = KEEP_GROUP) -> None:
    """Create topic *name* on *bridge*'s broker so that it keeps its messages for *group*
    from now on, even while nobody reads. *bridge* must be open. A broker that keeps a
    log anyway (Kafka, Kinesis) creates the topic or stream; one that keeps messages per
    reader has a ``create_kept_topic(name, group)`` method of its own (RabbitMQ: a
    durable queue bound to the topic; Pub/Sub: *group*'s subscription)."""
    keep = getattr(bridge, "create_kept_topic", None)
    if keep is not None:
        await keep(name, group)
    else:
        await bridge.create_topic(name)


async def delete_kept_topic(bridge: Bridge, name: str, group: str = KEEP_GROUP) -> None:
    """Delete topic *name* and what :func:`create_kept_topic` made for it."""
    unkeep = getattr(bridge, "delete_kept_topic", None)
    if unkeep is not None:
        await unkeep(name, group)
    else:
        await bridge.delete_topic(name)
