"""``python -m tools.cli ARGS...``: the same as the ``mekong`` console script."""

import sys

from tools.cli.main import main

if __name__ == "__main__":  # signature worker processes import this module again (spawn)
    sys.exit(main())
