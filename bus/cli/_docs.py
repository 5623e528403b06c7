"""``bus docs [PAGE]``: the documentation that came with the installed package.

A wheel installs the pages of ``docs/`` (and the README and the example files) as data
files under ``<prefix>/share/doc/trio-bus/`` (``[tool.setuptools.data-files]`` in
pyproject.toml). They are found through the distribution's own file list, so it works for
any prefix (a venv, ``--user``, ``--prefix``); run from a source checkout, it reads the
checkout's ``docs/``.

``bus docs`` lists the pages with their titles; ``bus docs service`` prints one;
``bus docs --path`` prints the folder (for a pager or an editor).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

DIST = "trio-bus"
SHARE = ("share", "doc", "trio-bus")

__all__ = ["add_parser", "find", "run"]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``bus docs`` on the subcommands action *commands*."""
    parser = commands.add_parser(
        "docs", parents=[common], help="list or print the documentation installed with trio-bus",
        description="Print a page of trio-bus's documentation (installed with the package "
        "under share/doc/trio-bus); without PAGE, list the pages.",
    )
    parser.add_argument("page", nargs="?", metavar="PAGE", help="a page, e.g. service or cli")
    parser.add_argument(
        "--path", action="store_true", help="print the folder that holds the pages and exit"
    )


def _installed() -> Path | None:
    """The folder of the pages a wheel installed, from the distribution's file list."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        parts = file.parts
        if len(parts) > 3 and parts[-4:-1] == SHARE and parts[-1] == "README.md":
            folder = Path(str(dist.locate_file(file))).resolve().parent
            if folder.is_dir():
                return folder
    return None


def find() -> Path | None:
    """Where the pages are: the source checkout's docs/ when run from one (an editable
    install also copies them to share/doc, where they would go stale), else the wheel's."""
    checkout = Path(__file__).resolve().parents[2] / "docs"
    if (checkout / "cli.md").is_file():
        return checkout
    return _installed()


def _title(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def _pages(folder: Path) -> dict[str, Path]:
    pages = {p.stem: p for p in sorted(folder.glob("*.md")) if p.stem != "README"}
    readme = folder / "README.md"
    if not readme.is_file():
        readme = folder.parent / "README.md"  # a checkout: the README is beside docs/
    if readme.is_file():
        pages["readme"] = readme
    return pages


def run(args: argparse.Namespace, report: Callable[[str], None]) -> int:
    folder = find()
    if folder is None:
        report(
            "no documentation found: this trio-bus was installed without its data files; "
            "reinstall it from a wheel (pip install --force-reinstall trio-bus)"
        )
        return 1
    if args.path:
        print(folder)
        return 0
    pages = _pages(folder)
    if args.page is None:
        width = max(map(len, pages))
        for name, path in pages.items():
            print(f"{name:<{width}}  {_title(path)}")
        print(f"\n(bus docs PAGE prints one; the files are in {folder})")
        return 0
    name = args.page.lower().removesuffix(".md")
    if name not in pages:
        near = difflib.get_close_matches(name, list(pages), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        report(f"no page {args.page!r}: {hint}the pages are {', '.join(pages)}")
        return 2
    print(pages[name].read_text(encoding="utf-8"), end="")
    return 0
