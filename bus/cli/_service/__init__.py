"""``bus bridge CONFIG.toml``: the service an operator runs to mirror topics between
brokers through one local bus (``docs/service.md``).

``config`` reads and checks the TOML file, ``run`` is the process (signals, drain,
exit codes), ``metrics`` serves ``/metrics`` (prometheus_client) and ``/healthz``. The
command line registers it with :func:`add_arguments` and :func:`run`.
"""

from __future__ import annotations

from .run import add_arguments, run

__all__ = ["add_arguments", "run"]
