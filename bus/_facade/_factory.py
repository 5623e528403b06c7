"""The seed's :class:`EventFactory`: backend names → adapter classes.

Built-in broker backends are registered *lazily*, by dotted path: nothing of theirs is
imported until an adapter is created, so ``import bus`` never needs aiokafka or
aio-pika, and a missing client library is reported once, at construction, with the
``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from .._errors import ConfigurationError, MissingDependencyError
from ._adapter import EventAdapter
from ._memory_adapter import InMemoryAdapter
from ._settings import Settings, settings

__all__ = ["EventFactory", "LazyAdapter"]


@dataclass(frozen=True)
class LazyAdapter:
    """An adapter class known by ``"package.module:ClassName"``, imported on first use.

    ``requires`` names the top-level modules the adapter needs and ``extra`` the
    ``trio-bus[extra]`` that installs them; they are checked before importing so the
    error names the fix rather than a deep ``ImportError``.
    """

    path: str
    extra: str | None = None
    requires: tuple[str, ...] = ()

    def resolve(self, name: str) -> type[EventAdapter]:
        """Import and return the class.

        Raises:
            MissingDependencyError: a required client library is not installed.
            ConfigurationError: the module or class does not exist (yet).
        """
        install = f"pip install 'trio-bus[{self.extra}]'" if self.extra else None
        missing = [m for m in self.requires if not _module_available(m)]
        if missing:
            fix = install or f"pip install {' '.join(missing)}"
            raise MissingDependencyError(
                f"event backend {name!r} needs {', '.join(missing)}, which is not installed: {fix}"
            )
        module_name, _, attr = self.path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                raise ConfigurationError(
                    f"event backend {name!r} is not available in this trio-bus yet: "
                    f"{module_name} ships with the broker bridges. Use 'memory' until "
                    "then, or register your own adapter with "
                    "EventFactory.register_adapter(name, cls)"
                ) from exc
            fix = install or f"pip install {exc.name}"
            raise MissingDependencyError(
                f"event backend {name!r} could not import {exc.name}: {fix}"
            ) from exc
        cls = getattr(module, attr, None)
        if cls is None:
            raise ConfigurationError(
                f"event backend {name!r} is not available in this trio-bus yet: "
                f"{module_name} has the bridge (bus.attach) but no {attr} for the seed "
                "facade. Use 'memory' until then, attach the bridge to a bus, or register "
                "your own adapter with EventFactory.register_adapter(name, cls)"
            )
        if not (isinstance(cls, type) and issubclass(cls, EventAdapter)):
            raise ConfigurationError(
                f"event backend {name!r}: {self.path} is not an EventAdapter subclass"
            )
        return cls


def _module_available(module: str) -> bool:
    # find_spec imports parent packages only; a broken parent counts as missing.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class EventFactory:
    """Creates adapters by backend name. Register your own with :meth:`register_adapter`."""

    _adapters: ClassVar[dict[str, type[EventAdapter] | LazyAdapter]] = {
        "memory": InMemoryAdapter,
        "kafka": LazyAdapter("bridges.kafka:KafkaAdapter", "kafka", ("aiokafka", "trio_asyncio")),
        "rabbitmq": LazyAdapter(
            "bridges.rabbitmq:RabbitMQAdapter", "rabbitmq", ("aio_pika", "trio_asyncio")
        ),
        "kinesis": LazyAdapter(
            "bridges.kinesis:KinesisAdapter", "kinesis", ("aioboto3", "trio_asyncio")
        ),
        "pubsub": LazyAdapter(
            "bridges.pubsub:PubSubAdapter", "pubsub", ("google.cloud.pubsub_v1",)
        ),
    }

    @classmethod
    def register_adapter(cls, name: str, adapter: type[EventAdapter] | LazyAdapter | str) -> None:
        """Make ``adapter`` available as ``name``, replacing any earlier registration.

        ``adapter`` is an :class:`EventAdapter` subclass, a :class:`LazyAdapter`, or a
        ``"module:ClassName"`` string imported on first use.

        Raises:
            ConfigurationError: ``name`` is empty or ``adapter`` is none of the above.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"adapter name must be a non-empty str, got {name!r}")
        if isinstance(adapter, str):
            if ":" not in adapter:
                raise ConfigurationError(
                    f"lazy adapter path must look like 'package.module:ClassName', got {adapter!r}"
                )
            adapter = LazyAdapter(adapter)
        elif not isinstance(adapter, LazyAdapter) and not (
            isinstance(adapter, type) and issubclass(adapter, EventAdapter)
        ):
            raise ConfigurationError(
                f"register_adapter({name!r}, ...) needs an EventAdapter subclass, got {adapter!r}"
            )
        cls._adapters[name.strip().lower()] = adapter

    @classmethod
    def available(cls) -> list[str]:
        """Registered backend names, sorted (lazy ones included, installed or not)."""
        return sorted(cls._adapters)

    @classmethod
    def adapter_class(cls, name: str) -> type[EventAdapter]:
        """The adapter class registered as ``name``, importing it if it is lazy.

        Raises:
            ConfigurationError: no backend of that name.
            MissingDependencyError: its client library is not installed.
        """
        key = name.strip().lower() if isinstance(name, str) else name
        entry = cls._adapters.get(key)
        if entry is None:
            raise ConfigurationError(
                f"unknown event backend {name!r}; known: {', '.join(cls.available())}. "
                "Register another with EventFactory.register_adapter(name, AdapterClass)"
            )
        return entry.resolve(key) if isinstance(entry, LazyAdapter) else entry

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
