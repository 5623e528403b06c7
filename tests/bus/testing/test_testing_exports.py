"""bus.testing: the suite and the loopback double import without pytest."""

import subprocess
import sys


def test_bus_testing_imports_without_pytest() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import bus.testing as t\n"
        "assert t.check_bridge and t.LoopbackBridge and t.Recorder and t.Faults\n"
        "assert not hasattr(t, 'event_bus')\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout.strip() == b"ok", done.stderr.decode()
