"""A local verified replica of the ledger, synced from any node while trusting none.

A replica is a directory holding a SQLite :class:`~ledger.storage.Storage`
(``replica.sqlite``), the pinned genesis (``genesis.cbor``) and a small
``replica.json`` (pin, network, last sync, nodes). Opening it replays the
database from the pinned genesis (:func:`ledger.replay.replay`), so a damaged
file is noticed. :meth:`Replica.sync`:

1. fetches every governance root the nodes hold and adds each one to the chain
   only if it verifies as the successor of the last (spec 5.4.2);
2. fetches each log's newest final checkpoint from every node and checks the
   owner's signature and the cosignatures by the current root's witness keys
   (:func:`ledger.checkpoint.open_checkpoint`); at least ``quorum`` distinct
   members must have cosigned (spec 7.4.3); two verified checkpoints of one
   size with different roots are a split view, kept as evidence and reported;
3. fetches the entries up to the largest such checkpoint, checks that the root
   recomputed from the stored tree plus the new entries equals the
   checkpoint's root *before* storing anything, then appends them through
   :meth:`ledger.memberlog.MemberLog.append_replicated` (every entry checked
   under the rules, every signature verified) and stores the checkpoint and
   its cosignatures (:meth:`~ledger.memberlog.MemberLog.add_checkpoint`).

:meth:`Replica.view` is the :class:`credentials.view.RegistryView` the
verification engine judges against: only final state, each log as of its
newest final checkpoint. Left to others: the HTTP client (:mod:`tools.client.http`),
the verification itself (:mod:`credentials.verify`), output (the CLI).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from credentials.view import FinalCheckpoint, RegistryView, witnessed_time
from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import ConflictError, DecodeError, EquivocationError, MekongError, StorageError, VerificationError
from ledger.finality import open_signed
from ledger.governance import GovernanceChain, SignedRoot, verify_genesis
from ledger.memberlog import MemberLog, ParallelVerifier
from ledger.note import Note
from ledger.replay import replay
from ledger.storage import Storage
from tools.client.http import ENTRIES_PAGE, ClientError, NodeClient

__all__ = ["LogSync", "Progress", "Replica", "ReplicaError", "SyncReport"]

DB_FILE = "replica.sqlite"
GENESIS_FILE = "genesis.cbor"
META_FILE = "replica.json"
LOCK_FILE = "lock"
META_VERSION = 1


def _lock(directory: Path) -> int:
    """Take the replica directory's lock, waiting for another mekong process using it to finish."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise ReplicaError(f"cannot lock the replica in {directory}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        os.close(fd)
        raise ReplicaError(f"cannot lock the replica in {directory}: {e.strerror or e}") from None
    return fd


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


#: Covering checkpoints fetched per log and sync for proof-of-existence bounds (:meth:`Replica._add_covering`).
MAX_COVERING = 64

class ReplicaError(MekongError):
    """The replica directory is missing, belongs to another network or pin, or cannot be used."""


class Progress(Protocol):
    """Where :meth:`Replica.sync` reports how many entries it fetches (a progress bar, or nothing)."""

    def start(self, total: int, label: str) -> None:
        """``total`` entries are about to be fetched."""

    def advance(self, n: int) -> None:
        """``n`` more entries were fetched and stored."""

    def finish(self) -> None:
        """Fetching is over."""


class _NoProgress:
    def start(self, total: int, label: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(slots=True)
class LogSync:
    """What a sync did to one log.

    Attributes:
        log: member id.
        before: entries held before.
        after: entries held after.
        final_size: size of the newest final checkpoint held after.
        source: the node the checkpoint and entries came from, if any.
        cosigners: members whose cosignatures on that checkpoint verified.
    """

    log: str
    before: int
    after: int
    final_size: int | None
    source: str | None = None
    cosigners: tuple[str, ...] = ()


@dataclass(slots=True)
class SyncReport:
    """What :meth:`Replica.sync` found.

    Attributes:
        answered: nodes that answered.
        failed: node URL -> why it could not be used.
        roots_added: governance root versions newly verified and stored.
        logs: per log, what changed.
        problems: invalid data served by a node (refused, not stored).
        evidence: split views and equivocation: two verified, conflicting
            statements; more than ``f`` members misbehaved.
    """

    answered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    roots_added: list[int] = field(default_factory=list)
    logs: dict[str, LogSync] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"answered": self.answered, "failed": self.failed, "roots_added": self.roots_added,
                "logs": {m: {"before": s.before, "after": s.after, "final_size": s.final_size, "source": s.source,
                             "cosigners": list(s.cosigners)} for m, s in sorted(self.logs.items())},
                "problems": self.problems, "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class _Candidate:
    client: NodeClient
    data: bytes
    checkpoint: Checkpoint
    cosigners: dict[str, int]


class Replica:
    """An open replica directory. Use :meth:`create`, :meth:`open` or :meth:`bootstrap`; call :meth:`close`.

    Attributes:
        directory: where it lives.
        genesis: the pinned genesis root.
        pin: its hash.
        storage: the database.
        chain: the verified governance chain.
        logs: member id -> its log, for every member of the current root.
    """

    def __init__(self, directory: Path, genesis: SignedRoot, storage: Storage, meta: dict[str, Any],
                 lock: int) -> None:
        self._lock = lock
        self.directory = directory
        self.genesis = genesis
        self.pin = genesis.root_hash
        self.storage = storage
        self.meta = meta
        self._verifier = ParallelVerifier()
        try:
            report = replay(storage, genesis, self.pin, self._verifier)
            if not report.ok:
                raise ReplicaError(f"the replica in {directory} does not replay cleanly ({len(report.problems)}"
                                   f" problem(s), first: {report.problems[0]}); delete it and sync again")
        except BaseException:
            self._verifier.close()
            storage.close()
            _unlock(lock)
            raise
        self.chain: GovernanceChain = report.chain
        self.state = report.state
        self.network = genesis.root.network
        self.logs: dict[str, MemberLog] = {}
        self._open_logs()

    # ------------------------------------------------------------------ opening

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """Whether ``directory`` holds a replica."""
        d = Path(directory)
        return (d / META_FILE).is_file() and (d / GENESIS_FILE).is_file()

    @classmethod
    def create(cls, directory: str | Path, genesis: SignedRoot, pin: bytes | None = None) -> Replica:
        """Make a new replica pinned to ``genesis``.

        Args:
            directory: a new or empty directory.
            genesis: the genesis root.
            pin: the hash the caller trusts; None trusts ``genesis`` as given.

        Raises:
            ReplicaError: the directory already holds a replica.
            VerificationError: ``genesis`` does not verify, or is not ``pin``.
        """
        d = Path(directory)
        verify_genesis(genesis, pin)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReplicaError(f"cannot create the replica in {d}: {e.strerror or e}") from None
        lock = _lock(d)
        try:
            if cls.exists(d):
                raise ReplicaError(f"{d} already holds a replica")
            (d / GENESIS_FILE).write_bytes(genesis.to_cbor())
            storage = Storage.open(d / DB_FILE, synchronous="NORMAL")
            storage.put_root(1, genesis.to_cbor())
        except OSError as e:
            _unlock(lock)
            raise ReplicaError(f"cannot create the replica in {d}: {e.strerror or e}") from None
        except BaseException:
            _unlock(lock)
            raise
        meta = {"version": META_VERSION, "network": genesis.root.network, "genesis_hash": genesis.root_hash.hex(),
                "last_sync": None, "nodes": []}
        replica = cls(d, genesis, storage, meta, lock)
        replica._save_meta()
        return replica

    @classmethod
    def open(cls, directory: str | Path, pin: bytes | None = None) -> Replica:
        """Open an existing replica, replaying it from its genesis.

        Raises:
            ReplicaError: no replica there, it is pinned to another genesis, or it does not replay cleanly.
        """
        d = Path(directory)
        if not cls.exists(d):
            raise ReplicaError(f"no replica in {d}")
        try:
            meta = json.loads((d / META_FILE).read_text())
            genesis = SignedRoot.from_cbor((d / GENESIS_FILE).read_bytes())
        except (OSError, ValueError, DecodeError) as e:
            raise ReplicaError(f"the replica in {d} is damaged ({e}); delete it and sync again") from None
        if not isinstance(meta, dict) or meta.get("genesis_hash") != genesis.root_hash.hex():
            raise ReplicaError(f"the replica in {d} is damaged: {META_FILE} does not match {GENESIS_FILE}")
        if pin is not None and pin != genesis.root_hash:
            raise ReplicaError(f"the replica in {d} is pinned to genesis {genesis.root_hash.hex()}, not "
                               f"{pin.hex()}; use another --replica directory for that network")
        lock = _lock(d)
        try:
            storage = Storage.open(d / DB_FILE, synchronous="NORMAL")
        except BaseException:
            _unlock(lock)
            raise
        return cls(d, genesis, storage, meta, lock)

    @classmethod
    def bootstrap(cls, directory: str | Path, clients: Sequence[NodeClient], pin: bytes | None,
                  genesis: SignedRoot | None = None) -> Replica:
        """Open the replica in ``directory``, or create it from ``genesis`` or from a node.

        For a new replica the genesis is ``genesis`` (checked against ``pin``
        when given), or else version 1 as served by the first node that
        answers, which must hash to ``pin``.

        Raises:
            ReplicaError: a new replica with neither ``genesis`` nor ``pin``; a pin mismatch.
            ClientError: no node could provide the genesis.
            VerificationError: the genesis does not verify.
        """
        if cls.exists(directory):
            replica = cls.open(directory, pin)
            if genesis is not None and genesis.payload != replica.genesis.payload:
                replica.close()
                raise ReplicaError(f"the replica in {directory} is pinned to genesis {replica.pin.hex()}, not to "
                                   f"the given genesis {genesis.root_hash.hex()}")
            return replica
        if genesis is not None:
            return cls.create(directory, genesis, pin)
        if pin is None:
            raise ReplicaError("a new replica needs the genesis you trust: --pin HASH (the genesis hash your network"
                               " published), and optionally --genesis FILE")
        errors = []
        for c in clients:
            try:
                candidate = SignedRoot.from_cbor(c.root(1))
            except (ClientError, DecodeError) as e:
                errors.append(str(e))
                continue
            if candidate.root_hash != pin:
                errors.append(f"node {c.url} serves genesis {candidate.root_hash.hex()}, not the pinned {pin.hex()}")
                continue
            return cls.create(directory, candidate, pin)
        raise ReplicaError("no node provided the pinned genesis: " + "; ".join(errors or ["no node given"]))

    @staticmethod
    def saved_nodes(directory: str | Path) -> list[str]:
        """The nodes the replica in ``directory`` last synced from, read without opening it ([] if none)."""
        try:
            meta = json.loads((Path(directory) / META_FILE).read_text())
            return [str(u) for u in meta.get("nodes", [])] if isinstance(meta, dict) else []
        except (OSError, ValueError, AttributeError):
            return []

    def close(self) -> None:
        """Close the database and the verification pool, and release the directory lock."""
        try:
            self._verifier.close()
            self.storage.close()
        finally:
            _unlock(self._lock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_logs(self) -> None:
        for m in self.chain.current.member_ids:
            if m not in self.logs:
                self.logs[m] = MemberLog(self.storage, m, self.network, self.state, verifier=self._verifier)

    def _save_meta(self) -> None:
        tmp = self.directory / f".{META_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.directory / META_FILE)
        except OSError as e:
            raise ReplicaError(f"cannot write {self.directory / META_FILE}: {e.strerror or e}") from None

    # ------------------------------------------------------------------ state

    @property
    def last_sync(self) -> int | None:
        """When the last sync finished (Unix seconds), or None."""
        t = self.meta.get("last_sync")
        return t if isinstance(t, int) else None

    @property
    def nodes(self) -> list[str]:
        """The nodes the last sync used."""
        return [str(u) for u in self.meta.get("nodes", [])]

    def final_checkpoints(self) -> dict[str, list[FinalCheckpoint]]:
        """Log -> every stored checkpoint that is final (under the governance root it names), oldest first."""
        out: dict[str, list[FinalCheckpoint]] = {}
        for m, lg in self.logs.items():
            cps = []
            for size, note in self.storage.checkpoints(m):
                fin = lg.finality(size)
                if fin is not None and fin.final:
                    cps.append(FinalCheckpoint.of(m, size, Checkpoint.parse(Note.parse(note).text).root_hash,
                                                  fin.cosigners))
            out[m] = cps
        return out

    def view(self) -> RegistryView:
        """The verification engine's view: the registry as of each log's newest final checkpoint."""
        return RegistryView(self.state, self.final_checkpoints())

    def status(self, now: int) -> dict[str, Any]:
        """Where the replica stands: pin, root, last sync and per-log final size and age, as JSON."""
        root = self.chain.current
        logs = {}
        for m, cps in self.final_checkpoints().items():
            newest = cps[-1] if cps else None
            wt = witnessed_time(newest, root.faulty) if newest else None
            logs[m] = {"size": self.logs[m].size, "final_size": newest.size if newest else None,
                       "witnessed_time": wt, "age_seconds": None if wt is None else max(0, now - wt)}
        last = self.last_sync
        return {"directory": str(self.directory), "network": self.network, "genesis_hash": self.pin.hex(),
                "root_version": root.version, "last_sync": last,
                "last_sync_age_seconds": None if last is None else max(0, now - last), "nodes": self.nodes,
                "logs": logs}

    # ------------------------------------------------------------------ sync

    def sync(self, clients: Sequence[NodeClient], now: int, progress: Progress | None = None) -> SyncReport:
        """Bring the replica up to the newest final state any of ``clients`` can prove.

        Raises:
            ClientError: no node answered at all.
            StorageError: the database failed.
        """
        progress = progress or _NoProgress()
        report = SyncReport()
        live = self._sync_roots(clients, report)
        if not live:
            raise ClientError(clients[0].url if clients else "", "no node answered: " + "; ".join(
                report.failed.values()) if report.failed else "no node given")
        self._open_logs()
        plans: list[tuple[MemberLog, list[_Candidate]]] = []
        for m in self.chain.current.member_ids:
            lg = self.logs[m]
            report.logs[m] = LogSync(m, lg.size, lg.size, self._final_size(m))
            candidates = self._candidates(lg, live, report)
            if candidates:
                plans.append((lg, candidates))
        total = sum(max(0, c[0].checkpoint.size - lg.size) for lg, c in plans)
        progress.start(2 * total, "fetching and verifying entries")
        try:
            for lg, candidates in plans:
                self._sync_log(lg, candidates, live, report, progress)
        finally:
            progress.finish()
        for m, s in report.logs.items():
            s.after, s.final_size = self.logs[m].size, self._final_size(m)
        self.meta["last_sync"] = now
        self.meta["nodes"] = [c.url for c in live]
        self._save_meta()
        return report

    def _final_size(self, log: str) -> int | None:
        lg = self.logs[log]
        for size, _ in reversed(self.storage.checkpoints(log)):
            fin = lg.finality(size)
            if fin is not None and fin.final:
                return size
        return None

    def _sync_roots(self, clients: Sequence[NodeClient], report: SyncReport) -> list[NodeClient]:
        live = []
        for c in clients:
            try:
                versions, _ = c.root_versions()
            except ClientError as e:
                report.failed[c.url] = str(e)
                continue
            live.append(c)
            report.answered.append(c.url)
            for v in sorted(set(versions)):
                if v < 2:
                    continue  # genesis is pinned; held versions are fetched again to notice equivocation
                try:
                    data = c.root(v)
                    signed = SignedRoot.from_cbor(data)
                    if signed.root.version != v:
                        raise DecodeError(f"asked for version {v}, got version {signed.root.version}")
                    added = v > self.chain.current.version
                    self.chain.add(signed)
                except EquivocationError as e:
                    msg = f"governance equivocation seen via node {c.url}: {e}"
                    report.evidence.append(msg)  # the other root stays out of the chain, kept as evidence
                    self.storage.put_evidence("governance", "root-equivocation", data, msg, self.chain.current.issued_at)
                    break
                except (ClientError, DecodeError, VerificationError) as e:
                    report.problems.append(f"node {c.url}: root version {v} refused: {e}")
                    break
                if added:
                    self.storage.put_root(v, signed.to_cbor())
                    report.roots_added.append(v)
        return live

    def _candidates(self, lg: MemberLog, live: Sequence[NodeClient], report: SyncReport) -> list[_Candidate]:
        """Every node's verified final checkpoint of ``lg``, largest first (:meth:`_sync_log` compares them)."""
        found: list[_Candidate] = []
        for c in live:
            try:
                data = c.checkpoint(lg.member_id)
            except ClientError as e:
                report.problems.append(f"log {lg.member_id}: {e}")
                continue
            if data is None:
                continue
            try:
                _, cp, fin = open_signed(data, self.chain, lg.member_id)
            except (DecodeError, VerificationError) as e:
                report.problems.append(f"node {c.url} serves an invalid checkpoint of log {lg.member_id}: {e}")
                continue
            if not fin.final:
                report.problems.append(f"node {c.url} serves a checkpoint of log {lg.member_id} (size {cp.size}) "
                                       f"with {len(fin.cosigners)} valid cosignatures; quorum is {fin.quorum}")
                continue
            found.append(_Candidate(c, data, cp, dict(fin.cosigners)))
        return sorted(found, key=lambda x: x.checkpoint.size, reverse=True)

    def _sync_log(self, lg: MemberLog, candidates: list[_Candidate], live: Sequence[NodeClient],
                  report: SyncReport, progress: Progress) -> None:
        log = lg.member_id
        synced = False
        before = lg.size
        for cand in candidates:  # largest first: sync to the first that works, check the others against it
            cp = cand.checkpoint
            try:
                if cp.size > lg.size:
                    self._fetch_and_append(lg, cand, live, progress)
                    self._add_covering(lg, cand, before, report)
                elif lg.root_hash(cp.size) != cp.root_hash:
                    held = report.logs[log].source or "an earlier sync"
                    raise ConflictError(f"log {log}: node {cand.client.url} serves a final checkpoint of size "
                                        f"{cp.size} whose root differs from that of the verified entries held "
                                        f"here (from {held})")
                lg.add_checkpoint(cand.data)
            except ConflictError as e:
                report.evidence.append(f"SPLIT VIEW: {e}")
                self.storage.put_evidence(log, "split-view", cand.data, str(e), max(cand.cosigners.values()))
                continue
            except (ClientError, DecodeError, VerificationError, StorageError) as e:
                report.problems.append(f"log {log}: could not sync to size {cp.size} from {cand.client.url}: {e}")
                continue
            if not synced:
                s = report.logs[log]
                s.source, s.cosigners = cand.client.url, tuple(sorted(cand.cosigners))
                synced = True

    def _add_covering(self, lg: MemberLog, cand: _Candidate, start: int, report: SyncReport) -> None:
        """Store the oldest final checkpoints covering the new entries ``start..`` (specs/api.md A.7.2).

        A replica that syncs late would otherwise know only the newest checkpoint, whose witnessed
        time is a later proof-of-existence bound than the network can prove for older entries.
        Each checkpoint is verified like the newest one (owner signature, quorum, root of the
        verified entries); at most :data:`MAX_COVERING` are fetched per log and sync.
        """
        at, end = start, cand.checkpoint.size
        for _ in range(MAX_COVERING):
            if at >= end:
                return
            try:
                data = cand.client.checkpoint(lg.member_id, covering=at)
                if data is None:
                    return
                _, cp, fin = open_signed(data, self.chain, lg.member_id)
                if not at < cp.size <= end or not fin.final:
                    raise VerificationError(f"node {cand.client.url} answered a checkpoint of size {cp.size} "
                                            f"with {len(fin.cosigners)} cosigners for entry {at}")
                if cp.size < end:
                    lg.add_checkpoint(data)
            except (ClientError, DecodeError, VerificationError, ConflictError, StorageError) as e:
                report.problems.append(f"log {lg.member_id}: no covering checkpoint for entry {at}: {e}")
                return
            at = cp.size

    def _fetch_and_append(self, lg: MemberLog, cand: _Candidate, live: Sequence[NodeClient],
                          progress: Progress) -> None:
        log, start, end = lg.member_id, lg.size, cand.checkpoint.size
        sources = [cand.client] + [c for c in live if c is not cand.client]
        raws: list[bytes] = []
        while start + len(raws) < end:
            at = start + len(raws)
            page: list[bytes] | None = None
            errors = []
            for c in sources:
                try:
                    page = c.entries(log, at, min(end, at + ENTRIES_PAGE))
                    break
                except ClientError as e:
                    errors.append(str(e))
            if page is None:
                raise ClientError(cand.client.url, f"entries {at}.. of log {log} unavailable: " + "; ".join(errors))
            raws += page
            progress.advance(len(page))
        # Check the root before storing anything: the stored tree plus the new leaves must give the checkpoint's.
        overlay = {(lv, i): h for lv, i, h in merkle.stored_hashes_for_batch(
            start, [merkle.leaf_hash(r) for r in raws], lambda lv, i: self.storage.get_node(log, lv, i))}
        root = merkle.tree_root(end, lambda lv, i: overlay.get((lv, i)) or self.storage.get_node(log, lv, i))
        if root != cand.checkpoint.root_hash:
            raise VerificationError(f"the entries served do not give the root of the final checkpoint of size "
                                    f"{end}; nothing was stored")
        for i in range(0, len(raws), ENTRIES_PAGE):
            batch = raws[i:i + ENTRIES_PAGE]
            lg.append_replicated(batch, start + i)
            progress.advance(len(batch))
