"""Without pytest-trio, the bus.testing plugin stops pytest with the fix in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_without_pytest_trio_the_plugin_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        "async def test_uses_the_bus(event_bus):\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:trio", "-p", "bus.testing",
         "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert "pip install 'trio-bus[testing]'" in done.stderr
    assert "Traceback" not in done.stderr
