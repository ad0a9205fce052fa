"""``python -m node --config FILE``: run a member node."""

import sys

from node.server import main

if __name__ == "__main__":  # signature worker processes import this module again (spawn)
    sys.exit(main())
