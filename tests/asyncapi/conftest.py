"""The official AsyncAPI parser (npm ``@asyncapi/parser``), installed on first use.

``package.json`` beside this file pins the version; :func:`install` runs ``npm install``
into this folder (``node_modules/``, ignored by git), with npm's cache in the harness's
cache folder (``$TRIO_BUS_CACHE/npm-cache``, as kinesis-local's install uses), so a fresh
clone installs from the cache (~5 s measured here) and only the first install on a
machine downloads (169 packages, 55 MB, ~9 s). ``validate.mjs`` runs the parser on
document files and prints its diagnostics as JSON lines.

Tests using the ``asyncapi_parser`` fixture carry the ``external`` marker: they run a
tool outside Python (Node.js, which these machines have; the install fails with what to
do when it is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
PACKAGE = "@asyncapi/parser"

def pinned_version() -> str:
    return str(json.loads((HERE / "package.json").read_text())["dependencies"][PACKAGE])


def installed_version() -> str | None:
    manifest = HERE / "node_modules" / PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install(cache: Path) -> None:
    """``npm install`` the pinned parser here unless it is already installed; npm's
    cache in *cache*."""
    if installed_version() == pinned_version():
        return
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool} is not on PATH: the AsyncAPI check needs Node.js and npm "
                "(apt-get install nodejs npm)"
            )
    try:  # bounded below pytest-timeout's 300 s, so the failure says what was slow
        out = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
             "--prefer-offline", "--loglevel=error"],
            cwd=HERE, env=dict(os.environ, npm_config_cache=str(cache / "npm-cache")),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"npm install {PACKAGE} took over 240 s in {HERE}") from None
    if out.returncode != 0 or installed_version() != pinned_version():
        raise RuntimeError(f"npm install {PACKAGE} failed in {HERE}:\n{out.stdout[-3000:]}")


class Parser:
    """The installed parser, run by ``validate.mjs``."""

    @staticmethod
    def validate(paths: Sequence[Path]) -> list[dict[str, Any]]:
        """The parser's verdict on each file: ``{"file", "version", "diagnostics"}``
        (a diagnostic's severity: 0 error, 1 warning, 2 information, 3 hint)."""
        out = subprocess.run(
            ["node", str(HERE / "validate.mjs"), *map(str, paths)],
            capture_output=True, text=True, timeout=120,
            check=False,
        )
        if out.returncode not in (0, 1):
            raise RuntimeError(f"validate.mjs failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return [json.loads(line) for line in out.stdout.splitlines()]

    @staticmethod
    def errors(result: dict[str, Any]) -> list[str]:
        """The error diagnostics of one file, one readable line each."""
        return [f"{d['path']}: {d['message']} ({d['code']})"
                for d in result["diagnostics"] if d["severity"] == 0]


@pytest.fixture(scope="session")
def asyncapi_parser(brokers: Any) -> Parser:
    """The official parser, installed first if needed (the harness's cache folder)."""
    install(brokers.harness.CACHE)
    return Parser()
