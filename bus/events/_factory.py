"""The seed's :class:`EventFactory`: backend names → adapter classes.

``memory`` is built in (it is the bus). Every other backend is discovered through the
``trio_bus.backends`` entry-point group, which packages fill in their metadata — this
project's ``pyproject.toml`` declares ``kafka``, ``rabbitmq``, ``kinesis`` and ``pubsub``
(``bridges.kafka:KafkaAdapter`` & co.), so ``bus`` names none of its plugins. An entry
point is loaded on first use only: ``import bus.events`` imports no broker module, and a
backend whose client library is missing says so, with the ``pip install`` line, when its
adapter is created. ``EventFactory.register_adapter(name, cls)`` adds or replaces one at
run time, as the seed does.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any, ClassVar

from bus import ConfigurationError, MissingDependencyError

from ._adapter import EventAdapter
from ._memory_adapter import InMemoryAdapter
from ._settings import Settings, settings

__all__ = ["ENTRY_POINT_GROUP", "EventFactory"]

ENTRY_POINT_GROUP = "trio_bus.backends"
"""The entry-point group a package declares its facade backends in."""


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name.strip().lower(): ep for ep in found}


def _load(name: str, entry: importlib.metadata.EntryPoint) -> type[EventAdapter]:
    try:
        cls = entry.load()
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"event backend {name!r} ({entry.value}) could not import {exc.name}: "
            f"pip install {exc.name}, or the trio-bus extra that brings it"
        ) from exc
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"event backend {name!r}: entry point {entry.value!r} of group "
            f"{ENTRY_POINT_GROUP!r} cannot be loaded: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, EventAdapter)):
        raise ConfigurationError(
            f"event backend {name!r}: entry point {entry.value!r} is not an EventAdapter subclass"
        )
    return cls


class EventFactory:
    """Creates adapters by backend name. Register your own with :meth:`register_adapter`."""

    _adapters: ClassVar[dict[str, type[EventAdapter]]] = {"memory": InMemoryAdapter}
    """Registered classes; entry-point backends join it when first used."""

    @classmethod
    def register_adapter(cls, name: str, adapter: type[EventAdapter]) -> None:
        """Make ``adapter`` available as ``name``, replacing any earlier registration
        (an entry point of that name included).

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
        cls._adapters[name.strip().lower()] = adapter

    @classmethod
    def available(cls) -> list[str]:
        """Backend names, sorted: registered ones and the installed entry points."""
        return sorted(set(cls._adapters) | set(_entry_points()))

    @classmethod
    def adapter_class(cls, name: str) -> type[EventAdapter]:
        """The adapter class of backend ``name``, loading its entry point if needed.

        Raises:
            ConfigurationError: no backend of that name.
            MissingDependencyError: its module needs a library that is not installed.
        """
        key = name.strip().lower() if isinstance(name, str) else name
        adapter = cls._adapters.get(key)
        if adapter is not None:
            return adapter
        entry = _entry_points().get(key) if isinstance(key, str) else None
        if entry is None:
            raise ConfigurationError(
                f"unknown event backend {name!r}; known: {', '.join(cls.available())}. "
                "Register another with EventFactory.register_adapter(name, AdapterClass), "
                f"or declare it in the {ENTRY_POINT_GROUP!r} entry-point group (the broker "
                "backends are declared there by trio-bus's own package: reinstall it if "
                "one is missing)"
            )
        adapter = cls._adapters[key] = _load(key, entry)
        return adapter

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
        merged = {**config.adapter_kwargs(backend.strip().lower()), **kwargs}
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
