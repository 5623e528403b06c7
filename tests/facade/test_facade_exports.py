"""Pins the seed facade's public names, in ``bus`` and ``bus._facade``."""

from __future__ import annotations

import msgspec
import trio

import bus
import bus._facade as facade
from bus import AdapterWrapper, BaseEvent, EventMessage, InMemoryAdapter, MemoryBroker

FACADE_NAMES = {
    "AdapterWrapper",
    "BaseEvent",
    "EventAdapter",
    "EventFactory",
    "EventMessage",
    "EventStream",
    "InMemoryAdapter",
    "LazyAdapter",
    "MemoryBroker",
    "MemoryReader",
    "MessageCallback",
    "ModelCallback",
    "Settings",
    "settings",
}


def test_facade_exports() -> None:
    assert set(facade.__all__) == FACADE_NAMES
    for name in FACADE_NAMES:
        assert name in bus.__all__
        assert getattr(bus, name) is getattr(facade, name)


class Note(msgspec.Struct):
    text: str


class Recording(AdapterWrapper):
    def __init__(self) -> None:
        super().__init__(InMemoryAdapter(MemoryBroker()))
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
        assert [n.text async for n in notes.pull("made", follow=False)] == ["hi"]
        assert await notes.list_topics() == ["note.made"]
        await notes.delete_topic("made")
        assert await notes.list_topics() == []
    assert seen == ["hi"] and wrapper.calls == ["note.made"]
    assert not isinstance(wrapper.adapter, Recording)


async def test_background_chain_across_events_drains_before_exit() -> None:
    # Three facades chained by background callbacks: each block's exit waits until the
    # broker is idle, so the whole chain completes before anything disconnects.
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
