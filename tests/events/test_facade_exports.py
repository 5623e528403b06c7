"""Pins the seed facade's public names: ``bus.events``, apart from ``bus`` and ``bus.abc``."""

from __future__ import annotations

import msgspec
import trio

import bus
import bus.abc
import bus.events
from bus.events import AdapterWrapper, BaseEvent, EventMessage, InMemoryAdapter

FACADE_NAMES = {
    "DEFAULT_DEAD_LETTER_TOPIC",
    "AdapterWrapper",
    "BaseEvent",
    "BridgeAdapter",
    "EventAdapter",
    "EventFactory",
    "EventMessage",
    "EventStream",
    "InMemoryAdapter",
    "MessageCallback",
    "MessageReader",
    "ModelCallback",
    "Settings",
    "decode_message",
    "encode_message",
    "settings",
    "shared_bus",
}


def test_facade_names_live_in_bus_events_only() -> None:
    assert set(bus.events.__all__) == FACADE_NAMES
    for name in FACADE_NAMES:
        assert getattr(bus.events, name) is not None
    assert not FACADE_NAMES & set(bus.__all__)  # bus is what an application uses
    assert not set(bus.abc.__all__) & FACADE_NAMES  # implementers' names stay apart
    assert not hasattr(bus.abc, "BridgeAdapter")  # moved here: the core cannot import it


class Note(msgspec.Struct):
    text: str


class Recording(AdapterWrapper):
    def __init__(self) -> None:
        super().__init__(InMemoryAdapter("recording"))
        self.calls: list[str] = []

    async def publish(self, message: EventMessage) -> None:
        self.calls.append(message.topic)
        await super().publish(message)


async def test_adapter_wrapper_forwards_everything() -> None:
    wrapper = Recording()
    seen: list[str] = []
    async with BaseEvent(model=Note, adapter=wrapper) as notes:
        await notes.create_topic("made")
        await notes.pull("made", callback=lambda note: seen.append(note.text))
        await notes.push("made", Note("hi"))
        assert [n.text async for n in notes.pull("made")] == ["hi"]
        assert await notes.list_topics() == ["note.made"]
        await notes.delete_topic("made")
        assert await notes.list_topics() == []
    assert seen == ["hi"] and wrapper.calls == ["note.made"]
    assert not isinstance(wrapper.adapter, Recording)


async def test_background_chain_across_events_drains_before_exit() -> None:
    # Three facades chained by callbacks: each push waits for the callbacks downstream
    # of it, and each block's exit drains the bus, so the chain completes first.
    done: list[str] = []
    async with (
        BaseEvent(model=Note, topic_prefix="a") as a,
        BaseEvent(model=Note, topic_prefix="b") as b,
        BaseEvent(model=Note, topic_prefix="c") as c,
    ):

        async def a_to_b(note: Note) -> None:
            await trio.lowlevel.checkpoint()
            await b.push("step", Note(note.text + ">b"))

        async def b_to_c(note: Note) -> None:
            await c.push("step", Note(note.text + ">c"))

        async def record(note: Note) -> None:
            done.append(note.text)

        await a.pull("step", callback=a_to_b)
        await b.pull("step", callback=b_to_c)
        await c.pull("step", callback=record)
        for n in range(3):
            await a.push("step", Note(str(n)))
    assert done == ["0>b>c", "1>b>c", "2>b>c"]
