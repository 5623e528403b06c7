"""The Characteristics tables of ``docs/bridges.md``, generated from each ``Features``.

The tables are the loopback double's (``bus.testing``) and then every registered
broker's (``bus.abc.brokers()``: each ``PLUGIN``'s title and features), so a broker that
registers gets its table with nothing else to edit.

``python -m bridges._docs`` prints them, ``--write docs/bridges.md`` puts them between
the ``characteristics`` markers; a test checks the docs hold exactly this text, so the
tables cannot drift from the records.
"""

from __future__ import annotations

import dataclasses

from bus.abc import Features, brokers

__all__ = ["LOOPBACK_TITLE", "backends", "characteristics", "render", "update"]

LOOPBACK_TITLE = "Loopback (in-process test double)"

MEANING = {
    "ordered": "same key, same order",
    "persistent": "confirmed messages survive a broker restart",
    "consumer_groups": "competing consumers share a stream; groups each get all",
    "redelivery": "what was not acknowledged comes back after a crash",
    "headers": "native headers (CloudEvents binary mode)",
    "patterns": "`*`/`#` import patterns",
    "max_message_bytes": "largest record accepted (larger: dead-lettered)",
    "restartable": "broker restart covered by the conformance suite",
    "notes": "",
}


def backends() -> dict[str, Features]:
    """Title → default :class:`Features` of each backend: the loopback double, then every
    registered broker."""
    from bus.testing import LOOPBACK_FEATURES

    found = {LOOPBACK_TITLE: LOOPBACK_FEATURES}
    found.update((plugin.title, plugin.features) for plugin in brokers().values())
    return found


def _value(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "no limit"
    if isinstance(value, int):
        return f"{value:,} B"
    return str(value)


def characteristics(title: str, features: Features) -> str:
    rows = [f"#### {title}", "", "| feature | value | meaning |", "| --- | --- | --- |"]
    for field in dataclasses.fields(features):
        value = getattr(features, field.name)
        if field.name == "notes":
            continue
        rows.append(f"| {field.name} | {_value(value)} | {MEANING[field.name]} |")
    if features.notes:
        rows += ["", features.notes]
    return "\n".join(rows)


BEGIN, END = "<!-- characteristics:begin -->", "<!-- characteristics:end -->"


def update(markdown: str) -> str:
    """*markdown* with the text between the characteristics markers regenerated."""
    head, _, rest = markdown.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{render()}{END}{tail}"


def render() -> str:
    tables = [characteristics(title, features) for title, features in backends().items()]
    return "\n\n".join(tables) + "\n"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write"]:  # python -m bridges._docs --write docs/bridges.md
        path = Path(sys.argv[2])
        path.write_text(update(path.read_text()))
    else:
        print(render(), end="")
