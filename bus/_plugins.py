"""The broker registry: every broker registers itself once, and everyone reads that.

A broker package declares one entry point in the ``trio_bus.brokers`` group, named like
its broker and pointing at a :class:`BrokerPlugin` (``bus.abc.BrokerPlugin``)::

    [project.entry-points."trio_bus.brokers"]
    nats = "trio_bus_nats:PLUGIN"      # a package of one's own, for a broker named nats

:func:`brokers` loads the group once per process and returns the plugins by name. The
service (``[brokers.NAME] type = "nats"``), the command line's URLs
(``from_url`` of the bridges package), the seed facade's backends (``EventFactory``) and the docs'
Characteristics tables all read it; nothing else in ``bus/`` names a broker. Adding a
broker is one package and one entry point.

The contract a plugin keeps:

- loading it (importing the module its entry point names) imports no broker client
  library: the heavy imports happen when a bridge or adapter is made, and a missing
  library then raises :class:`~bus.MissingDependencyError` naming ``pip install
  'trio-bus[EXTRA]'`` (the plugin's :attr:`~BrokerPlugin.extra`);
- :attr:`~BrokerPlugin.name` equals its entry point's name, and no two plugins share a
  name or a URL scheme;
- ``from_url(url, *, name=None, **options)`` returns a bridge for a URL of one of its
  :attr:`~BrokerPlugin.schemes` (options go to the bridge's constructor), or raises
  :class:`~bus.ConfigurationError` saying what is wrong with the URL (the caller adds
  the accepted :attr:`~BrokerPlugin.url_forms` of every plugin);
- the bridge class takes the service file's options as constructor keywords, except
  those in :attr:`~BrokerPlugin.not_in_file`.

A plugin that fails to load, or loads something that is not a :class:`BrokerPlugin`,
makes :func:`brokers` raise one :class:`~bus.ConfigurationError` naming that entry point
(:class:`~bus.MissingDependencyError` when an import failed), never a bare traceback.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._bridge import Bridge, Features
from ._envelope import describe
from ._errors import ConfigurationError, MissingDependencyError

__all__ = ["ENTRY_POINT_GROUP", "BrokerPlugin", "brokers"]

ENTRY_POINT_GROUP = "trio_bus.brokers"
"""The entry-point group broker packages declare their :class:`BrokerPlugin` in."""

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")

TailOptions = Callable[[str, bool, str], tuple[dict[str, Any], str]]
"""``(topic, from_beginning, fresh) -> (options, private)``: see
:attr:`BrokerPlugin.tail_options`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerPlugin:
    """One broker's registration: what the service, the URLs, the facade and the docs
    need to know of it (see the module docstring for the contract)."""

    name: str
    """The broker's name: its entry point's, the service's ``type = "..."``, the facade's
    backend (``EVENT_TYPE``). Lower case: ``kafka``."""
    title: str
    """How the docs name it: ``"Kafka"``, ``"Kinesis (against kinesis-mock)"``."""
    schemes: tuple[str, ...]
    """The URL schemes ``from_url`` takes: ``("kafka",)``, ``("amqp", "amqps")``."""
    url_forms: tuple[str, ...]
    """The accepted URL forms, for error messages: ``("kafka://host:port[,host:port]",)``."""
    from_url: Callable[..., Bridge]
    """``from_url(url, *, name=None, **options)``: the bridge a URL names."""
    bridge: type[Bridge] | str
    """The :class:`~bus.abc.Bridge` class, or ``"module:Class"`` to import it when needed
    (a string keeps loading the plugin free of the client library)."""
    features: Features
    """What the broker can do (the docs' Characteristics table is made from it)."""
    extra: str = ""
    """The ``pip install 'trio-bus[EXTRA]'`` extra its client library comes with."""
    adapter: type | str | None = None
    """The seed facade's backend (a ``bus.events.EventAdapter`` subclass, or
    ``"module:Class"``), or None if it offers none."""
    facade_settings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """What the seed facade's settings give its adapter: ``{adapter keyword: attribute of
    bus.events.Settings}`` (``{"bootstrap_servers": "kafka_server"}``: ``KAFKA_SERVER``
    fills ``bootstrap_servers``); only settings that are set are passed."""
    keep_key: str = ""
    """The ``[service.dead_letter]`` key that names where this broker keeps the service's
    dead letters (``"queue"`` for RabbitMQ, ``"group"`` for Pub/Sub), or ``""``."""
    keep_options: Callable[[Any, str, str | None], Mapping[str, Any]] | None = None
    """``keep_options(bridge, topic, place)``: the ``create_topic`` options that make the
    broker keep what is published to *topic* while nobody reads it, at *place* (the
    ``keep_key`` value of the service file) or the broker's default when None (RabbitMQ:
    a queue bound to the topic; Pub/Sub: a subscription). None: the broker keeps a
    topic's messages anyway (Kafka's log, a Kinesis stream)."""
    not_in_file: frozenset[str] = frozenset({"name"})
    """Bridge constructor parameters a service file cannot give (objects, the name)."""
    file_types: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The type a service file may give for a parameter whose annotation is wider
    (``{"checkpoints": str | None}``); the annotation for the others."""
    lists_topics: bool = True
    """``list_topics()`` answers (AMQP cannot list a broker's bindings)."""
    tail_options: TailOptions | None = None
    """For ``bus tail``: ``(topic, from_beginning, fresh)`` → the bridge constructor's
    options for a tail (*fresh* is a unique name for a private group or queue), and the
    private queue or subscription to remove afterwards (``""`` for none)."""
    tail_cleanup: Callable[[Any, str], Awaitable[None]] | None = None
    """``await tail_cleanup(bridge, private)`` removes what ``tail_options`` made (the
    bridge is open)."""

    def __post_init__(self) -> None:
        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(f"broker plugin {self.name!r}: {why}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"broker plugin name {self.name!r} must be lower case letters, digits and "
                f"'_', starting with a letter (it is the service's type = \"...\")"
            )
        if not self.schemes or not all(isinstance(s, str) and _SCHEME.match(s)
                                       for s in self.schemes):
            raise bad(f"schemes must be lower-case URL schemes, got {self.schemes!r}")
        if not self.url_forms:
            raise bad("url_forms must show at least one accepted URL")
        for what, ref in (("bridge", self.bridge), ("adapter", self.adapter)):
            if isinstance(ref, str) and not _REF.match(ref):
                raise bad(f"{what} {ref!r} must be a class or 'module:Class'")
        if not isinstance(self.features, Features):
            raise bad(f"features must be a bus.abc.Features, got {describe(self.features)}")

    def bridge_class(self) -> type[Bridge]:
        """The bridge class (imported now if it was given as ``"module:Class"``)."""
        cls = _resolve(self, "bridge", self.bridge)
        if not (isinstance(cls, type) and issubclass(cls, Bridge)):
            raise ConfigurationError(
                f"broker plugin {self.name!r}: bridge {self.bridge!r} is not a "
                f"bus.abc.Bridge subclass"
            )
        return cls

    def adapter_class(self) -> type | None:
        """The facade backend's class, or None (imported now if given as a string)."""
        return None if self.adapter is None else _resolve(self, "adapter", self.adapter)


def _resolve(plugin: BrokerPlugin, what: str, ref: Any) -> Any:
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        hint = f": pip install 'trio-bus[{plugin.extra}]'" if plugin.extra else ""
        raise MissingDependencyError(
            f"broker {plugin.name!r}: its {what} {ref!r} needs {exc.name or module}{hint}"
        ) from exc
    except AttributeError:
        raise ConfigurationError(
            f"broker plugin {plugin.name!r}: {what} {ref!r} does not exist"
        ) from None
    return found


def brokers() -> Mapping[str, BrokerPlugin]:
    """Every registered broker, by name (loaded once per process; see the module).

    Raises :class:`~bus.ConfigurationError` naming the entry point of a plugin that fails
    to load or is not a :class:`BrokerPlugin`, or two plugins that claim one name or URL
    scheme.
    """
    return _load()


@functools.cache
def _load() -> Mapping[str, BrokerPlugin]:
    found: dict[str, tuple[BrokerPlugin, str]] = {}
    schemes: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r}"
        try:
            plugin = entry.load()
        except ImportError as exc:
            raise MissingDependencyError(
                f"broker plugin {where} failed to load: {type(exc).__name__}: {exc}; a "
                f"plugin must load without its client library (reinstall the package that "
                f"declares it, or remove that entry point)"
            ) from exc
        except Exception as exc:
            raise ConfigurationError(
                f"broker plugin {where} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(plugin, BrokerPlugin):
            raise ConfigurationError(
                f"broker plugin {where} is {describe(plugin)}, not a bus.abc.BrokerPlugin"
            )
        if plugin.name != entry.name:
            raise ConfigurationError(
                f"broker plugin {where} is named {plugin.name!r}: name the entry point "
                f"like its plugin"
            )
        if plugin.name in found:
            raise ConfigurationError(
                f"two broker plugins are named {plugin.name!r}: {found[plugin.name][1]!r} "
                f"and {entry.value!r}; uninstall one"
            )
        for scheme in plugin.schemes:
            if scheme in schemes:
                raise ConfigurationError(
                    f"URL scheme {scheme!r} is claimed by broker plugins {schemes[scheme]!r} "
                    f"and {plugin.name!r}; uninstall one"
                )
            schemes[scheme] = plugin.name
        found[plugin.name] = (plugin, entry.value)
    return MappingProxyType({name: found[name][0] for name in sorted(found)})
