"""The seed's :class:`EventFactory`: backend names → adapter classes.

``memory`` is built in (it is the bus). Every other backend is a registered broker
(``bus.abc.brokers()``, entry-point group ``trio_bus.brokers``) whose plugin offers a
facade adapter (:attr:`~bus.abc.BrokerPlugin.adapter`), so ``bus`` names none of its
plugins; a plugin's :attr:`~bus.abc.BrokerPlugin.facade_settings` says which settings
(``KAFKA_SERVER``...) fill its adapter's options. The registry is read on first use
only: ``import bus.events`` imports no broker module, and a backend whose client library
is missing says so, with the ``pip install`` line, when its adapter is created.
``EventFactory.register_adapter(name, cls)`` adds or replaces one at run time, as the
seed does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from bus import ConfigurationError
from bus.abc import ENTRY_POINT_GROUP, brokers

from ._adapter import EventAdapter
from ._memory_adapter import InMemoryAdapter
from ._settings import Settings, settings

__all__ = ["EventFactory"]


def _offered() -> list[str]:
    """The registered brokers that offer a facade adapter."""
    return [name for name, plugin in brokers().items() if plugin.adapter is not None]


def _load(name: str) -> type[EventAdapter]:
    cls = brokers()[name].adapter_class()  # MissingDependencyError names the extra
    if not (isinstance(cls, type) and issubclass(cls, EventAdapter)):
        raise ConfigurationError(
            f"event backend {name!r}: broker plugin {name!r} gives adapter "
            f"{brokers()[name].adapter!r}, not an EventAdapter subclass"
        )
    return cls


class EventFactory:
    """Creates adapters by backend name. Register your own with :meth:`register_adapter`."""

    _adapters: ClassVar[dict[str, type[EventAdapter]]] = {"memory": InMemoryAdapter}
    """Registered classes; the brokers' adapters join it when first used."""
    _settings: ClassVar[dict[str, Mapping[str, str]]] = {}
    """``register_adapter(..., settings=)`` of the registered classes."""

    @classmethod
    def register_adapter(
        cls, name: str, adapter: type[EventAdapter], *, settings: Mapping[str, str] | None = None
    ) -> None:
        """Make ``adapter`` available as ``name``, replacing any earlier registration
        (a registered broker's adapter of that name included). *settings* maps the
        adapter's keywords to attributes of :class:`Settings` that fill them
        (``{"redis_url": "redis_url"}``: ``REDIS_URL`` fills ``redis_url``); without it,
        a registered broker's name keeps its plugin's ``facade_settings``.

        Raises:
            ConfigurationError: ``name`` is empty or ``adapter`` is not an
                :class:`EventAdapter` subclass.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"adapter name must be a non-empty str, got {name!r}")
        if not (isinstance(adapter, type) and issubclass(adapter, EventAdapter)):
            raise ConfigurationError(
                f"register_adapter({name!r}, ...) needs an EventAdapter subclass, got {adapter!r}"
            )
        unknown = sorted(set((settings or {}).values()) - set(Settings.field_names()))
        if unknown:
            raise ConfigurationError(
                f"register_adapter({name!r}, ..., settings=...): no setting named "
                f"{', '.join(map(repr, unknown))}; settings are: "
                f"{', '.join(Settings.field_names())}"
            )
        key = name.strip().lower()
        cls._adapters[key] = adapter
        if settings is None:  # a broker's own name keeps its plugin's settings
            cls._settings.pop(key, None)
        else:
            cls._settings[key] = MappingProxyType(dict(settings))

    @classmethod
    def available(cls) -> list[str]:
        """Backend names, sorted: registered ones and the registered brokers' adapters."""
        return sorted(set(cls._adapters) | set(_offered()))

    @classmethod
    def adapter_class(cls, name: str) -> type[EventAdapter]:
        """The adapter class of backend ``name``, loading its broker's if needed.

        Raises:
            ConfigurationError: no backend of that name.
            MissingDependencyError: its module needs a library that is not installed.
        """
        key = name.strip().lower() if isinstance(name, str) else name
        adapter = cls._adapters.get(key)
        if adapter is not None:
            return adapter
        if not isinstance(key, str) or key not in _offered():
            raise ConfigurationError(
                f"unknown event backend {name!r}; known: {', '.join(cls.available())}. "
                "Register another with EventFactory.register_adapter(name, AdapterClass), "
                f"or install a broker package that declares a bus.abc.BrokerPlugin with an "
                f"adapter in the {ENTRY_POINT_GROUP!r} entry-point group (trio-bus's own "
                "brokers are declared there: reinstall it if one is missing)"
            )
        adapter = cls._adapters[key] = _load(key)
        return adapter

    @classmethod
    def settings_of(cls, name: str) -> Mapping[str, str]:
        """``{adapter keyword: Settings attribute}`` for backend ``name``: what
        :meth:`register_adapter` was given, else its broker plugin's
        ``facade_settings``, else nothing."""
        key = name.strip().lower()
        if key in cls._settings:
            return cls._settings[key]
        if key == "memory" or (key in cls._adapters and key not in brokers()):
            return MappingProxyType({})  # no need to load the registry for these
        plugin = brokers().get(key)
        return plugin.facade_settings if plugin is not None else MappingProxyType({})

    @classmethod
    def create_adapter(
        cls, name: str | None = None, *, settings: Settings | None = None, **kwargs: Any
    ) -> EventAdapter:
        """Build the adapter for backend ``name`` (default: ``settings.event_type``).

        Constructor kwargs are the backend's values from ``settings`` (the module-level
        :data:`settings` unless given), overridden by ``kwargs``.

        Raises:
            ConfigurationError: unknown backend, or an option the adapter does not take.
            MissingDependencyError: the backend's client library is not installed.
        """
        config = _default_settings() if settings is None else settings
        backend = (name if name is not None else config.event_type) or "memory"
        adapter_cls = cls.adapter_class(backend)
        merged = {**config.values_for(cls.settings_of(backend)), **kwargs}
        _check_kwargs(backend, adapter_cls, merged)
        return adapter_cls(**merged)


def _default_settings() -> Settings:
    return settings


def _check_kwargs(backend: str, adapter_cls: type[EventAdapter], kwargs: dict[str, Any]) -> None:
    # Binding first turns "unexpected keyword argument" deep in a constructor into one
    # message that names the backend and lists what it accepts.
    try:
        signature = inspect.signature(adapter_cls)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        accepted = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        raise ConfigurationError(
            f"event backend {backend!r} ({adapter_cls.__name__}) rejected options "
            f"{sorted(kwargs)}: {exc}; it accepts: {', '.join(accepted) or 'no options'}"
        ) from exc
