"""The garbage collector set-up of long-running processes (node.collector)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from node import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    collector.settle()
    assert gc.get_freeze_count() > 1000  # every object alive now: modules, classes, this test's
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.parametrize(("entry", "argv"), [
    ("node.server", "['--config', '/nonexistent/node.toml']"),
    ("tools.cli.main", "['--version']"),
    ("tools.bench.__main__", "['no-such-benchmark']"),
])
def test_the_node_the_cli_and_the_benchmarks_settle_the_collector(entry: str, argv: str) -> None:
    # Each entry point in a fresh interpreter: its main() with arguments that end at once.
    code = ("import gc, importlib\n"
            f"m = importlib.import_module({entry!r})\n"
            "try:\n"
            f"    m.main({argv})\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split()[-2:] == [str(collector.YOUNG_THRESHOLD), "True"]
