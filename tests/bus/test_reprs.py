"""The public objects an application holds print what they are, not an address."""

from __future__ import annotations

from bus import open_bus
from bus.testing import LoopbackBridge, LoopbackBroker


async def test_bus_attachment_port_and_subscription_say_what_they_are() -> None:
    async with open_bus(name="shop") as bus:
        bus.topic("order.created", str)
        sub = bus.subscribe("order.*", lambda env: None, name="audit")
        att = await bus.attach(
            LoopbackBridge(LoopbackBroker(), name="lb"), export=["order.*"], import_=["pay.#"]
        )
        await bus.publish("order.created", "o-1")
        await bus.drain()
        assert repr(bus) == "<Bus 'shop' open: 2 topics, 1 bridge attached>"  # + dead letters
        assert repr(sub) == "<Subscription 'audit' to 'order.*'>"
        assert repr(att) == (
            "<Attachment of 'lb' (LoopbackBridge) export=['order.*'] import=['pay.#']: "
            "exported=1 confirmed=1 imported=0 acked=0>"
        )
        assert repr(att.port) == "<Port of 'lb' import=['pay.#']: imported=0 acked=0>"
        await att.detach()
        assert " detached:" in repr(att)
    assert repr(bus) == "<Bus 'shop' closed: 2 topics, 0 bridges attached>"
