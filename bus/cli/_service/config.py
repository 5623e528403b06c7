"""The ``bus bridge`` configuration file: TOML, read with :mod:`tomllib`, checked at once.

Every problem is one :class:`ConfigError` naming the file, the table, the key and what
was expected (``docs/service.md`` describes the format). Secrets come from the
environment only: a key whose name says it holds one (``password``, ``secret``,
``token``) or an AMQP URL with a password, written in the file, is refused; ``KEY_env =
"VAR"`` reads option ``KEY`` from environment variable ``VAR`` (``password_env`` fills
the password of a broker's ``url``, as RabbitMQ's). Secret values are never put in an
error message, a repr or a log line. This module does no I/O except reading the file and
the environment; the bridges are made (no connection yet) by :meth:`BrokerConfig.make`.

A broker's ``type`` is the name of a registered broker (``bus.abc.brokers()``): the
bridge class of its plugin makes it, and the options a file may give are that class's
constructor keywords, but the plugin's ``not_in_file``, with the plugin's ``file_types``
where a keyword's annotation is wider than what a file can say. This module names no
broker.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

from bus import BusError, ConfigurationError, RetryPolicy
from bus.abc import EXPORT_RETRY, Bridge, BrokerPlugin, validate_pattern, validate_topic
from bus.abc import brokers as registered

__all__ = [
    "BrokerConfig",
    "ConfigError",
    "DeadLetter",
    "Route",
    "ServiceConfig",
    "load",
    "parse",
]

_SECRET_WORDS = ("password", "secret", "token")
LOG_LEVELS = ("debug", "info", "warning", "error")
PAYLOADS = ("raw", "json")

_SERVICE_KEYS = {
    "name": str,
    "log_level": str,
    "drain_timeout": float,
    "metrics_host": str,
    "metrics_port": int,
    "metrics": bool,
    "connect_timeout": float,
    "close_timeout": float,
    "dead_letter": dict,
}
_EXPORT_KEYS = {"batch": int, "capacity": int, "concurrency": int, "retry": dict}
_RETRY_KEYS = {"attempts": int, "base_delay": float, "factor": float, "max_delay": float,
               "jitter": float}
_ROUTE_KEYS = {"name": str, "pattern": str, "payload": str, "import_from": list,
               "export_to": list}


class ConfigError(ConfigurationError):
    """The configuration file is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class BrokerConfig:
    """One ``[brokers.NAME]`` table: the bridge to make and how the bus exports to it."""

    name: str
    type: str
    options: Mapping[str, Any] = field(repr=False)
    """Constructor keyword arguments, secrets resolved from the environment: not shown."""
    batch: int = 256
    capacity: int = 4096
    concurrency: int = 1
    retry: RetryPolicy = EXPORT_RETRY

    def make(self) -> Bridge:
        """The bridge (not connected yet); a constructor's own check is a ConfigError."""
        cls: Any = registered()[self.type].bridge_class()
        try:
            bridge: Bridge = cls(name=self.name, **self.options)
        except BusError as exc:
            if isinstance(exc, ConfigurationError) and not isinstance(exc, ConfigError):
                raise ConfigError(f"[brokers.{self.name}]: {exc}") from None
            raise
        return bridge


@dataclass(frozen=True)
class Route:
    """One ``[[topics]]`` entry: topics matching *pattern*, imported from some brokers
    and exported to others, with a payload schema."""

    pattern: str
    payload: str
    import_from: tuple[str, ...]
    export_to: tuple[str, ...]


@dataclass(frozen=True)
class DeadLetter:
    """Where dead letters go: the bus's dead-letter topic, exported to one broker."""

    broker: str
    topic: str
    place: str | None = None
    """Where the broker keeps them while nobody reads the topic, as its plugin's
    ``keep_key`` names it (RabbitMQ's ``queue``, Pub/Sub's ``group``); None: the
    broker's default (its plugin's ``keep_options``)."""


@dataclass(frozen=True)
class ServiceConfig:
    """The whole file, checked."""

    path: str
    name: str
    log_level: str
    drain_timeout: float
    metrics: bool
    metrics_host: str
    metrics_port: int
    connect_timeout: float
    close_timeout: float
    dead_letter: DeadLetter | None
    brokers: Mapping[str, BrokerConfig]
    routes: tuple[Route, ...]

    def imports(self, broker: str) -> list[str]:
        """Import patterns of *broker*, in file order, without repeats."""
        return _unique(r.pattern for r in self.routes if broker in r.import_from)

    def exports(self, broker: str) -> list[str]:
        """Export patterns of *broker* (the dead-letter topic too if it goes there)."""
        patterns = [r.pattern for r in self.routes if broker in r.export_to]
        if self.dead_letter is not None and self.dead_letter.broker == broker:
            patterns.append(self.dead_letter.topic)
        return _unique(patterns)


def load(path: str, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read and check the TOML file at *path* (secrets from *environ*, default
    ``os.environ``)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path=path, environ=os.environ if environ is None else environ)


def parse(data: Mapping[str, Any], *, path: str, environ: Mapping[str, str]) -> ServiceConfig:
    """Check a parsed TOML document; see :func:`load`."""
    _only(data, {"service": dict, "brokers": dict, "topics": list}, path, "the top level")
    service = data.get("service", {})
    _only(service, _SERVICE_KEYS, path, "[service]")
    log_level = service.get("log_level", "info")
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            f"{path}: [service] log_level = {log_level!r}: expected one of {list(LOG_LEVELS)}"
        )
    port = service.get("metrics_port", 9464)
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"{path}: [service] metrics_port = {port}: expected 0..65535 (0: any free port)"
        )
    name = service.get("name", "bus-bridge")
    _check_name(name, path, "[service] name")

    brokers_table = data.get("brokers")
    if not brokers_table:
        raise ConfigError(
            f"{path}: no [brokers.NAME] table: declare at least two brokers to mirror between"
        )
    brokers = {
        bname: _broker(bname, table, path, environ) for bname, table in brokers_table.items()
    }
    topics = data.get("topics")
    if not topics:
        raise ConfigError(
            f"{path}: no [[topics]] entry: add one with pattern = \"...\", import_from and "
            f"export_to"
        )
    routes = tuple(_route(i, entry, brokers, path) for i, entry in enumerate(topics))
    dead_letter = _dead_letter(service.get("dead_letter"), brokers, path)
    return ServiceConfig(
        path=path,
        name=name,
        log_level=log_level,
        drain_timeout=_seconds(service, "drain_timeout", 30.0, path, "[service]"),
        metrics=service.get("metrics", True),
        metrics_host=service.get("metrics_host", "127.0.0.1"),
        metrics_port=port,
        connect_timeout=_seconds(service, "connect_timeout", 10.0, path, "[service]"),
        close_timeout=_seconds(service, "close_timeout", 10.0, path, "[service]"),
        dead_letter=dead_letter,
        brokers=brokers,
        routes=routes,
    )


# -- brokers -------------------------------------------------------------------------


def _options_of(plugin: BrokerPlugin) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor options a file may set for *plugin*'s bridge, with their types,
    and their defaults (where they have one)."""
    init = plugin.bridge_class().__init__
    hints = typing.get_type_hints(init)
    params = inspect.signature(init).parameters
    names = [
        p for p in params
        if p != "self" and p not in plugin.not_in_file
        and params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               inspect.Parameter.KEYWORD_ONLY)
    ]
    types = {p: plugin.file_types.get(p, hints.get(p, Any)) for p in names}
    defaults = {p: params[p].default for p in names if params[p].default is not params[p].empty}
    return types, defaults


def _types() -> str:
    """The registered broker types, for a message: ``"kafka", "kinesis" or "pubsub"``."""
    names = [f'"{name}"' for name in registered()]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _broker(name: str, table: Any, path: str, environ: Mapping[str, str]) -> BrokerConfig:
    where = f"[brokers.{name}]"
    _check_name(name, path, where)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: brokers.{name} must be a table ({where}), not a value")
    given = table.get("type")
    plugin = registered().get(given) if isinstance(given, str) else None
    if plugin is None:
        raise ConfigError(
            f"{path}: {where} type = {given!r}: expected one of {sorted(registered())}"
            if given is not None else f"{path}: {where} has no type: add type = {_types()}"
        )
    kind = plugin.name
    try:
        options_types, defaults = _options_of(plugin)
    except ImportError as exc:
        extra = plugin.extra or kind
        raise ConfigError(
            f"{path}: {where} type = {kind!r} needs {exc.name}: pip install 'trio-bus[{extra}]'"
        ) from None
    except ConfigurationError as exc:  # the plugin's bridge class did not import
        raise ConfigError(f"{path}: {where} type = {kind!r}: {exc}") from None
    envs = {f"{opt}_env" for opt in options_types}
    if "url" in options_types:  # password_env fills the password of the broker's URL
        envs.add("password_env")
    valid = {"type", "export", *options_types, *envs}
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key not in valid:
            shown = sorted(
                f"{k}_env" if any(w in k for w in _SECRET_WORDS) else k
                for k in {"type", "export", *options_types}
            )
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{path}: {where} unknown key {key!r}; {hint}a {kind} broker takes: "
                f"{', '.join(shown)} (and KEY_env = \"VARIABLE\" to read KEY from the "
                f"environment)"
            )
        if key in ("type", "export"):
            continue
        if key.endswith("_env") and key in envs:
            continue
        _refuse_clear_secret(kind, key, value, path, where)
        options[key] = _convert(value, options_types[key], path, where, key)
    for key in sorted(envs & table.keys()):
        var = table[key]
        if not isinstance(var, str) or not var:
            raise ConfigError(
                f"{path}: {where} {key} must name an environment variable (a string)"
            )
        value = environ.get(var)
        if not value:
            raise ConfigError(
                f"{path}: {where} {key} = {var!r}: environment variable {var} is not set"
            )
        if key == "password_env":
            continue
        option = key.removesuffix("_env")
        if option in options:
            raise ConfigError(f"{path}: {where} sets both {option} and {key}: keep one")
        options[option] = _convert(value, options_types[option], path, where, key,
                                   shown=f"the value of ${var}", strict=False)
    if "password_env" in table:
        url = options.get("url", defaults.get("url"))
        if not isinstance(url, str):
            raise ConfigError(f"{path}: {where} password_env needs a url (or url_env)")
        options["url"] = _with_password(url, environ[table["password_env"]], path, where)
    export = table.get("export", {})
    _only(export, _EXPORT_KEYS, path, f"{where}.export")
    for key in ("batch", "capacity", "concurrency"):
        if key in export and export[key] < 1:
            raise ConfigError(f"{path}: {where}.export {key} = {export[key]}: expected >= 1")
    return BrokerConfig(
        name=name,
        type=kind,
        options=options,
        batch=export.get("batch", 256),
        capacity=export.get("capacity", 4096),
        concurrency=export.get("concurrency", 1),
        retry=_retry(export.get("retry"), path, f"{where}.export.retry"),
    )


def _refuse_clear_secret(kind: str, key: str, value: Any, path: str, where: str) -> None:
    if any(word in key.lower() for word in _SECRET_WORDS):
        raise ConfigError(
            f"{path}: {where} {key} holds a secret written in the file; remove it, put it "
            f"in an environment variable and write {key}_env = \"VARIABLE\""
        )
    if isinstance(value, dict):
        for inner, inner_value in value.items():
            _refuse_clear_secret(kind, f"{key}.{inner}", inner_value, path, where)
    if key == "url" and isinstance(value, str) and _has_password(value):
        raise ConfigError(
            f"{path}: {where} url has a password written in the file; remove it and write "
            f"password_env = \"VARIABLE\" (or give the whole URL with url_env)"
        )


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _with_password(url: str, password: str, path: str, where: str) -> str:
    parts = urlsplit(url)
    if not parts.username:
        raise ConfigError(
            f"{path}: {where} password_env needs a user in url (amqp://USER@host:5672/)"
        )
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _convert(
    value: Any, tp: Any, path: str, where: str, key: str, *, shown: str | None = None,
    strict: bool = True,
) -> Any:
    try:
        return msgspec.convert(value, tp, strict=strict)
    except (msgspec.ValidationError, TypeError):
        what = shown or f"{value!r}"
        raise ConfigError(f"{path}: {where} {key} = {what}: expected {_type_name(tp)}") from None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


# -- topics and dead letters ---------------------------------------------------------


def _route(i: int, entry: Any, brokers: Mapping[str, BrokerConfig], path: str) -> Route:
    where = f"[[topics]] #{i + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    _only(entry, _ROUTE_KEYS, path, where, lists_of_str=("import_from", "export_to"))
    if ("name" in entry) == ("pattern" in entry):
        raise ConfigError(
            f"{path}: {where} needs exactly one of name = \"topic\" or pattern = \"topic.*\""
        )
    try:
        if "name" in entry:
            pattern = validate_topic(entry["name"])
        else:
            pattern = entry["pattern"]
            validate_pattern(pattern)
    except BusError as exc:
        raise ConfigError(f"{path}: {where}: {exc}") from None
    payload = entry.get("payload", "raw")
    if payload not in PAYLOADS:
        raise ConfigError(
            f"{path}: {where} payload = {payload!r}: expected \"raw\" (bytes as they are) or "
            f"\"json\" (must parse as JSON, else dead-lettered)"
        )
    sides = {}
    for key in ("import_from", "export_to"):
        value = entry.get(key, [])
        names = (value,) if isinstance(value, str) else tuple(value)
        for bname in names:
            if bname not in brokers:
                raise ConfigError(
                    f"{path}: {where} {key} names broker {bname!r}, which has no "
                    f"[brokers.{bname}] table (brokers: {', '.join(sorted(brokers))})"
                )
        if not names:
            raise ConfigError(
                f"{path}: {where} ({pattern}) has no {key}: a route takes topics from one "
                f"broker (import_from) to another (export_to)"
            )
        sides[key] = _unique(names)
    both = set(sides["import_from"]) & set(sides["export_to"])
    if both:
        raise ConfigError(
            f"{path}: {where} ({pattern}) imports from and exports to {sorted(both)[0]!r}: a "
            f"bridge never sends back what it imported, so that mirrors nothing"
        )
    return Route(pattern, payload, tuple(sides["import_from"]), tuple(sides["export_to"]))


def _dead_letter(
    table: Any, brokers: Mapping[str, BrokerConfig], path: str
) -> DeadLetter | None:
    if table is None:
        return None
    where = "[service.dead_letter]"
    places = {p.keep_key: name for name, p in registered().items() if p.keep_key}
    _only(table, {"broker": str, "topic": str, **dict.fromkeys(places, str)}, path, where)
    broker = table.get("broker")
    if broker not in brokers:
        raise ConfigError(
            f"{path}: {where} broker = {broker!r}: expected one of the [brokers.NAME] "
            f"tables ({', '.join(sorted(brokers))})"
        )
    topic = table.get("topic", "bus.dead_letter")
    try:
        validate_topic(topic)
    except BusError as exc:
        raise ConfigError(f"{path}: {where} topic: {exc}") from None
    own = registered()[brokers[broker].type].keep_key
    for key in sorted(places.keys() & table.keys() - {own}):
        takers = sorted(n for n, p in registered().items() if p.keep_key == key)
        raise ConfigError(f"{path}: {where} {key} is for a {' or '.join(takers)} broker only")
    return DeadLetter(broker, topic, table.get(own) if own else None)


# -- small checks ----------------------------------------------------------------------


def _retry(table: Any, path: str, where: str) -> RetryPolicy:
    if table is None:
        return EXPORT_RETRY
    _only(table, _RETRY_KEYS, path, where)
    values = {
        "attempts": None, "base_delay": EXPORT_RETRY.base_delay,
        "max_delay": EXPORT_RETRY.max_delay, "factor": EXPORT_RETRY.factor,
        "jitter": EXPORT_RETRY.jitter, **table,
    }
    try:
        return RetryPolicy(**values)
    except ConfigurationError as exc:
        raise ConfigError(f"{path}: {where}: {exc}") from None


def _seconds(table: Mapping[str, Any], key: str, default: float, path: str, where: str) -> float:
    value = float(table.get(key, default))
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{path}: {where} {key} = {value}: expected a number of seconds > 0")
    return value


def _only(
    table: Any, keys: Mapping[str, type], path: str, where: str,
    lists_of_str: Sequence[str] = (),
) -> None:
    """*table* is a table with only *keys*, each of its type (float: int too)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    for key, value in table.items():
        expected = keys.get(key)
        if expected is None:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{path}: {where} unknown key {key!r}; {hint}expected one of: "
                f"{', '.join(sorted(keys))}"
            )
        if key in lists_of_str:
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
            wanted = "a broker name or a list of them"
        elif expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            wanted = "a number"
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            wanted = "an integer"
        else:
            ok = isinstance(value, expected)
            wanted = {str: "a string", bool: "true or false", dict: "a table",
                      list: "a list"}[expected]
        if not ok:
            raise ConfigError(f"{path}: {where} {key} = {value!r}: expected {wanted}")


def _check_name(name: Any, path: str, where: str) -> None:
    if not isinstance(name, str) or not name or not all(
        c.isalnum() or c in "-_." for c in name
    ):
        raise ConfigError(
            f"{path}: {where}: {name!r} is not a usable name (letters, digits, '-', '_', '.')"
        )


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))
