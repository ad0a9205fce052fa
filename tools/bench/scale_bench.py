"""Scale benchmark: state maps, light verification and proof bundles, from a small log to a million entries.

Run with ``make bench`` or ``python -m tools.bench scale``; ``MEKONG_SCALE_ENTRIES`` sets the large size
(default 1,000,000). Everything goes through the library (no HTTP: the node's answer is built by the same
``node.stateapi.state_answer`` a node serves), on a real SQLite file in a temporary directory
(``synchronous=NORMAL`` to build faster). Figures, in one run:

1. baselines: raw Ed25519 verifications per second, one thread and two threads;
2. ``MemberLog.append`` of pre-signed anchors with state maintenance, in batches of 1,000, as a ratio to
   one-thread raw verification, over the first 100,000 entries and over the last 100,000 (target >= 0.6),
   with the bytes written to disk per entry over each (a figure the machine's noise does not move);
3. light verification of one credential at a small log and at the large one: verifier CPU per
   verification once the governance chain is cached (open the node's answers, every proof, the proof of
   existence, and the verification engine; target < 50 ms), the bytes the node sent (target < 16 KB), the
   proof bundle's size (target < 8 KB) and offline verification of the bundle file (target < 5 ms);
4. a node's restart on the database (``ledger.reopen.open_registry`` and the member logs: spec 7.5.3;
   target < 5 s) and a full replay of it (what ``mekong audit replay`` does), the replay as a ratio to
   two-thread raw verification (target >= 0.75), with the floor any replay pays per entry before its rules
   (reading, decoding, hashing) against what the target leaves for it;
5. the resident memory of this process, which holds the registry as a node does (issuers, keys and
   policies in memory, anchors and credential status in the database), at 100,000 entries and at the end
   (target: growth < 100 MB);
6. a new node catching up: every entry of both logs read from the database and appended to an empty one
   by ``MemberLog.append_replicated`` with the checkpoint each range must lead to (decoding, rules,
   signatures, tree and its check against the checkpoint, state map; the HTTP transfer and the serving
   node's proofs are left out), target < 2 minutes for the million.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import nacl.signing

from credentials.bundle import ExistenceProof, ProofBundle, bundle_roots, open_bundle, required_keys
from credentials.bundlenotes import trim_notes
from credentials.issue import issue_credential
from credentials.steps import VerificationPolicy
from credentials.verify import verify
from ledger import merkle
from ledger.bodies import CredentialAnchor, MemberPolicy, PolicyRule
from ledger.checkpoint import Checkpoint, CosignatureSigner, witness_name
from ledger.entries import UnverifiedEntry, make_entry
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog, ParallelVerifier, TargetTree
from ledger.reopen import open_registry
from ledger.replay import replay
from ledger.roots import SignedRoot
from ledger.storage import Storage
from node.stateapi import state_answer
from tools.bench.credentials_bench import _profiles
from tools.bench.ledger_bench import _entries, _key, _network

BATCH = 1_000
WINDOW = 100_000
APPEND_TARGET = 0.6
REPLAY_TARGET = 0.75
VERIFY_MS_TARGET = 50.0
FETCH_TARGET = 16 * 1024
BUNDLE_TARGET = 8 * 1024
OFFLINE_MS_TARGET = 5.0
_T0 = 1_700_000_000
_WITNESSES = ("CN", "KH", "TH", "VN")


def _proc_number(path: str, field: str) -> int:
    # The number after ``field`` in a /proc file of this process (Linux); 0 where the file or field is missing.
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_mb() -> float:
    return _proc_number("/proc/self/status", "VmRSS:") / 1024


def _written() -> int:
    # Bytes this process caused to be written to storage (Linux).
    return _proc_number("/proc/self/io", "write_bytes:")


def _raw_rates(raws: list[bytes]) -> tuple[float, float]:
    pub = nacl.signing.VerifyKey(bytes(_key("issuer VN").verify_key))
    jobs = [(UnverifiedEntry.decode(r)) for r in raws[2:6002]]
    msgs = [(e.to_be_signed(), e.sign1.signature) for e in jobs]
    started = time.perf_counter()
    for m, s in msgs:
        pub.verify(m, s)
    one = len(msgs) / (time.perf_counter() - started)
    with ThreadPoolExecutor(2) as pool:
        half = len(msgs) // 2
        started = time.perf_counter()
        list(pool.map(lambda part: [pub.verify(m, s) for m, s in part], (msgs[:half], msgs[half:])))
        two = len(msgs) / (time.perf_counter() - started)
    return one, two


def _finalize(lg: MemberLog, t: int) -> None:
    note = lg.checkpoint()
    cp = Checkpoint.parse(note.text)
    lg.add_cosignatures(cp.size, [CosignatureSigner(witness_name("bench", w), _key(f"node {w}")).cosign(cp, t)
                                  for w in _WITNESSES])


def _fillers(issuer_key: nacl.signing.SigningKey, start: int, n: int) -> list[bytes]:
    # Credential ids as random as real ctis: sequential ones would put every credential_anchors row at the
    # end of its table and hide the page a random id writes (spec 7.1.15).
    return [make_entry("VN", "credential.anchor", _T0 + 2, CredentialAnchor(
        "VN/customs", hashlib.sha256(b"filler %d" % i).digest(),
        credential_id=hashlib.sha256(b"cti %d" % i).digest()[:16]), issuer_key) for i in range(start, start + n)]


def _bundle(vn: MemberLog, th: MemberLog, credential: bytes, anchor_index: int, covering: int,
            chain: GovernanceChain) -> tuple[ProofBundle, int]:
    keys, _ = required_keys(credential, "TH")
    answers = (("VN", state_answer(vn, keys["VN"])), ("TH", state_answer(th, keys["TH"])))
    size = vn.size
    note = vn.served_note(covering, first=True) if covering != vn.size else b""
    consistency = tuple(vn.consistency_proof(covering, size)) if covering != size else ()
    existence = ExistenceProof("VN", anchor_index, note, consistency)
    roots = bundle_roots(chain)
    bundle = trim_notes(ProofBundle(chain.current.network, roots, answers, (existence,)), chain)
    fetched = sum(len(a) for _, a in answers) + len(note) + 32 * len(consistency)
    return bundle, fetched


def _verify_costs(bundle: ProofBundle, credential: bytes, pin: bytes, now: int, rounds: int = 30) -> tuple[float, float]:
    policy = VerificationPolicy("TH", max_age_seconds=10 ** 9)
    data = bundle.encode()
    started = time.process_time()
    for _ in range(rounds):
        report = verify(credential, open_bundle(bundle, pin, credential, "TH"), policy, now)
    light = (time.process_time() - started) / rounds
    assert report.indication == "TOTAL-PASSED", (report.indication, report.sub_indication)
    started = time.process_time()
    for _ in range(rounds):
        verify(credential, open_bundle(ProofBundle.decode(data), pin, credential, "TH"), policy, now)
    offline = (time.process_time() - started) / rounds
    return light * 1000, offline * 1000


def _light_figures(report: Any, label: str, vn: MemberLog, th: MemberLog, credential: bytes, anchor_index: int,
                   covering: int, chain: GovernanceChain, pin: bytes, raw_one: float) -> None:
    bundle, fetched = _bundle(vn, th, credential, anchor_index, covering, chain)
    light_ms, offline_ms = _verify_costs(bundle, credential, pin, _T0 + 100)
    size = len(bundle.encode())
    report.figure(f"light verify CPU, {label}", light_ms, "ms", f"= {light_ms / 1000 * raw_one:.0f} raw Ed25519 verifies")
    report.figure(f"bytes from the node, {label}", fetched, "bytes")
    report.figure(f"proof bundle, {label}", size, "bytes", f"(governance roots: {sum(len(r) for r in bundle.roots)})")
    report.figure(f"offline bundle verify CPU, {label}", offline_ms, "ms")
    report.target(f"light verify < {VERIFY_MS_TARGET:.0f} ms ({label})", light_ms < VERIFY_MS_TARGET, f"{light_ms:.1f} ms")
    report.target(f"fetched < 16 KB ({label})", fetched < FETCH_TARGET, f"{fetched} bytes")
    report.target(f"bundle < 8 KB ({label})", size < BUNDLE_TARGET, f"{size} bytes")
    report.target(f"offline verify < {OFFLINE_MS_TARGET:.0f} ms ({label})", offline_ms < OFFLINE_MS_TARGET,
                  f"{offline_ms:.1f} ms")


def run(report: Any) -> None:
    """Measure and report the scale figures (see the module docstring)."""
    n = int(os.environ.get("MEKONG_SCALE_ENTRIES", "1000000"))
    genesis, admin, node_key = _network()
    chain = GovernanceChain.from_genesis(genesis, genesis.root_hash)
    issuer_key = _key("issuer VN")
    setup = _entries(admin, 6002)  # issuer.register, issuer.key.add, then anchors (for the baselines)
    raw_one, raw_two = _raw_rates(setup)
    report.figure("baseline: raw Ed25519 verify, 1 thread", raw_one, "verifies/s")
    report.figure("baseline: raw Ed25519 verify, 2 threads", raw_two, "verifies/s")
    with tempfile.TemporaryDirectory(prefix="mekong-scale-") as tmp:
        path = Path(tmp) / "scale.db"
        store = Storage.open(path, synchronous="NORMAL")
        store.put_root(1, genesis.to_cbor())
        state = open_registry(store, genesis, genesis.root_hash)[1]
        pool = ParallelVerifier(processes=True)  # as a node process checks signatures (node.server.serve)
        vn = MemberLog(store, "VN", "bench", state, node_key, verifier=pool)
        th = MemberLog(store, "TH", "bench", state, _key("node TH"), verifier=pool)
        th.append([make_entry("TH", "member.policy", _T0, MemberPolicy((PolicyRule("VN", ("*",), "substantial"),)),
                              _key("admin TH"))])
        _finalize(th, _T0 + 1)
        # the credential, anchored early: its proof of existence is the small log's final checkpoint
        _, coo = _profiles(1)
        credential = issue_credential(coo, "VN/customs", issuer_key, _T0 + 1, cti=b"\x01" * 16)
        _, digest = required_keys(credential, "TH")
        vn.append(setup[:2] + [make_entry("VN", "credential.anchor", _T0 + 1, CredentialAnchor(
            "VN/customs", digest, credential_id=b"\x01" * 16), issuer_key)])
        vn.append(_fillers(issuer_key, 0, 1997))
        _finalize(vn, _T0 + 10)
        covering = vn.size
        _light_figures(report, f"log of {vn.size:,}", vn, th, credential, 2, covering, chain, genesis.root_hash,
                       raw_one)
        rates: list[tuple[int, float, float]] = []  # (size after, entries/s, bytes written per entry)
        rss_small = 0.0
        while vn.size < n:
            chunk = _fillers(issuer_key, vn.size, min(10_000, n - vn.size))
            started, written = time.perf_counter(), _written()
            for i in range(0, len(chunk), BATCH):
                vn.append(chunk[i:i + BATCH])
            rates.append((vn.size, len(chunk) / (time.perf_counter() - started), (_written() - written) / len(chunk)))
            if not rss_small and vn.size >= WINDOW:
                rss_small = _rss_mb()
        _finalize(vn, _T0 + 20)
        first = [(r, w) for s, r, w in rates if s <= WINDOW] or [rates[0][1:]]
        last = [(r, w) for s, r, w in rates if s > n - WINDOW] or [rates[-1][1:]]
        for name, rs in (("first 100k", first), ("last 100k", last)):
            rate = len(rs) / sum(1 / r for r, _ in rs)
            report.figure(f"append with state, {name}", rate, "entries/s", f"= {rate / raw_one:.2f} x raw")
            report.figure(f"  bytes written to disk per entry, {name}", sum(w for _, w in rs) / len(rs), "bytes",
                          "WAL and checkpoints (/proc/self/io): not noisy, unlike the rate")
            report.target(f"append >= {APPEND_TARGET} x raw ({name})", rate / raw_one >= APPEND_TARGET,
                          f"{rate / raw_one:.2f}")
        _light_figures(report, f"log of {vn.size:,}", vn, th, credential, 2, covering, chain, genesis.root_hash,
                       raw_one)
        rss_big = _rss_mb()
        report.figure("resident memory at 100k entries", rss_small, "MB", "(this process holds the registry as a node)")
        report.figure(f"resident memory at {vn.size:,} entries", rss_big, "MB", f"growth {rss_big - rss_small:.0f} MB")
        report.target("memory growth < 100 MB from 100k", rss_big - rss_small < 100, f"{rss_big - rss_small:.0f} MB")
        vn.close()
        th.close()
        store.close()
        _restart(report, path, genesis, node_key, pool)
        _catch_up(report, path, Path(tmp) / "new.db", genesis, pool)
        pool.close()
        with Storage.open(path) as again:
            started, cpu = time.perf_counter(), time.thread_time()
            # the pool mekong audit replay uses: two threads, which check while replay waits for them
            result = replay(again, genesis, genesis.root_hash)
            took, cpu = time.perf_counter() - started, time.thread_time() - cpu
        assert result.ok, result.problems[:3]
        rate = result.entries_checked / took
        report.figure("full replay (mekong audit replay)", took, "s", f"{rate:,.0f} entries/s"
                      f" = {rate / raw_two:.2f} x 2-thread raw")
        report.target(f"replay >= {REPLAY_TARGET} x 2-thread raw", rate / raw_two >= REPLAY_TARGET, f"{rate / raw_two:.2f}")
        _replay_floor(report, path, raw_one, raw_two, cpu / result.entries_checked * 1e6)


def _replay_floor(report: Any, path: Path, raw_one: float, raw_two: float, thread_us: float) -> None:
    # What any replay pays per entry before its rules, state map and tree: reading, decoding, the leaf hash and
    # the Sig_structure. At the target the two cores have 2 / (target x two-thread raw) of CPU per entry, of
    # which the signature check takes 1 / one-thread raw; the floor must fit in what is left.
    with Storage.open(path) as store:
        n = min(WINDOW, store.size("VN"))
        started = time.perf_counter()
        for lo in range(0, n, BATCH):
            for raw in store.read_entries("VN", lo, min(n, lo + BATCH)):
                merkle.leaf_hash(raw)
                UnverifiedEntry.decode(raw).to_be_signed()
        floor = (time.perf_counter() - started) / n * 1e6
    budget = 2e6 / (REPLAY_TARGET * raw_two) - 1e6 / raw_one
    report.figure(f"  replay floor: read, decode, leaf hash, Sig_structure ({n:,} entries)", floor, "us/entry",
                  f"the target leaves {budget:.1f} us/entry besides the signature for this, the rules, the state"
                  " map and the tree")
    report.figure("  replay's own thread, CPU per entry", thread_us, "us/entry",
                  "everything but the signature checks (those run on the pool's two threads)")
    best = 2e6 / (floor + 1e6 / raw_one)
    report.figure("  replay with nothing but the floor, both cores busy", best, "entries/s",
                  f"= {best / raw_two:.2f} x 2-thread raw (an upper bound)")


def _restart(report: Any, path: Path, genesis: SignedRoot, node_key: nacl.signing.SigningKey,
             pool: ParallelVerifier) -> None:
    # What a node does at start (node.host.LedgerHost): open the database, check it (spec 7.5.3), open its logs.
    started = time.perf_counter()
    with Storage.open(path) as again:
        chain, state = open_registry(again, genesis, genesis.root_hash)
        logs = [MemberLog(again, m, "bench", state, node_key if m == "VN" else None, verifier=pool)
                for m in chain.members_ever]
        took = time.perf_counter() - started
        sizes = {lg.member_id: lg.size for lg in logs if lg.size}
        for lg in logs:
            lg.close()
    report.figure(f"node restart on {sum(sizes.values()):,} entries", took, "s", "(spec 7.5.3: no replay)")
    report.target("node restart < 5 s", took < 5, f"{took:.2f} s")


def _catch_up(report: Any, source: Path, target: Path, genesis: SignedRoot, pool: ParallelVerifier) -> None:
    # A new node: every entry verified and stored again, batch by batch, as its sync loop does.
    with Storage.open(source) as src, Storage.open(target, synchronous="NORMAL") as dst:
        dst.put_root(1, genesis.to_cbor())
        _, state = open_registry(dst, genesis, genesis.root_hash)
        # What the serving node sends with each range (specs/api.md A.9): the proof from the range's end to the
        # checkpoint, made here before the clock starts, as the serving node's work is not the new node's.
        targets = {}
        for m in ("TH", "VN"):
            size, get = src.size(m), partial(src.get_node, m)
            root = merkle.tree_root(size, get)
            for lo in range(0, size, BATCH):
                hi = min(size, lo + BATCH)
                targets[m, lo] = TargetTree(size, root, tuple(merkle.consistency_proof(hi, size, get))
                                            if hi < size else ())
        started = time.perf_counter()
        total = 0
        for m in ("TH", "VN"):
            lg = MemberLog(dst, m, "bench", state, verifier=pool)
            size = src.size(m)
            for lo in range(0, size, BATCH):
                lg.append_replicated(src.read_entries(m, lo, min(size, lo + BATCH)), lo, targets[m, lo])
            total += size
            lg.close()
        took = time.perf_counter() - started
    report.figure(f"new node catch-up, {total:,} entries", took, "s", f"{total / took:,.0f} entries/s")
    report.target("catch-up of the million < 2 minutes", took < 120, f"{took:.0f} s")
