"""``bus bench`` finds the benchmark suite in a source checkout, and says so in one line
when there is none (an installed wheel ships ``bus`` and ``bridges`` only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bus.cli import _bench, main

ROOT = Path(__file__).resolve().parents[2]


def _without_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process started outside the checkout: ``benchmarks`` is not importable,
    ``bus`` and ``bridges`` are (installed). ``bridges`` is imported first: without the
    checkout on the path, this process would find ``tests/bridges`` as a namespace
    package of that name and keep it for every later test."""
    import bridges  # noqa: F401
    for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])


def test_from_an_installed_wheel_bench_says_it_needs_a_source_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_benchmarks(monkeypatch)
    # where a wheel puts the package: no benchmarks/ beside it
    monkeypatch.setattr(_bench, "__file__", str(tmp_path / "site-packages/bus/cli/_bench.py"))
    assert main(["bench", "local", "--tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "bus bench needs a source checkout of trio-bus" in err
    assert "pip install -e '.[bench]'" in err


def test_from_a_checkout_bench_imports_the_suite_beside_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an editable install maps bus/ and bridges/ only: the suite is found beside them
    _without_benchmarks(monkeypatch)
    local = _bench._suite("local")
    assert Path(local.__file__ or "").resolve().parent == ROOT / "benchmarks"


def test_a_missing_bench_library_is_named_with_the_extra() -> None:
    error = ModuleNotFoundError("No module named 'pyee'", name="pyee")
    assert _bench._missing(error) == (
        "the benchmarks need pyee: pip install -e '.[bench]' in the checkout"
    )
