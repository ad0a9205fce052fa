"""Ledger benchmark: verified appends against raw Ed25519 verification, and proofs on a 1M-entry log.

Run with ``make bench`` or ``python -m tools.bench ledger``. Figures, in one run:

1. baseline: raw pynacl Ed25519 verifications per second, one thread;
2. ``MemberLog.append`` of pre-signed entries in batches of 1,000 on a real
   SQLite file (WAL, ``synchronous=FULL``) in a temporary directory, as
   entries per second and as a ratio to the baseline (target >= 0.7);
3. inclusion proof generation from storage on a 1,000,000-entry log: median
   time per proof (target < 1 ms). That log is synthetic: its leaves are 8-byte
   counters written with their leaf hashes and tree nodes straight through
   ``Storage.append_entries`` (with ``synchronous=NORMAL``), because signing a
   million entries would take minutes and proves nothing about proofs.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nacl.signing

from ledger import merkle
from ledger.bodies import CredentialAnchor, IssuerKeyAdd, IssuerRegister
from ledger.entries import UnverifiedEntry, make_entry
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog, ParallelVerifier
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from ledger.storage import Storage

APPEND_ENTRIES = 20_000
BATCH = 1_000
PROOF_LOG_SIZE = 1_000_000
PROOFS = 2_000
VERIFY_TARGET = 0.7
PROOF_TARGET_MS = 1.0
_MEMBERS = ("CN", "KH", "LA", "MM", "TH", "VN")
_T0 = 1_700_000_000


def _key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"bench " + label.encode()).digest())


def _network() -> tuple[SignedRoot, nacl.signing.SigningKey, nacl.signing.SigningKey]:
    admin = {m: _key(f"admin {m}") for m in _MEMBERS}
    members = tuple(Member(m, f"Member {m}", (bytes(admin[m].verify_key),), bytes(_key(f"node {m}").verify_key),
                           (f"https://{m.lower()}.example",)) for m in _MEMBERS)
    genesis = SignedRoot.create(Root("bench", 1, None, members, 4, 4, 1, _T0), admin.values())
    return genesis, admin["VN"], _key("node VN")


def _entries(admin: nacl.signing.SigningKey, n: int) -> list[bytes]:
    issuer_key = _key("issuer VN")
    issuer = "VN/customs"
    out = [make_entry("VN", "issuer.register", _T0, IssuerRegister(issuer, "Customs", ("certificate-of-origin",),
                                                                    "high", "VN"), admin),
           make_entry("VN", "issuer.key.add", _T0, IssuerKeyAdd(issuer, bytes(issuer_key.verify_key), _T0), admin)]
    out += [make_entry("VN", "credential.anchor", _T0 + 1 + i // 100, CredentialAnchor(
        issuer, hashlib.sha256(b"credential %d" % i).digest(), credential_id=hashlib.sha256(b"cti %d" % i).digest()[:16]), issuer_key)
        for i in range(n - 2)]
    return out


def _raw_verify_rate(raws: list[bytes]) -> float:
    jobs = []
    issuer_pub = bytes(_key("issuer VN").verify_key)
    for raw in raws[2:5002]:
        e = UnverifiedEntry.decode(raw)
        jobs.append((nacl.signing.VerifyKey(issuer_pub), e.to_be_signed(), e.sign1.signature))
    started = time.perf_counter()
    for vk, msg, sig in jobs:
        vk.verify(msg, sig)
    return len(jobs) / (time.perf_counter() - started)


def _append_rate(tmp: Path, genesis: SignedRoot, node_key: nacl.signing.SigningKey, raws: list[bytes]) -> float:
    with Storage.open(tmp / "append.db") as store:
        chain = GovernanceChain.from_genesis(genesis, genesis.root_hash)
        pool = ParallelVerifier(processes=True)  # as a node process does; started by the first, untimed batch
        log = MemberLog(store, "VN", "bench", RegistryState(chain), node_key, verifier=pool)
        log.append(raws[:2])
        body = raws[2:]
        started = time.perf_counter()
        for i in range(0, len(body), BATCH):
            log.append(body[i:i + BATCH])
        elapsed = time.perf_counter() - started
        log.checkpoint()
        log.close()
        pool.close()
        assert store.size("VN") == len(raws)
    return len(body) / elapsed


def _proof_times(tmp: Path, report: Any) -> list[float]:
    log = "XX"
    with Storage.open(tmp / "proofs.db", synchronous="NORMAL") as store:
        started = time.perf_counter()
        step = 100_000
        for start in range(0, PROOF_LOG_SIZE, step):
            raws = [i.to_bytes(8, "big") for i in range(start, min(start + step, PROOF_LOG_SIZE))]
            leaves = [merkle.leaf_hash(r) for r in raws]
            nodes = merkle.stored_hashes_for_batch(start, leaves, lambda lv, i: store.get_node(log, lv, i))
            store.append_entries(log, start, raws, leaves, nodes)
        report.figure("synthetic 1M-entry log built (leaves + nodes via Storage)", time.perf_counter() - started, "s",
                      "not signed entries")

        def get(level: int, idx: int) -> bytes:
            return store.get_node(log, level, idx)

        size = PROOF_LOG_SIZE
        root = merkle.tree_root(size, get)
        rng = random.Random(7)
        times = []
        for _ in range(PROOFS):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            proof = merkle.inclusion_proof(index, size, get)
            times.append(time.perf_counter() - t0)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(index.to_bytes(8, "big")), proof, root)
    return times


def run(report: Any) -> None:
    """Measure and report the ledger figures (see the module docstring)."""
    genesis, admin, node_key = _network()
    started = time.perf_counter()
    raws = _entries(admin, APPEND_ENTRIES)
    report.figure(f"pre-signed {len(raws):,} entries", time.perf_counter() - started, "s")

    with tempfile.TemporaryDirectory(prefix="mekong-bench-") as d:
        tmp = Path(d)
        # The baseline is measured just before and just after the appends and averaged, so that
        # load from other processes on a shared machine weighs on both sides of the ratio alike.
        before = _raw_verify_rate(raws)
        rate = _append_rate(tmp, genesis, node_key, raws)
        raw_rate = (before + _raw_verify_rate(raws)) / 2
        report.figure("baseline: raw pynacl Ed25519 verify, 1 thread", raw_rate, "verify/s")
        ratio = rate / raw_rate
        report.figure(f"MemberLog.append, batches of {BATCH:,}, SQLite FULL", rate, "entries/s")
        report.figure("  ratio to raw verify", ratio, "x")
        report.target(f"append >= {VERIFY_TARGET} x raw verify", ratio >= VERIFY_TARGET,
                      f"{ratio:.2f} x ({rate:,.0f} / {raw_rate:,.0f} per s)")

        times = _proof_times(tmp, report)
        median_ms = statistics.median(times) * 1000
        report.figure(f"inclusion proof on {PROOF_LOG_SIZE:,} entries, median", median_ms, "ms",
                      f"{PROOFS:,} random leaves, from SQLite")
        report.figure("  p99", sorted(times)[int(len(times) * 0.99)] * 1000, "ms")
        report.target(f"inclusion proof < {PROOF_TARGET_MS} ms", median_ms < PROOF_TARGET_MS, f"{median_ms:.3f} ms")
