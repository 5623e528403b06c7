"""``python -m bus``: the ``bus`` command (the one module of the core that imports
``bus.cli``: it is the command's entry point, not part of the core)."""

import sys

from bus.cli import main

sys.exit(main())
