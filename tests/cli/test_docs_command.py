"""``bus docs``: the documentation comes with the installed package (issue 19 item 5).

The wheel test builds a real wheel from the project's files, installs it under a prefix
of its own and runs ``bus docs`` from there, outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bus.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_docs_lists_the_pages_with_their_titles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    assert "service  " in out and "`bus bridge CONFIG.toml`" in out
    assert "cli  " in out and "readme  " in out


def test_docs_prints_a_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "service.md"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs/service.md").read_text(encoding="utf-8")


def test_an_unknown_page_is_one_line_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["docs", "servce"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "no page 'servce': did you mean 'service'?" in err


def test_from_an_installed_wheel_docs_prints_the_installed_page(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bus", "bridges", "docs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("trio_bus-*.whl")
    prefix = tmp_path / "prefix"
    # --ignore-installed: else pip uninstalls the trio-bus this test runs from
    subprocess.run(
        [*pip, "install", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(wheel)],
        check=True, cwd=tmp_path,
    )
    [site] = prefix.glob("lib/python*/site-packages")
    shutil.rmtree(src)  # nothing of the source tree is left to be found
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys, bus.cli; print(bus.cli.__file__, file=sys.stderr);"
         "sys.exit(bus.cli.main(sys.argv[1:]))", "docs", "service"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().startswith(str(site))  # the installed package ran
    assert run.stdout == (ROOT / "docs/service.md").read_text(encoding="utf-8")
    path = subprocess.run(
        [sys.executable, "-c", "import sys, bus.cli; sys.exit(bus.cli.main(sys.argv[1:]))",
         "docs", "--path"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    assert Path(path.stdout.strip()) == (prefix / "share/doc/trio-bus").resolve()
    assert (prefix / "share/doc/trio-bus/examples/bridge.toml").is_file()
    # and the trio-bus of this environment is still installed
    subprocess.run([sys.executable, "-c", "import bus"], cwd=tmp_path, check=True)
