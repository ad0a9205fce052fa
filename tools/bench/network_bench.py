"""Network benchmark: entries made final per second by a devnet of real node processes on this machine.

Run with ``make bench`` or ``python -m tools.bench network``. For a four- and
a six-member devnet (temporary directories, free loopback ports, the real
genesis ceremony of :mod:`tools.devnet.network`), in one run:

1. baseline: raw pynacl Ed25519 verifications per second on one core;
2. every member registers an issuer and its key, then pre-signed
   ``credential.anchor`` entries go to their owners' nodes, every member's
   log at once, each POST with ``?wait=final`` so that its answer comes when a
   checkpoint with a quorum of witness cosignatures covers the batch:

   - **saturation**: ``CLIENTS_PER_OWNER`` clients per owner submit batches
     of ``BATCH`` back to back; entries made final per second, from the first
     submission to the last final answer (target >= 2,000/s for six members),
     its ratio to the raw verification rate, and the time from submission to
     finality of each batch (queueing included, so it grows with the clients);
   - **paced**: batches of ``PACED_BATCH`` sent on a fixed schedule
     (open loop) for ``PACED_SECONDS`` at ``PACED_RATE`` entries per second
     in all, below saturation; the median and p99 time from submission to
     finality (target p99 < 1 s).

Every entry is verified by its owner and again by every witness before it
cosigns, so a network of ``n`` members does ``n`` Ed25519 verifications, ``n``
rule checks and ``n`` durable SQLite writes per entry. On this machine all
``n`` nodes share its cores, so the final rate is bounded by about
``cores / (n * CPU time per entry per node)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing

from ledger import cbor
from ledger.bodies import CredentialAnchor, IssuerKeyAdd, IssuerRegister
from ledger.entries import UnverifiedEntry, make_entry
from ledger.roots import SignedRoot
from node.config import Limits
from tools.devnet import network as dn

#: Entries submitted in the saturation phase, spread over every member's log.
ENTRIES = {4: 24_000, 6: 30_000}
BATCH = 500
CLIENTS_PER_OWNER = 2
PACED_RATE = 1_000
PACED_BATCH = 100
PACED_SECONDS = 8.0
RATE_TARGET = 2_000.0
P99_TARGET_S = 1.0
_MEMBERS = {"CN": "China", "KH": "Cambodia", "LA": "Lao PDR", "MM": "Myanmar", "TH": "Thailand", "VN": "Viet Nam"}
_LIMITS = Limits(max_request_bytes=8 << 20, submitter_entries_per_second=1_000_000, submitter_burst=10_000_000,
                 witness_request_timeout_ms=10_000, witness_quorum_timeout_ms=30_000)


def _raw_verify_rate() -> float:
    key = nacl.signing.SigningKey.generate()
    jobs = []
    for i in range(5000):
        e = UnverifiedEntry.decode(make_entry("VN", "credential.anchor", 1, CredentialAnchor(
            "VN/bench", hashlib.sha256(b"%d" % i).digest()), key))
        jobs.append((e.to_be_signed(), e.sign1.signature))
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared
        started = time.perf_counter()
        for msg, sig in jobs:
            key.verify_key.verify(msg, sig)
        best = max(best, len(jobs) / (time.perf_counter() - started))
    return best


class _Member:
    """One member's pre-signed entries: registration, then anchors handed out in order."""

    def __init__(self, m: dn.DevnetMember, count: int) -> None:
        self.id, self.url = m.id, m.url
        now = int(time.time())
        admin = dn.load_key(m.admin_key)
        issuer = f"{m.id}/bench"
        key = nacl.signing.SigningKey(hashlib.sha256(f"bench issuer {m.id}".encode()).digest())
        self.registration = [
            make_entry(m.id, "issuer.register", now, IssuerRegister(issuer, "Bench issuer", ("certificate-of-origin",),
                                                                    "high", m.id), admin),
            make_entry(m.id, "issuer.key.add", now, IssuerKeyAdd(issuer, bytes(key.verify_key), now - 60), admin)]
        self.anchors = [make_entry(m.id, "credential.anchor", now, CredentialAnchor(
            issuer, hashlib.sha256(b"%s credential %d" % (m.id.encode(), i)).digest()), key) for i in range(count)]
        self.used = 0

    def take(self, n: int) -> list[bytes]:
        out = self.anchors[self.used:self.used + n]
        self.used += len(out)
        return out


async def _post(session: aiohttp.ClientSession, m: _Member, entries: list[bytes]) -> None:
    async with session.post(f"{m.url}/logs/{m.id}/entries?wait=final", data=cbor.encode(entries),
                            headers={"Content-Type": "application/cbor"}) as resp:
        body = await resp.json()
        if resp.status != 200 or body.get("final_size") is None:
            raise RuntimeError(f"{m.id}: {resp.status} {body}")


async def _saturate(session: aiohttp.ClientSession, members: list[_Member], per_owner: int,
                    ) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    final = 0

    async def client(m: _Member, budget: list[int]) -> None:
        nonlocal final
        while budget[0] > 0:
            batch = m.take(min(BATCH, budget[0]))
            budget[0] -= len(batch)
            t0 = time.perf_counter()
            await _post(session, m, batch)
            latencies.append(time.perf_counter() - t0)
            final += len(batch)

    started = time.perf_counter()
    budgets = {m.id: [per_owner] for m in members}
    await asyncio.gather(*(client(m, budgets[m.id]) for m in members for _ in range(CLIENTS_PER_OWNER)))
    return time.perf_counter() - started, latencies, final


async def _paced(session: aiohttp.ClientSession, members: list[_Member]) -> tuple[list[float], float]:
    """Open loop: every owner sends a batch every ``n * PACED_BATCH / PACED_RATE`` seconds."""
    period = len(members) * PACED_BATCH / PACED_RATE
    latencies: list[float] = []

    async def one(m: _Member, batch: list[bytes]) -> None:
        t0 = time.perf_counter()
        await _post(session, m, batch)
        latencies.append(time.perf_counter() - t0)

    tasks = []
    started = time.perf_counter()
    for k in range(int(PACED_SECONDS / period)):
        for i, m in enumerate(members):
            due = started + k * period + i * period / len(members)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(m, m.take(PACED_BATCH))))
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - started


async def _drive(members: list[_Member], per_owner: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as session:
        await asyncio.gather(*(_post(session, m, m.registration) for m in members))
        elapsed, sat_lat, final = await _saturate(session, members, per_owner)
        settle = await _settle(session, members)
        paced_lat, paced_elapsed = await _paced(session, members)
    return {"elapsed": elapsed, "sat": sorted(sat_lat), "final": final, "paced": sorted(paced_lat),
            "paced_elapsed": paced_elapsed, "settle": settle}


async def _settle(session: aiohttp.ClientSession, members: list[_Member], limit: float = 60.0) -> float:
    """Seconds until every node holds every log final at its owner's size: the slowest witnesses' lag."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        statuses = []
        for m in members:
            async with session.get(f"{m.url}/status") as resp:
                statuses.append((await resp.json())["logs"])
        sizes = {m.id: statuses[i][m.id]["size"] for i, m in enumerate(members)}
        if all(st[log]["final_size"] == size for st in statuses for log, size in sizes.items()):
            break
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def _run_network(tmp: Path, n: int, report: Any, raw_rate: float) -> None:
    members = {m: _MEMBERS[m] for m in sorted(_MEMBERS)[:n]}
    net = dn.create_devnet(tmp / f"net{n}", members, base_port=dn.free_base_port(n), limits=_LIMITS)
    per_owner = ENTRIES[n] // n
    paced_per_owner = int(PACED_SECONDS * PACED_RATE / n) + PACED_BATCH
    started = time.perf_counter()
    prepared = [_Member(m, per_owner + paced_per_owner) for m in net.members]
    report.figure(f"{n} members: pre-signed {sum(len(m.anchors) for m in prepared):,} entries",
                  time.perf_counter() - started, "s")
    try:
        dn.start(net)
        r = asyncio.run(_drive(prepared, per_owner))
    finally:
        dn.stop(net)
    quorum = SignedRoot.from_cbor(net.genesis.read_bytes()).root.quorum
    rate = r["final"] / r["elapsed"]
    sat, paced = r["sat"], r["paced"]
    report.figure(f"{n} members (quorum {quorum}): entries made final, saturated", rate, "entries/s",
                  f"{r['final']:,} entries, batches of {BATCH}, {CLIENTS_PER_OWNER} clients x {n} owners")
    report.figure("  ratio to raw verify (1 core)", rate / raw_rate, "x", f"{n} verifications per entry")
    report.figure("  saturated: submission to finality, median", statistics.median(sat) * 1000, "ms",
                  "queueing included")
    report.figure("  saturated: submission to finality, p99", _pct(sat, 0.99) * 1000, "ms")
    report.figure("  then until every node holds every log final", r["settle"], "s",
                  "witnesses beyond the quorum catching up")
    offered = len(paced) * PACED_BATCH / r["paced_elapsed"]
    report.figure(f"  paced at {offered:,.0f} entries/s: submission to finality, median",
                  statistics.median(paced) * 1000, "ms", f"{len(paced)} batches of {PACED_BATCH}, open loop")
    report.figure("  paced: submission to finality, p99", _pct(paced, 0.99) * 1000, "ms")
    if n == 6:
        report.target(f"{n} members: >= {RATE_TARGET:,.0f} final entries/s", rate >= RATE_TARGET,
                      f"{rate:,.0f}/s with {n} nodes on {os.cpu_count()} cores")
    p99 = _pct(paced, 0.99)
    report.target(f"{n} members: p99 submission to finality < {P99_TARGET_S:.0f} s (paced)", p99 < P99_TARGET_S,
                  f"{p99 * 1000:,.0f} ms at {offered:,.0f} entries/s")


def run(report: Any) -> None:
    """Measure and report the network figures (see the module docstring)."""
    raw_rate = _raw_verify_rate()
    report.figure("baseline: raw pynacl Ed25519 verify, 1 thread", raw_rate, "verify/s")
    with tempfile.TemporaryDirectory(prefix="mekong-netbench-") as d:
        for n in (4, 6):
            _run_network(Path(d), n, report, raw_rate)
