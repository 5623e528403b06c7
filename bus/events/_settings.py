"""Facade settings: environment variables, programmatic overrides, per-backend kwargs.

Precedence, highest first: explicit arguments to ``BaseEvent(...)`` /
``EventFactory.create_adapter(...)``; values assigned on a :class:`Settings` object
(``settings.event_type = "rabbitmq"``); the environment, read when the value is used
(not at import, so tests can ``monkeypatch.setenv``); built-in defaults.

This module only gathers values. Whether a value is usable (a URL reachable,
credentials valid) is the adapter's business, at construction or connect.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, overload

from bus.abc import mask_setting

__all__ = ["Settings", "settings"]


class _EnvVar:
    """A ``str | None`` setting: an assigned value, else the environment, else a default."""

    def __init__(self, env: str, default: str | None = None) -> None:
        self.env = env
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type[Settings], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Settings]) -> _EnvVar: ...
    @overload
    def __get__(self, obj: Settings, owner: type[Settings]) -> str | None: ...
    def __get__(self, obj: Settings | None, owner: type[Settings]) -> _EnvVar | str | None:
        if obj is None:
            return self
        if self.name in obj._assigned:
            return obj._assigned[self.name]
        value = obj._environ.get(self.env)
        # An empty variable (`KAFKA_SERVER=`) means "unset", as shells usually intend.
        return value if value else self.default

    def __set__(self, obj: Settings, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"settings.{self.name} must be a str or None, got {value!r}")
        obj._assigned[self.name] = value

    def __delete__(self, obj: Settings) -> None:
        obj._assigned.pop(self.name, None)


class Settings:
    """Where the facade finds its backend and connection defaults.

    Each attribute reads its environment variable when accessed unless it was assigned;
    ``del settings.x`` goes back to the environment. ``Settings(environ={...})`` reads
    another mapping instead of ``os.environ`` (handy in tests).
    """

    event_type = _EnvVar("EVENT_TYPE", "memory")
    kafka_server = _EnvVar("KAFKA_SERVER")
    rabbitmq_url = _EnvVar("RABBITMQ_URL")
    aws_region = _EnvVar("AWS_REGION")
    aws_access_key_id = _EnvVar("AWS_ACCESS_KEY_ID")
    aws_secret_access_key = _EnvVar("AWS_SECRET_ACCESS_KEY")
    kinesis_endpoint_url = _EnvVar("KINESIS_ENDPOINT_URL")
    gcp_project_id = _EnvVar("GCP_PROJECT_ID")
    gcp_credentials_path = _EnvVar("GCP_CREDENTIALS_PATH")
    pubsub_emulator_host = _EnvVar("PUBSUB_EMULATOR_HOST")
    redis_url = _EnvVar("REDIS_URL")

    def __init__(self, environ: Mapping[str, str] | None = None, **values: str | None) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._assigned: dict[str, str | None] = {}
        for name, value in values.items():
            if name not in self.field_names():
                raise TypeError(f"unknown setting {name!r}; known: {', '.join(self.field_names())}")
            setattr(self, name, value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of every setting, in declaration order."""
        return tuple(n for n, v in vars(cls).items() if isinstance(v, _EnvVar))

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Setting name → environment variable name."""
        return {n: v.env for n, v in vars(cls).items() if isinstance(v, _EnvVar)}

    def replace(self, **values: str | None) -> Settings:
        """A copy with ``values`` assigned on top of this object's assignments."""
        copy = Settings(self._environ)
        copy._assigned = dict(self._assigned)
        for name, value in Settings(self._environ, **values)._assigned.items():
            copy._assigned[name] = value
        return copy

    def as_dict(self) -> dict[str, str | None]:
        """Every setting's current value."""
        return {name: getattr(self, name) for name in self.field_names()}

    def adapter_kwargs(self, backend: str) -> dict[str, Any]:
        """Constructor kwargs for ``backend``'s adapter taken from these settings: the
        ones its broker plugin (``facade_settings``) or its ``register_adapter(...,
        settings=)`` names. Only values that are set are returned, so an adapter's own
        defaults apply to the rest; ``memory`` and adapters registered without settings
        get ``{}``."""
        # the factory knows the backends and imports this module: imported here, late
        from ._factory import EventFactory

        return self.values_for(EventFactory.settings_of(backend))

    def values_for(self, mapping: Mapping[str, str]) -> dict[str, Any]:
        """``{keyword: value}`` for each ``{keyword: setting}`` of *mapping* that is set."""
        kwargs: dict[str, Any] = {}
        for kwarg, setting in mapping.items():
            value = getattr(self, setting)
            if value is not None:
                kwargs[kwarg] = value
        return kwargs

    def __repr__(self) -> str:
        # Never print secrets: tracebacks and logs end up in bug reports.
        shown = {k: mask_setting(k, v) for k, v in self.as_dict().items()}
        return f"Settings({shown})"


settings = Settings()
"""The process-wide settings the seed modifies (``settings.event_type = "rabbitmq"``)."""
