"""Broker URLs: one string naming a broker, turned into the bridge that speaks to it.

``from_url(url, name=None, **options)`` is what the ``bus`` command line (and any
application that keeps its broker in one setting) uses:

==========================================  ===========================================
``memory://`` (or ``memory://NAME``)        a :class:`~bus.testing.LoopbackBridge` over
                                            an in-process broker, one per NAME in this
                                            process: nothing leaves the process
``kafka://host:port[,host:port]``           :class:`bridges.kafka.KafkaBridge`
``amqp://user:password@host:port/vhost``    :class:`bridges.rabbitmq.RabbitMQBridge`
(and ``amqps://``)                          (the URL is aio-pika's own)
``kinesis://region?endpoint=http://h:p``    :class:`bridges.kinesis.KinesisBridge`
``pubsub://project?emulator=host:port``     :class:`bridges.pubsub.PubSubBridge`
==========================================  ===========================================

*options* go to the bridge's constructor (``group_id=``, ``initial_position=``...). A
URL that does not fit raises :class:`~bus.ConfigurationError` naming what is wrong and
the accepted forms; its password is masked in the message, as everywhere else.
Importing this module loads no broker client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bus import ConfigurationError
from bus.abc import Bridge, mask_url

__all__ = [
    "FORMS", "KEEP_GROUP", "SCHEMES", "create_kept_topic", "delete_kept_topic", "from_url",
    "kept_queue", "memory_broker",
]

FORMS = (
    "memory://",
    "kafka://host:port[,host:port]",
    "amqp://user:password@host:port/vhost (or amqps://)",
    "kinesis://region?endpoint=http://host:port",
    "pubsub://project?emulator=host:port",
)
SCHEMES = ("memory", "kafka", "amqp", "amqps", "kinesis", "pubsub")

_DEFAULT_PORTS = {"kafka": 9092, "amqp": 5672, "amqps": 5671}
_QUERY = {  # the query parameters each scheme takes
    "memory": (),
    "kafka": (),
    "amqp": ("exchange",),
    "amqps": ("exchange",),
    "kinesis": ("endpoint",),
    "pubsub": ("emulator",),
}

_brokers: dict[str, Any] = {}


def memory_broker(name: str = "") -> Any:
    """The in-process broker behind ``memory://NAME`` (made on first use)."""
    from bus.testing import LoopbackBroker

    broker = _brokers.get(name)
    if broker is None:
        broker = _brokers[name] = LoopbackBroker(partitions=1)  # one process: one order
    return broker


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"bad broker URL {mask_url(url)!r}: {why}; use one of: {', '.join(FORMS)}"
    )


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """The bridge for broker *url*, named *name* (default: the scheme's broker name)."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "it has no scheme")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {scheme!r}")
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    unknown = sorted(set(query) - set(_QUERY[scheme]))
    if unknown:
        allowed = ", ".join(_QUERY[scheme]) or "none"
        raise _bad(url, f"unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})")
    if parts.fragment:
        raise _bad(url, "a fragment (#...) means nothing here")
    if scheme == "memory":
        return _memory(url, parts.netloc, parts.path, name, options)
    if scheme == "kafka":
        return _kafka(url, parts.netloc, parts.path, name, options)
    if scheme in ("amqp", "amqps"):
        return _amqp(url, scheme, parts, query, name, options)
    if scheme == "kinesis":
        return _kinesis(url, parts.netloc, parts.path, query, name, options)
    return _pubsub(url, parts.netloc, parts.path, query, name, options)


def _no_path(url: str, path: str) -> None:
    if path not in ("", "/"):
        raise _bad(url, f"unexpected path {path!r}")


def _memory(url: str, netloc: str, path: str, name: str | None, options: Any) -> Bridge:
    from bus.testing import LoopbackBridge

    _no_path(url, path)
    if "@" in netloc or ":" in netloc:
        raise _bad(url, "memory:// takes at most a name, no user, password or port")
    return LoopbackBridge(memory_broker(netloc), name or "memory", **options)


def _hostport(url: str, text: str, default_port: int) -> str:
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        host, port = text, str(default_port)
    if not host:
        raise _bad(url, f"no host in {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"port {port!r} is not a number from 1 to 65535")
    return f"{host}:{int(port)}"


def _kafka(url: str, netloc: str, path: str, name: str | None, options: Any) -> Bridge:
    from bridges.kafka import KafkaBridge

    _no_path(url, path)
    if "@" in netloc:
        raise _bad(url, "credentials go in options (sasl_plain_username=...), not the URL")
    servers = [s.strip() for s in netloc.split(",")]
    if not any(servers):
        raise _bad(url, "no bootstrap server")
    bootstrap = ",".join(_hostport(url, s, _DEFAULT_PORTS["kafka"]) for s in servers)
    return KafkaBridge(bootstrap, name=name or "kafka", **options)


def _amqp(
    url: str, scheme: str, parts: Any, query: dict[str, str], name: str | None, options: Any
) -> Bridge:
    from bridges.rabbitmq import RabbitMQBridge

    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise _bad(url, "the port is not a number from 1 to 65535") from None
    if not host:
        raise _bad(url, "no host")
    del port  # checked; aio-pika reads it from the URL
    if "exchange" in query:
        if not query["exchange"]:
            raise _bad(url, "exchange= is empty")
        options.setdefault("exchange", query["exchange"])
    plain = url.split("?", 1)[0]
    return RabbitMQBridge(plain, name=name or "rabbitmq", **options)


def _kinesis(
    url: str, netloc: str, path: str, query: dict[str, str], name: str | None, options: Any
) -> Bridge:
    from bridges.kinesis import KinesisBridge

    _no_path(url, path)
    if "@" in netloc or ":" in netloc:
        raise _bad(url, "the host part is the AWS region (eu-west-1), credentials come "
                        "from the AWS environment")
    endpoint = query.get("endpoint")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise _bad(url, f"endpoint {endpoint!r} must be an http:// or https:// URL")
    return KinesisBridge(
        name=name or "kinesis", region=netloc or None, endpoint_url=endpoint, **options
    )


def _pubsub(
    url: str, netloc: str, path: str, query: dict[str, str], name: str | None, options: Any
) -> Bridge:
    from bridges.pubsub import PubSubBridge

    _no_path(url, path)
    if "@" in netloc or ":" in netloc:
        raise _bad(url, "the host part is the Google Cloud project id")
    emulator = query.get("emulator")
    if emulator is not None:
        emulator = _hostport(url, emulator, 8085)
    return PubSubBridge(
        netloc or None, name=name or "pubsub", emulator_host=emulator, **options
    )


KEEP_GROUP = "bus-cli"
"""The consumer group whose queue (RabbitMQ) or subscription (Pub/Sub) keeps a topic's
messages for ``bus tail --from-beginning``."""


def kept_queue(topic: str, exchange: str = "trio-bus", group: str = KEEP_GROUP) -> str:
    """RabbitMQ: the durable queue that keeps *topic*'s messages for *group*."""
    return f"{exchange}.{group}.{topic}"


def _kind(bridge: Bridge) -> str:
    return type(bridge).__module__.split(".")[1] if "." in type(bridge).__module__ else ""


async def create_kept_topic(bridge: Bridge, name: str, group: str = KEEP_GROUP) -> None:
    """Create topic *name* on *bridge*'s broker so that it keeps its messages for *group*
    from now on, even while nobody reads: Kafka and Kinesis keep a log anyway (the topic or
    stream is created); RabbitMQ gets a durable queue bound to it (:func:`kept_queue`);
    Pub/Sub a subscription of *group*. *bridge* must be open."""
    kind = _kind(bridge)
    if kind == "rabbitmq":
        exchange = getattr(bridge, "exchange", "trio-bus")
        await bridge.create_topic(name, queue=kept_queue(name, exchange, group))
    elif kind == "pubsub":
        await bridge.create_topic(name, group=group)
    else:
        await bridge.create_topic(name)


async def delete_kept_topic(bridge: Bridge, name: str, group: str = KEEP_GROUP) -> None:
    """Delete topic *name* and what :func:`create_kept_topic` made for it."""
    if _kind(bridge) == "rabbitmq":
        queue = kept_queue(name, getattr(bridge, "exchange", "trio-bus"), group)
        await bridge.delete_topic(name, queue=queue)  # type: ignore[call-arg]
        await bridge.delete_queue(queue)  # type: ignore[attr-defined]
    else:
        await bridge.delete_topic(name)
