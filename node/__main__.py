"""``python -m node --config FILE``: run a member node."""

import sys

from node.server import main

sys.exit(main())
