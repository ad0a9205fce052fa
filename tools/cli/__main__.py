"""``python -m tools.cli ARGS...``: the same as the ``mekong`` console script."""

import sys

from tools.cli.main import main

sys.exit(main())
