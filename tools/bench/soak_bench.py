"""Soak benchmark: a six-member network under steady load, one node killed and restarted every 30 s.

Run with ``make bench`` or ``python -m tools.bench soak`` (``MEKONG_SOAK_SECONDS`` sets how long the load
runs, default 150). Every owner submits batches of pre-signed anchors on a fixed schedule (open loop),
each POST with ``?wait=final``; meanwhile a killer thread sends SIGKILL to one node every
``KILL_EVERY`` seconds, in turn, and restarts it ``DOWN_SECONDS`` later. A batch answered 200 is
acknowledged: durable on its owner (spec 7.2). When the load stops, the network gets up to a minute to
settle, then the benchmark reports entries acknowledged, made final (on every node), lost (acknowledged
but not final everywhere: must be 0), and the worst time from submission to finality, against the raw
Ed25519 baseline of the same run for the rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from ledger import cbor
from tools.bench.network_bench import _LIMITS, _MEMBERS, _Member, _raw_verify_rate
from tools.devnet import network as dn

KILL_EVERY = 30.0
DOWN_SECONDS = 3.0
BATCH = 50
RATE = 300  # entries per second offered in all, below saturation: the point is faults, not throughput


def _killer(net: dn.Devnet, stop: threading.Event, log: list[str]) -> None:
    ids = [m.id for m in net.members]
    turn = 0
    while not stop.wait(KILL_EVERY):
        victim = ids[turn % len(ids)]
        turn += 1
        dn.stop_member(net, victim, kill=True)
        log.append(victim)
        stop.wait(DOWN_SECONDS)
        dn.start(net, [victim], timeout=60)


async def _load(members: list[_Member], seconds: float) -> tuple[dict[str, int], list[float], int]:
    """Open loop for ``seconds``: per owner the highest acknowledged size, the latencies, the refusals."""
    acked: dict[str, int] = {m.id: 0 for m in members}
    latencies: list[float] = []
    refused = 0
    period = len(members) * BATCH / RATE

    async def one(session: aiohttp.ClientSession, m: _Member, batch: list[bytes]) -> None:
        nonlocal refused
        t0 = time.perf_counter()
        try:
            async with session.post(f"{m.url}/logs/{m.id}/entries?wait=final", data=cbor.encode(batch),
                                    headers={"Content-Type": "application/cbor"}) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            refused += 1  # the owner was down: not acknowledged
            return
        if resp.status != 200:
            refused += 1
            return
        acked[m.id] = max(acked[m.id], int(body["size"]))
        if body.get("final_size") is not None:
            latencies.append(time.perf_counter() - t0)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for m in members:
            async with session.post(f"{m.url}/logs/{m.id}/entries?wait=final", data=cbor.encode(m.registration),
                                    headers={"Content-Type": "application/cbor"}) as resp:
                await resp.read()
        tasks = []
        started = time.perf_counter()
        k = 0
        while time.perf_counter() - started < seconds:
            for i, m in enumerate(members):
                due = started + k * period + i * period / len(members)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(session, m, m.take(BATCH))))
            k += 1
        await asyncio.gather(*tasks)
    return acked, latencies, refused


def _final_everywhere(net: dn.Devnet, log: str) -> int:
    """The smallest final size of ``log`` over every node (0 where a node answers nothing)."""
    sizes = []
    for m in net.members:
        try:
            with urllib.request.urlopen(m.url + "/status", timeout=5) as resp:
                sizes.append(int(json.loads(resp.read())["logs"][log]["final_size"] or 0))
        except (OSError, ValueError, KeyError):
            sizes.append(0)
    return min(sizes)


def run(report: Any) -> None:
    """Run the soak and report its figures (see the module docstring)."""
    seconds = float(os.environ.get("MEKONG_SOAK_SECONDS", "150"))
    raw = _raw_verify_rate()
    report.figure("baseline: raw pynacl Ed25519 verify, 1 thread", raw, "verify/s")
    with tempfile.TemporaryDirectory(prefix="mekong-soak-") as d:
        net = dn.create_devnet(Path(d) / "net", dict(_MEMBERS), base_port=dn.free_base_port(6), limits=_LIMITS)
        members = [_Member(m, int(seconds * RATE / 6) + 4 * BATCH) for m in net.members]
        stop, kills = threading.Event(), list[str]()
        try:
            dn.start(net)
            killer = threading.Thread(target=_killer, args=(net, stop, kills), daemon=True)
            killer.start()
            acked, latencies, refused = asyncio.run(_load(members, seconds))
            stop.set()
            killer.join(120)
            dn.start(net, timeout=60)  # whoever the killer left down
            deadline = time.monotonic() + 60
            settled = time.monotonic()
            while time.monotonic() < deadline:
                if all(_final_everywhere(net, m) >= n for m, n in acked.items()):
                    break
                time.sleep(0.5)
            settle = time.monotonic() - settled
            final = {m: _final_everywhere(net, m) for m in acked}
        finally:
            stop.set()
            dn.stop(net)
    total_acked = sum(acked.values()) - 2 * len(acked)  # the registrations are not load
    lost = sum(max(0, acked[m] - final[m]) for m in acked)
    report.figure(f"soak: {seconds:.0f} s at {RATE} entries/s offered, a node killed every {KILL_EVERY:.0f} s",
                  len(kills), "kills", ", ".join(kills))
    report.figure("  entries acknowledged", total_acked, "entries", f"{refused} batches refused (owner down)")
    report.figure("  acknowledged entries final on every node", sum(min(acked[m], final[m]) for m in acked)
                  - 2 * len(acked), "entries", f"settled {settle:.1f} s after the load stopped")
    report.figure("  rate acknowledged, to raw verify (1 core)", total_acked / seconds / raw, "x")
    report.figure("  entries lost (acknowledged, not final everywhere)", lost, "entries")
    worst = max(latencies, default=0.0)
    report.figure("  worst submission to finality (answered final)", worst * 1000, "ms",
                  f"{len(latencies)} batches answered final")
    report.target("soak: no acknowledged entry lost", lost == 0, f"{lost} lost of {total_acked}")
