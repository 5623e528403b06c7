"""Test support: a recorder and pytest fixtures for code that uses the bus, and the
conformance suite for code that implements a bridge.

For applications — add ``pytest_plugins = ["bus.testing"]`` to your ``conftest.py``
(pytest-trio installed, ``trio_mode = true`` or tests marked ``@pytest.mark.trio``):

- ``event_bus`` — an open strict bus for the test, seeded (``seed=0``), drained and
  closed after it; ``bus`` is the same bus under its old name (which shadows the ``bus``
  package inside a test, hence ``event_bus``);
- ``@pytest.mark.bus(**options)`` — any :func:`~bus.open_bus` keyword for that test's
  bus: ``seed``, ``drain_timeout``, ``capacity``, ``strict``, ``overflow``, ``retry``...;
- ``bus_options`` — the options the test's bus is opened with (defaults + marker);
- ``bus_factory`` — ``await bus_factory(**options)`` opens another bus with the same
  defaults, closed after the test (for tests that need several);
- ``recorder`` — a :class:`Recorder` on ``event_bus`` capturing every message.

Combine them with pytest-trio's ``autojump_clock`` fixture to make backoffs, timeouts
and retention ages take no real time; the fixed seed makes retry jitter repeat run to
run. The recorder is an ordinary subscriber, so it sees exactly what subscribers see, in
publish order.

For bridge implementers — pytest-free, like ``trio.testing.check_one_way_stream``:
:func:`check_bridge` runs every conformance case against a :class:`BridgeKit` (how to
make bridges to a running broker, and its :class:`~bus.abc.Features`); :func:`run_case`
runs one (parametrize over :data:`CASES`); :func:`check_broker_to_broker` runs one bus
between two brokers. :class:`LoopbackBroker` and :class:`LoopbackBridge` are a broker
inside the process and its bridge: the contract's test double, which passes the suite.
``LoopbackBroker(faults=Faults(seed=7, duplicate=0.05, ...))`` makes it misbehave, by
seed and on command (``drop_connections()``, ``rebalance(group)``, ``refuse_next(n)``),
on trio's clock: for testing that handlers are idempotent and that nothing is lost.

Importing this module needs pytest only for the fixtures; without pytest installed the
rest still imports.
"""

from .._faults import Faults as Faults
from .._loopback import LOOPBACK_FEATURES as LOOPBACK_FEATURES
from .._loopback import LoopbackBridge as LoopbackBridge
from .._loopback import LoopbackBroker as LoopbackBroker
from .._loopback import LoopbackRecord as LoopbackRecord
from ._check_bridge import CASES as CASES
from ._check_bridge import BridgeKit as BridgeKit
from ._check_bridge import Order as Order
from ._check_bridge import check_bridge as check_bridge
from ._check_bridge import check_broker_to_broker as check_broker_to_broker
from ._check_bridge import run_case as run_case
from ._recorder import Recorder as Recorder

__all__ = [
    "CASES",
    "LOOPBACK_FEATURES",
    "BridgeKit",
    "Faults",
    "LoopbackBridge",
    "LoopbackBroker",
    "LoopbackRecord",
    "Order",
    "Recorder",
    "check_bridge",
    "check_broker_to_broker",
    "run_case",
]

try:
    import pytest as _pytest  # noqa: F401 - only to know whether the plugin can load
except ImportError:  # pragma: no cover - the fixtures need pytest; the rest does not
    pass
else:
    from ._pytest import DEFAULT_TEST_OPTIONS as DEFAULT_TEST_OPTIONS
    from ._pytest import bus as bus
    from ._pytest import bus_factory as bus_factory
    from ._pytest import bus_options as bus_options
    from ._pytest import event_bus as event_bus
    from ._pytest import pytest_configure as pytest_configure
    from ._pytest import recorder as recorder

    __all__ += [
        "DEFAULT_TEST_OPTIONS",
        "bus",
        "bus_factory",
        "bus_options",
        "event_bus",
        "pytest_configure",
        "recorder",
    ]
