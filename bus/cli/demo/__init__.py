"""The demo shop run by ``bus demo``: an example application of trio-bus.

Orders, inventory and payments as actors on one bus (``shop``), their messages
(``messages``), what a run reports (``report``) and the command line (``_command``:
:func:`add_arguments` and :func:`run`, which ``bus.cli`` calls). It uses only the public
API of ``bus`` (and ``bridges`` for ``--bridge URL``), as any application would; the core
modules do not import it. It was ``bus.demo`` until the command line became the package
``bus.cli`` (issue 16): a module directly under ``bus/`` is part of the core, which
imports no application and no bridge. See docs/demo.md.
"""

from ._command import add_arguments as add_arguments
from ._command import run as run
from .shop import SHOP_TOPICS as SHOP_TOPICS
from .shop import plan_orders as plan_orders
from .shop import simulate as simulate

__all__ = ["SHOP_TOPICS", "add_arguments", "plan_orders", "run", "simulate"]
