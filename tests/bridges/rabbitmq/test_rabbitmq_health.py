"""RabbitMQ's health() and lag() answer (False, None) while the bridge has its runtime but
no connection (opening, or closing: the client drops its connection first), instead of
raising: `bus bridge` probes them during its drain and logged ``service.probe_failed``
with an AssertionError. No broker: the connection is simply never made."""

from __future__ import annotations

from bridges._runtime import open_runtime
from bridges.rabbitmq import RabbitMQBridge


async def test_health_and_lag_while_there_is_no_connection() -> None:
    bridge = RabbitMQBridge("amqp://guest:guest@127.0.0.1:1/", name="closing")
    async with open_runtime("thread") as rt:
        bridge._rt = rt  # the state between open()'s runtime and its connection
        bridge._importing = True
        try:
            assert await bridge.health() is False
            assert await bridge.lag() is None
        finally:
            bridge._rt = None
