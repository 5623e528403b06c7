"""The recipes of docs/testing.md's "Testing the unhappy path", run as written.

The section's ``python`` blocks are compiled as this module's code, at their own line
numbers in docs/testing.md (a failure points at the docs), so pytest collects their
``test_*`` functions like any others.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[3] / "docs" / "testing.md"


def _section_code() -> str:
    text = DOC.read_text()
    start = text.index("## Testing the unhappy path")
    end = text.index("\n## ", start + 1)
    lines = ["" for _ in text[:start].splitlines()]  # keep the docs' line numbers
    blocks = re.finditer(r"```python\n(.*?)```", text[start:end], re.S)
    body = text[start:end]
    offset = 0
    for block in blocks:
        before = body[offset:block.start(1)].count("\n")
        lines += [""] * before
        lines += block.group(1).splitlines()
        offset = block.end(1)
    return "\n".join(lines) + "\n"


exec(compile(_section_code(), str(DOC), "exec"))  # the docs' own code, as written


def test_the_section_defines_its_recipes() -> None:
    names = {n for n in globals() if n.startswith("test_")}
    assert {"test_each_order_is_charged_once", "test_nothing_is_lost",
            "test_idempotent_under_many_seeds", "test_a_dedup_window_drops_repeats"} <= names
