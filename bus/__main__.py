"""``python -m bus``: the ``bus`` command."""

import sys

from ._cli import main

sys.exit(main())
