"""The examples of docs/middleware.md, run as written.

Every ``python`` block of the page is compiled as this module's code, at its own line
numbers in docs/middleware.md (a failure points at the docs), so pytest collects the
page's ``test_*`` functions like any others.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "middleware.md"


def _page_code() -> str:
    text = DOC.read_text()
    lines: list[str] = []
    offset = 0
    for block in re.finditer(r"```python\n(.*?)```", text, re.S):
        lines += [""] * text[offset:block.start(1)].count("\n")  # keep the docs' numbers
        lines += block.group(1).splitlines()
        offset = block.end(1)
    return "\n".join(lines) + "\n"


exec(compile(_page_code(), str(DOC), "exec"))  # the docs' own code, as written


def test_the_page_defines_its_three_examples() -> None:
    names = {n for n in globals() if n.startswith("test_")}
    assert {"test_metrics", "test_redact_cards", "test_authorization"} <= names
