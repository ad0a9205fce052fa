"""How a long-running process of this project sets up Python's garbage collector.

The node (:func:`node.server.main`), the ``mekong`` CLI and the benchmarks call :func:`settle` once, after
their imports. Nothing here changes what a program computes, only how often the collector walks objects
that are not garbage.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

#: New container objects between two collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze the objects of start-up and collect the youngest generation less often.

    The objects of start-up (modules, classes, constants: ~45,000) never become garbage; frozen, a full
    collection no longer walks them (8% of an append's time at 100,000 entries, measured with
    ``gc.callbacks``). An appended batch makes tens of thousands of short-lived objects (decoded entries,
    rows, hashes); with a young threshold of 700 the collector walked many of them several times before
    they died: at the default a catch-up spent 83 to 104 us of CPU per entry on its first 300,000 entries,
    76 to 92 us with 10,000 (about what it spends with the collector off). Objects in reference cycles wait
    a little longer for collection; nothing else changes.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
