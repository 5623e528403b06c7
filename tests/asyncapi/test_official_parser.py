"""The documents ``bus asyncapi`` prints, judged by the official AsyncAPI parser.

Each document is made by the command's own ``build`` (``tests/cli`` runs the command) or
by ``bus.asyncapi.document``, and handed to ``@asyncapi/parser`` (``conftest.py``
installs it): the demo shop alone and mirrored to each bundled broker, the bridged service
of ``docs/examples/bridge.toml`` (Kafka and RabbitMQ), and a bus using every payload form
msgspec describes with all four brokers importing and exporting. A test passes only when
the parser reports no error diagnostic and reads the document as AsyncAPI 3.0.0. One test
shows the parser does reject a binding field AsyncAPI does not define, so a pass means
something.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from pathlib import Path
from typing import Any, Literal, TypedDict

import msgspec
import pytest

from bridges import asyncapi_side, from_url
from bus import Retention, open_bus
from bus.abc import RawCodec
from bus.asyncapi import BridgeSpec, document
from bus.cli._asyncapi import build

pytestmark = pytest.mark.external

ROOT = Path(__file__).resolve().parents[2]
BRIDGES = {
    "kafka": "kafka://127.0.0.1:9092",
    "amqp": "amqp://guest@127.0.0.1:5672/",
    "kinesis": "kinesis://us-east-1?endpoint=http://127.0.0.1:4568",
    "googlepubsub": "pubsub://trio-bus-test?emulator=127.0.0.1:8085",
}


def generate(tmp_path: Path, name: str, app: str, bridge: str | None = None) -> Path:
    """What ``bus asyncapi APP [--bridge URL] --out FILE`` writes (its ``build``)."""
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps(build(app, bridge=bridge), indent=2))
    return out


def judged(parser: Any, paths: list[Path]) -> dict[str, dict[str, Any]]:
    results = {Path(r["file"]).stem: r for r in parser.validate(paths)}
    assert len(results) == len(paths)
    for name, result in results.items():
        assert parser.errors(result) == [], f"{name}: the parser found errors"
        assert result["version"] == "3.0.0", name
    return results


def test_the_demo_shop_alone_and_mirrored_to_each_broker(
    asyncapi_parser: Any, tmp_path: Path
) -> None:
    paths = [generate(tmp_path, "shop", "demo")]
    paths += [generate(tmp_path, f"shop-{proto}", "demo", url)
              for proto, url in BRIDGES.items()]
    judged(asyncapi_parser, paths)
    for proto in BRIDGES:
        doc = json.loads((tmp_path / f"shop-{proto}.json").read_text())
        # the mirror is in the document: a server of that protocol, an export per topic
        assert [s["protocol"] for s in doc["servers"].values()] == ["trio-bus", proto]
        exports = [o for o in doc["operations"].values() if o["title"].startswith("bridge")]
        assert len(exports) == 11  # ten shop topics and the dead-letter topic


def test_the_bridged_service_config(
    asyncapi_parser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "not-a-real-one")  # the file reads it
    path = generate(tmp_path, "service", str(ROOT / "docs/examples/bridge.toml"))
    judged(asyncapi_parser, [path])
    doc = json.loads(path.read_text())
    bindings = {
        proto for ch in doc["channels"].values() for proto in ch.get("bindings", {})
    }
    assert bindings == {"kafka", "amqp"}


def test_the_parser_rejects_what_asyncapi_does_not_define(
    asyncapi_parser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "not-a-real-one")
    path = generate(tmp_path, "service", str(ROOT / "docs/examples/bridge.toml"))
    doc = json.loads(path.read_text())
    channel = next(ch for ch in doc["channels"].values() if "kafka" in ch.get("bindings", {}))
    channel["bindings"]["kafka"]["partitionKey"] = "no such field"
    path.write_text(json.dumps(doc))
    (result,) = asyncapi_parser.validate([path])
    assert any("partitionKey" in e for e in asyncapi_parser.errors(result))


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Left(msgspec.Struct, tag=True):
    x: int


class Right(msgspec.Struct, tag=True):
    y: str


class Everything(msgspec.Struct):
    pair: tuple[int, str]
    many: tuple[int, ...]
    when: datetime.datetime
    ident: uuid.UUID
    blob: bytes
    color: Color
    kind: Literal["a", "b"]
    maybe: int | None = None
    counts: dict[str, int] = {}
    choice: Left | Right | None = None  # a tagged union: msgspec writes a discriminator


@dataclasses.dataclass
class Made:
    a: int


class Typed(TypedDict):
    b: str


def nothing(env: Any) -> None:
    pass


async def test_every_payload_form_and_every_broker_both_ways(
    asyncapi_parser: Any, tmp_path: Path
) -> None:
    urls = {"k": "kafka://127.0.0.1:9092", "r": "amqp://guest@127.0.0.1:5672/v",
            "ki": "kinesis://us-east-1?endpoint=http://127.0.0.1:4568",
            "p": "pubsub://proj?emulator=127.0.0.1:8085", "re": "redis://127.0.0.1:6379/2"}
    async with open_bus(name="sink") as bus:
        bus.topic("all.things", Everything, retain=Retention(max_count=5, max_age=60.0))
        bus.topic("dc.made", Made)
        bus.topic("td.made", Typed)
        bus.topic("num.made", int)
        bus.subscribe("all.*", nothing, name="all", concurrency=2, group="g")
        bus.subscribe("#", nothing, name="everything")
        specs = [BridgeSpec(from_url(url, name=name), export=("all.things", "dc.*"),
                            import_=("td.made", "in.#")) for name, url in urls.items()]
        doc = document(
            bus, sends={"maker": ["dc.made", "num.made", "raw.#"]},
            payloads={"raw.#": RawCodec(), "in.#": object}, bridges=specs,
            describe=asyncapi_side,
        )
    path = tmp_path / "sink.json"
    path.write_text(json.dumps(doc))
    judged(asyncapi_parser, [path])
    assert len([o for o in doc["operations"].values() if o["action"] == "receive"
                and o["title"].startswith("bridge")]) == 10  # two imports x five brokers
