"""``python -m tools.bench [NAME ...]``: run the project's benchmarks and print one report.

Each benchmark module exposes ``run(report)``; it measures its own baseline in the same
run (raw Ed25519 verifications per second, for example) and reports figures as ratios to
it, because the machines are shared and noisy.
"""

from __future__ import annotations

import importlib
import sys
import time

from node import collector

#: name -> module; each module has ``run(report: Report) -> None``.
BENCHMARKS = {
    "ledger": "tools.bench.ledger_bench",
    "credentials": "tools.bench.credentials_bench",
    "network": "tools.bench.network_bench",
    "soak": "tools.bench.soak_bench",
    "scale": "tools.bench.scale_bench",
}


class Report:
    """Collects lines of figures and prints them as they come."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def figure(self, name: str, value: float, unit: str, note: str = "") -> None:
        print(f"  {name:<58} {value:>14,.2f} {unit:<12} {note}", flush=True)

    def target(self, name: str, ok: bool, detail: str) -> None:
        mark = "met" if ok else "MISSED"
        print(f"  target {name}: {mark} ({detail})", flush=True)
        if not ok:
            self.failures.append(name)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    collector.settle()  # as the node and the mekong CLI do at start (node.server.main)
    report = Report()
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 3
        module = importlib.import_module(BENCHMARKS[name])
        print(f"[{name}]", flush=True)
        started = time.perf_counter()
        module.run(report)
        print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
    if report.failures:
        print(f"targets missed: {', '.join(report.failures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
