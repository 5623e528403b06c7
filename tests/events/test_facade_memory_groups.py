"""The memory backend's groups: one position per group for pulls and callbacks alike."""

from __future__ import annotations

from bus.abc import H_ERROR, H_ORIGINAL_TOPIC
from bus.events import EventMessage, InMemoryAdapter


def msg(n: int) -> EventMessage:
    return EventMessage(topic="t", data={"n": n})


async def test_a_callback_of_the_group_starts_with_what_break_left_in_hand() -> None:
    adapter = InMemoryAdapter()
    for n in range(3):
        await adapter.publish(msg(n))
    async for message in adapter.consume("t", group="g"):
        assert message.data == {"n": 0}
        break  # 0 in hand, not handled
    got: list[int] = []

    async def handle(message: EventMessage) -> None:
        got.append(message.data["n"])

    await adapter.subscribe("t", handle, group="g")
    assert got == [0, 1, 2]  # the awaited subscribe handled the group's backlog
    await adapter.publish(msg(3))  # then live
    assert got == [0, 1, 2, 3]
    # the live callback moved the group's position: a pull of the group has nothing left
    assert [m async for m in adapter.consume("t", group="g")] == []
    # another group still reads everything
    assert len([m async for m in adapter.consume("t", group="other")]) == 4


async def test_a_callback_failing_on_the_backlog_dead_letters_and_goes_on() -> None:
    adapter = InMemoryAdapter()
    for n in range(2):
        await adapter.publish(msg(n))
    async for _ in adapter.consume("t", group="g"):
        break
    got: list[int] = []

    async def handle(message: EventMessage) -> None:
        if message.data["n"] == 0:
            raise ValueError("bad zero")
        got.append(message.data["n"])

    await adapter.subscribe("t", handle, group="g")
    assert got == [1]
    dead = [m async for m in adapter.consume("bus.dead_letter")]
    assert [(m.data, m.headers[H_ORIGINAL_TOPIC]) for m in dead] == [({"n": 0}, "t")]
    assert "bad zero" in dead[0].headers[H_ERROR]
    assert [m async for m in adapter.consume("t", group="g")] == []


async def test_a_new_group_callback_starts_at_new_messages_unless_from_beginning() -> None:
    adapter = InMemoryAdapter()
    await adapter.publish(msg(0))
    late: list[int] = []
    early: list[int] = []

    async def on_late(message: EventMessage) -> None:
        late.append(message.data["n"])

    async def on_early(message: EventMessage) -> None:
        early.append(message.data["n"])

    await adapter.subscribe("t", on_late, group="late")
    await adapter.subscribe("t", on_early, group="early", from_beginning=True)
    await adapter.publish(msg(1))
    assert (late, early) == ([1], [0, 1])
