"""The service and the command line take any registered broker: a broker plugin they do
not know by name (``probe``, registered for the test) gets its ``type = "probe"``, its
URLs, its tail options and its topic listing from the registry alone."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bus.abc import Bridge, BrokerPlugin
from bus.cli import _brokers, main
from bus.cli._service.config import ConfigError, DeadLetter, parse
from bus.cli._service.run import Service
from bus.testing import LOOPBACK_FEATURES, LoopbackBridge, LoopbackBroker

BROKER = LoopbackBroker()


class ProbeBridge(LoopbackBridge):
    """A bridge with the kinds of constructor options a service file meets."""

    def __init__(
        self,
        name: str = "probe",
        *,
        url: str = "probe://guest@127.0.0.1/",
        batch: int = 8,
        where: object = None,
        handle: object = None,
    ) -> None:
        super().__init__(BROKER, name)
        self.url, self.batch, self.where, self.handle = url, batch, where, handle
        self.created: list[tuple[str, dict[str, Any]]] = []

    async def create_topic(self, name: str, **options: Any) -> None:
        self.created.append((name, options))


def _from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    return ProbeBridge(name or "probe", url=url, **options)


cleaned: list[tuple[Any, str]] = []


async def _tail_cleanup(bridge: Any, private: str) -> None:
    cleaned.append((bridge, private))


PROBE = BrokerPlugin(
    name="probe", title="Probe", schemes=("probe",), url_forms=("probe://host",),
    from_url=_from_url, bridge=ProbeBridge, features=LOOPBACK_FEATURES,
    not_in_file=frozenset({"name", "handle"}),
    file_types={"where": str | None},
    lists_topics=False,
    tail_options=lambda topic, start, fresh: ({"batch": 1 if start else 2}, f"q-{fresh}"),
    tail_cleanup=_tail_cleanup,
    keep_key="spot",
    keep_options=lambda bridge, topic, place: {"spot": place or f"{bridge.name}.{topic}"},
)


def _service(tmp_path: Path, broker: str, environ: dict[str, str] | None = None) -> Any:
    text = (f"[brokers.p]\n{broker}\n\n[brokers.q]\ntype = \"probe\"\n\n"
            "[[topics]]\nname = \"t\"\nimport_from = \"p\"\nexport_to = \"q\"\n")
    return parse(tomllib.loads(text), path=str(tmp_path / "bridge.toml"), environ=environ or {})


def test_the_service_makes_a_registered_brokers_bridge_from_its_constructor(
    register_broker: Any, tmp_path: Path
) -> None:
    register_broker(PROBE)
    config = _service(tmp_path, 'type = "probe"\nbatch = 3\nwhere = "a/path"\n'
                      'url = "probe://me@h/"\npassword_env = "PW"', {"PW": "s3cret"})
    bridge = config.brokers["p"].make()
    assert isinstance(bridge, ProbeBridge) and bridge.name == "p"
    assert (bridge.batch, bridge.where) == (3, "a/path")
    assert bridge.url == "probe://me:s3cret@h/"  # password_env fills the url's password


def test_password_env_fills_the_bridges_default_url(register_broker: Any, tmp_path: Path) -> None:
    register_broker(PROBE)
    config = _service(tmp_path, 'type = "probe"\npassword_env = "PW"', {"PW": "pw"})
    bridge = config.brokers["p"].make()
    assert isinstance(bridge, ProbeBridge) and bridge.url == "probe://guest:pw@127.0.0.1/"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "probe"\nhandle = "x"', "unknown key 'handle'"),  # not_in_file
        ('type = "probe"\nwhere = 3', "where"),  # file_types: a path, not a number
        ('type = "nowhere"', "expected one of ["),
        ('batch = 3', 'has no type: add type = '),
    ],
)
def test_the_service_checks_a_registered_brokers_options(
    register_broker: Any, tmp_path: Path, table: str, message: str
) -> None:
    register_broker(PROBE)
    with pytest.raises(ConfigError) as info:
        _service(tmp_path, table)
    assert message in str(info.value)
    if "type" in message or "expected one of" in message:
        assert "probe" in str(info.value)  # the registered names, this one included


def test_a_tail_takes_its_brokers_options_and_cleans_up_with_it(register_broker: Any) -> None:
    register_broker(PROBE)
    options, private = _brokers._tail_options("probe://h", "t", True)
    assert options == {"batch": 1} and private.startswith("q-bus-tail-")
    assert _brokers._tail_options("probe://h", "t", False)[0] == {"batch": 2}
    options, private = _brokers._tail_options("memory://", "t", False)
    assert set(options) == {"group"} and private == ""  # no plugin: a group of its own
    assert not _brokers._lists_topics("probe://h") and not _brokers._lists_topics("memory://")


async def test_a_tails_private_place_is_removed_by_its_broker(register_broker: Any) -> None:
    register_broker(PROBE)
    cleaned.clear()
    bridge = _from_url("probe://h")
    await _brokers._cleanup(bridge, "probe://h", "t", "q-1")
    assert cleaned == [(bridge, "q-1")]
    await _brokers._cleanup(bridge, "probe://h", "t", "")  # nothing private: nothing to do
    assert len(cleaned) == 1


def test_topics_list_on_a_broker_that_cannot_list_is_one_usage_line(
    register_broker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    register_broker(PROBE)
    assert main(["topics", "probe://h", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("bus: error: Probe cannot list topics")


def test_the_url_help_lists_every_registered_brokers_forms(register_broker: Any) -> None:
    register_broker(PROBE)
    parser = argparse.ArgumentParser()
    _brokers.add_parsers(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    assert "probe://host" in _brokers._forms() and "memory://" in _brokers._forms()


def _with_dead_letters(tmp_path: Path, dead_letter: str) -> Any:
    text = (f"[service]\ndead_letter = {{ {dead_letter} }}\n\n"
            "[brokers.p]\ntype = \"probe\"\n\n[brokers.q]\ntype = \"probe\"\n\n"
            "[[topics]]\nname = \"t\"\nimport_from = \"p\"\nexport_to = \"q\"\n")
    return parse(tomllib.loads(text), path=str(tmp_path / "bridge.toml"), environ={})


async def test_the_dead_letters_are_kept_where_their_broker_says(
    register_broker: Any, tmp_path: Path
) -> None:
    register_broker(PROBE)
    config = _with_dead_letters(tmp_path, 'broker = "q", topic = "d", spot = "here"')
    assert config.dead_letter == DeadLetter("q", "d", "here")
    bridges: dict[str, Bridge] = {"p": ProbeBridge("p"), "q": ProbeBridge("q")}
    await Service(config, bridges)._create_dead_letter_destination()
    assert bridges["q"].created == [("d", {"spot": "here"})]  # type: ignore[attr-defined]
    config = _with_dead_letters(tmp_path, 'broker = "q", topic = "d"')
    await Service(config, bridges)._create_dead_letter_destination()
    assert bridges["q"].created[-1] == ("d", {"spot": "q.d"})  # type: ignore[attr-defined]


def test_a_dead_letter_key_of_another_broker_is_refused(
    register_broker: Any, tmp_path: Path
) -> None:
    register_broker(PROBE)
    register_broker(BrokerPlugin(
        name="other", title="Other", schemes=("other",), url_forms=("other://h",),
        from_url=_from_url, bridge=ProbeBridge, features=LOOPBACK_FEATURES, keep_key="bin",
    ))
    with pytest.raises(ConfigError, match=r"bin is for a other broker only"):
        _with_dead_letters(tmp_path, 'broker = "q", bin = "x"')
    with pytest.raises(ConfigError, match=r"unknown key 'queue2'"):
        _with_dead_letters(tmp_path, 'broker = "q", queue2 = "x"')
