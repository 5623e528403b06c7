"""``bus asyncapi APP``: the demo shop, a service file, ``module:function``, bad input.

One run as a user runs it (a subprocess printing to stdout); the others call
``bus.cli.main`` in this process. The parser's verdict on the documents is in
``tests/asyncapi``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bus.cli import main

ROOT = Path(__file__).resolve().parents[2]

APP = '''
import msgspec

class Ping(msgspec.Struct):
    n: int

async def setup(bus):
    bus.topic("ping.sent", Ping)
    bus.subscribe("ping.*", lambda env: None, name="ponger")
    return {"pinger": ["ping.sent"]}

def not_sends(bus):
    return 42
'''


def test_the_demo_shop_on_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bus", "asyncapi", "demo"], capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "trio-bus demo shop"
    titles = {op["title"] for op in doc["operations"].values()}
    # subscriptions receive, the shop's publishers send (SHOP_SENDS)
    assert "inventory receives inventory.reserve" in titles
    assert "payments-1 receives stock.reserved" in titles
    assert "storefront publishes order.placed" in titles
    assert "payments publishes payment.declined" in titles
    # orders asks inventory for a price (SHOP_REQUESTS): AsyncAPI's reply, typed Quote
    (ask,) = [op for op in doc["operations"].values()
              if op["title"] == "orders requests inventory.quote"]
    reply_key = ask["reply"]["channel"]["$ref"].rsplit("/", 1)[1]
    reply = doc["components"]["messages"][reply_key]
    assert reply["payload"] == {"$ref": "#/components/schemas/Quote"}
    assert set(doc["servers"]) == {"bus"}


def test_a_service_file_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "not-a-real-one")
    out = tmp_path / "service.json"
    code = main(["asyncapi", str(ROOT / "docs/examples/bridge.toml"), "--out", str(out),
                 "--doc-version", "2.1.0"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out == ""
    doc = json.loads(out.read_text())
    assert doc["info"] == {"title": "orders-mirror", "version": "2.1.0",
                           "description": doc["info"]["description"]}
    assert set(doc["servers"]) == {"bus", "kafka", "rabbitmq"}
    assert doc["x-trio-bus-dead-letter-topic"] == "mirror.dead_letter"
    assert doc["x-trio-bus-dead-letter-destination"] == {
        "bridge": "rabbitmq", "topic": "mirror.dead_letter", "keptIn": "mirror.dead_letter"
    }
    # the routes' payloads: payments.# raw bytes, orders.* JSON
    messages = doc["components"]["messages"]
    assert messages["payments._all_"]["contentType"] == "application/octet-stream"
    assert messages["orders._any_"]["contentType"] == "application/json"
    titles = {op["title"] for op in doc["operations"].values()}
    assert titles == {
        "bridge kafka imports orders.*", "bridge rabbitmq exports orders.*",
        "bridge rabbitmq imports payments.#", "bridge kafka exports payments.#",
        "bridge rabbitmq exports mirror.dead_letter",
    }


def test_a_module_function_declares_the_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "asyncapi_cli_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["asyncapi", "asyncapi_cli_app:setup", "--title", "Pings"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["info"]["title"] == "Pings"
    titles = {op["title"] for op in doc["operations"].values()}
    assert titles == {"ponger receives ping.sent", "pinger publishes ping.sent"}
    assert doc["components"]["schemas"]["Ping"]["required"] == ["n"]

    assert main(["asyncapi", "asyncapi_cli_app:not_sends"]) == 2
    assert "returned int" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nonsense"], "is not 'demo', a .toml service file, nor 'module:function'"),
        (["no_such_module_here:f"], "no module 'no_such_module_here'"),
        (["json:no_such_function"], "json has no function 'no_such_function'"),
        (["missing.toml"], "missing.toml"),
        (["docs/examples/bridge.toml", "--bridge", "kafka://h:1"], "--bridge goes with"),
        (["demo", "--bridge", "nosuch://x"], "nosuch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["asyncapi", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bus: error: ") and err.count("\n") == 1, err
    assert says in err


def test_an_unwritable_out_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asyncapi", "demo", "--out", str(tmp_path / "no" / "such" / "dir.json")]) == 1
    assert "cannot write" in capsys.readouterr().err
