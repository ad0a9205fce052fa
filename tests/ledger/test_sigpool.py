"""The signature pool (ledger.sigpool, spec 7.3 step 5): checks ahead of the rules, worker processes.

A check made ahead of the rules is a result kept for later: it may count only for the very job (key,
Sig_structure, signature) the rules then ask for. These tests play the entry whose signature passes ahead
under one key while the rules ask for another, the key a batch itself adds, and a worker process that dies.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nacl.signing
import pytest
from test_memberlog import NETWORK, Net, _key, anchors, bad_signature, make_net, setup_entries

from ledger.bodies import CredentialAnchor, IssuerKeyAdd
from ledger.cose import sign1
from ledger.entries import ENTRY_CONTENT_TYPE, UnverifiedEntry, make_entry
from ledger.errors import VerificationError
from ledger.memberlog import MemberLog
from ledger.registry import RegistryState
from ledger.rules import SignatureJob
from ledger.sigpool import MIN_CHUNK, ParallelVerifier, check_each
from ledger.storage import Storage


def _jobs(n: int, key: nacl.signing.SigningKey) -> list[SignatureJob]:
    out = []
    for i in range(n):
        message = b"message %d" % i
        out.append((bytes(key.verify_key), message, key.sign(message).signature))
    return out


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


def _log(net: Net, tmp_path: Path, verifier: ParallelVerifier | None = None) -> MemberLog:
    db = Storage.open(tmp_path / "n.db")
    db.put_root(1, net.genesis.to_cbor())
    log = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"], verifier=verifier)
    log.append(setup_entries(net, "VN"))
    return log


def test_check_each_flags_every_job() -> None:
    jobs = _jobs(3, _key("k"))
    jobs[1] = (jobs[1][0], b"another message", jobs[1][2])
    assert check_each(jobs) == [True, False, True]


def test_a_check_ahead_counts_only_for_the_same_job() -> None:
    pool = ParallelVerifier()
    try:
        good, other = _jobs(2, _key("k")), _jobs(2, _key("other"))
        spoiled = (good[1][0], good[1][1], other[1][2])  # k's message with another key's signature
        ahead = pool.check_ahead([good[0], spoiled, other[1]])
        assert ahead.covers(good[0]) and ahead.covers(spoiled) and not ahead.covers(good[1])
        ahead.require([good[0], other[1], good[1]])  # the passing ones, and one not checked ahead
        with pytest.raises(VerificationError):
            ahead.require([good[0], spoiled])
    finally:
        pool.close()


def test_a_signature_that_passes_ahead_under_another_key_is_refused(net: Net, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # An anchor carrying the issuer key's id but signed by an outsider: made to pass ahead under the
    # outsider's key (as a wrong guess of the key would), it is still refused, because the rules ask for the
    # issuer's key and that job was never checked.
    log = _log(net, tmp_path)
    outsider = _key("outsider")
    honest = UnverifiedEntry.decode(anchors(net, "VN", 1)[0])
    forged = sign1(honest.sign1.payload, outsider, kid=honest.kid, content_type=ENTRY_CONTENT_TYPE)
    entry = UnverifiedEntry.decode(forged)
    assert entry.kid == honest.kid
    monkeypatch.setattr(log, "_jobs_ahead", lambda unverified: [
        (bytes(outsider.verify_key), u.to_be_signed(), u.sign1.signature) for u in unverified])
    assert check_each(log._jobs_ahead([entry])) == [True]
    with pytest.raises(VerificationError, match="entry 2"):
        log.append([forged])
    assert log.size == 2
    log.close()


def test_a_key_the_batch_adds_is_checked_after_the_rules(net: Net, tmp_path: Path) -> None:
    # The second key is added in the same batch as an anchor it signs: nothing names it ahead, so its check
    # is the rules' own; a bad signature under it fails the batch, a good one passes.
    log = _log(net, tmp_path)
    second = _key("second VN key")
    add = make_entry("VN", "issuer.key.add", net_time := 1_700_000_050,
                     IssuerKeyAdd("VN/customs", bytes(second.verify_key), net_time), net.admin["VN"])
    anchor = make_entry("VN", "credential.anchor", net_time + 1,
                        CredentialAnchor("VN/customs", b"\x07" * 32), second)
    assert log._jobs_ahead([UnverifiedEntry.decode(anchor)]) == []
    with pytest.raises(VerificationError, match="entry 3"):
        log.append([add, bad_signature(anchor)])
    assert log.append([add, anchor]) == [2, 3]
    log.close()


@pytest.fixture()
def busy_pool() -> Iterator[ParallelVerifier]:
    """A one-worker pool whose worker is held busy until the test ends: only the caller can check."""
    executor, hold = ThreadPoolExecutor(1), threading.Event()
    executor.submit(hold.wait)
    try:
        yield ParallelVerifier(1, executor, take_back=True)
    finally:
        hold.set()
        executor.shutdown(wait=True)


def _finishes(work: Callable[[], object], seconds: float = 20.0) -> list[object]:
    # Runs work in a thread; [result] or [exception] once done, [] if it is still waiting after ``seconds``.
    out: list[object] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return out


def test_the_caller_checks_the_chunks_no_worker_started(busy_pool: ParallelVerifier) -> None:
    # The worker never gets to them: waiting would hang unless the caller takes them back.
    jobs = _jobs(300, _key("k"))
    assert _finishes(busy_pool.start(jobs).wait) == [None]
    forged = jobs[:299] + [(jobs[299][0], b"forged", jobs[299][2])]
    found = _finishes(busy_pool.start(forged).wait)
    assert len(found) == 1 and isinstance(found[0], VerificationError)


def test_checks_ahead_taken_back_keep_each_job_s_verdict(busy_pool: ParallelVerifier) -> None:
    jobs = _jobs(200, _key("k"))
    jobs[7] = (jobs[7][0], b"forged", jobs[7][2])
    ahead = busy_pool.check_ahead(jobs)
    assert _finishes(lambda: ahead.require(jobs[8:])) == [None]
    found = _finishes(lambda: ahead.require(jobs[:8]))
    assert len(found) == 1 and isinstance(found[0], VerificationError)


def test_chunks_cover_every_job_in_order_and_shrink_towards_the_end() -> None:
    pool = ParallelVerifier(1)
    try:
        jobs = _jobs(1000, _key("k"))
        submitted = pool.start(jobs)
        submitted.wait()
        sizes = [len(c) for c in submitted.chunks]
        assert [j for c in submitted.chunks for j in c] == jobs
        assert sizes == sorted(sizes, reverse=True) or sizes[:-1] == sorted(sizes[:-1], reverse=True)
        assert sizes[0] > 4 * MIN_CHUNK and min(sizes[:-1]) == MIN_CHUNK
    finally:
        pool.close()


def test_worker_processes_verify_and_survive_a_dead_worker(net: Net, tmp_path: Path) -> None:
    pool = ParallelVerifier(processes=True)
    try:
        jobs = _jobs(100, _key("k"))
        pool(jobs)
        with pytest.raises(VerificationError):
            pool(jobs[:50] + [(jobs[50][0], b"x", jobs[50][2])])
        assert all(pool.check_ahead(jobs).futures[0].result())
        for pid in list(pool._executor._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        pool(jobs)  # the pool is broken: checked here, and a new pool started for what follows
        pool(jobs)
        log = _log(net, tmp_path, pool)  # appends through worker processes, checks ahead included
        assert log.append(anchors(net, "VN", 40)) == list(range(2, 42))
        with pytest.raises(VerificationError, match="entry 42"):
            log.append([bad_signature(anchors(net, "VN", 1, first=100)[0])])
        log.close()
    finally:
        pool.close()


_ORPHAN_SCRIPT = """
import sys, time
from ledger.sigpool import ParallelVerifier
pool = ParallelVerifier(2, processes=True)
pool([])
pool._executor.submit(time.sleep, 0).result()
print(" ".join(str(p) for p in pool._executor._processes), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_worker_processes_end_when_their_parent_is_killed() -> None:
    # A node killed outright (SIGKILL, the OOM killer) must not leave its signature workers behind.
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "a signature worker outlived its killed parent"


def test_warm_starts_every_worker_process_before_the_first_batch() -> None:
    pool = ParallelVerifier(2, processes=True)
    try:
        assert len(pool._executor._processes) == 0  # type: ignore[attr-defined]
        pool.warm()
        assert len(pool._executor._processes) == 2  # type: ignore[attr-defined]
        pool(_jobs(4, _key("k")))
    finally:
        pool.close()
    threads = ParallelVerifier()
    threads.warm()  # nothing to start
    threads.close()
