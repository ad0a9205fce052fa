"""A local verified replica of the ledger, synced from any node while trusting none.

A replica is a directory holding a SQLite :class:`~ledger.storage.Storage`
(``replica.sqlite``), the pinned genesis (``genesis.cbor``) and a small
``replica.json`` (pin, network, last sync, nodes). Opening it does not replay the database: it is
checked as a node's is at start (:func:`ledger.reopen.open_registry`, spec 7.5.3), at a cost that does not
grow with its length, and ``mekong audit replay --db`` is the full check. :meth:`Replica.sync` runs the steps of :mod:`tools.client.sync` (roots, final
checkpoints under the governance root each names, entries verified before they are stored).

:meth:`Replica.view` is the :class:`credentials.view.RegistryView` the
verification engine judges against: only final state, each log as of its
newest final checkpoint. Left to others: syncing (:mod:`tools.client.sync`), HTTP (:mod:`tools.client.http`),
the verification itself (:mod:`credentials.verify`), output (the CLI).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from credentials.ledgerview import database_view, final_checkpoints
from credentials.view import FinalCheckpoint, RegistryView, fresh_time
from ledger.errors import DecodeError, MekongError, StorageError
from ledger.governance import GovernanceChain, verify_genesis
from ledger.memberlog import MemberLog, ParallelVerifier
from ledger.reopen import open_registry
from ledger.roots import SignedRoot
from ledger.storage import Storage
from tools.client.http import ClientError, NodeClient
from tools.client.sync import Progress, Syncer, SyncReport

__all__ = ["DB_FILE", "Replica", "ReplicaError"]

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


class ReplicaError(MekongError):
    """The replica directory is missing, belongs to another network or pin, or cannot be used."""


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
            # spec 7.5.3: opened without replaying (it was checked entry by entry when synced); mekong audit
            # replay --db is the full check
            self.chain: GovernanceChain
            self.chain, self.state = open_registry(storage, genesis, self.pin)
        except StorageError as e:
            self._close_all(storage, lock)
            raise ReplicaError(f"the replica in {directory} is damaged ({e}); delete it and sync again") from None
        except BaseException:
            self._close_all(storage, lock)
            raise
        self.network = genesis.root.network
        self.logs: dict[str, MemberLog] = {}
        self._open_logs()

    def _close_all(self, storage: Storage, lock: int) -> None:
        self._verifier.close()
        storage.close()
        _unlock(lock)

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
        """Open an existing replica: checked as a node's database is at start (spec 7.5.3), not replayed.

        Raises:
            ReplicaError: no replica there, it is pinned to another genesis, or it fails those checks.
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
        for m in self.chain.members_ever:  # a removed member's log stays, frozen (spec 7.4.2)
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
        """Log -> every recorded final checkpoint (spec 7.1.9), oldest first, with its counted cosignatures."""
        return final_checkpoints(self.logs)

    def view(self) -> RegistryView:
        """The verification engine's view: the registry as of each log's newest final checkpoint."""
        evidence = [f"{e.kind} of log {e.log}: {e.reason}" for e in self.storage.evidence()]
        return database_view(self.state, self.logs, evidence, self.meta.get("withheld_root"))

    def status(self, now: int) -> dict[str, Any]:
        """Where the replica stands: pin, root, last sync and per-log final size and age, as JSON."""
        root = self.chain.current
        logs = {}
        for m, cps in self.final_checkpoints().items():
            newest = cps[-1] if cps else None
            wt = fresh_time(newest, root.faulty, now + 300) if newest else None
            logs[m] = {"size": self.logs[m].size, "final_size": newest.size if newest else None,
                       "witnessed_time": wt, "age_seconds": None if wt is None else max(0, now - wt)}
        last = self.last_sync
        return {"directory": str(self.directory), "network": self.network, "genesis_hash": self.pin.hex(),
                "root_version": root.version, "last_sync": last,
                "last_sync_age_seconds": None if last is None else max(0, now - last), "nodes": self.nodes,
                "logs": logs}

    # ------------------------------------------------------------------ sync

    def sync(self, clients: Sequence[NodeClient], now: int, progress: Progress | None = None) -> SyncReport:
        """Bring the replica up to the newest final state any of ``clients`` can prove (:mod:`tools.client.sync`).

        Raises:
            ClientError: no node answered at all.
            StorageError: the database failed.
        """
        self._open_logs()
        report = Syncer(self.storage, self.chain, self.logs, self._open_logs).run(clients, progress)
        self.meta["last_sync"] = now
        self.meta["nodes"] = list(report.answered)
        # A newer root that a quorum of the current members vouched for, and no node served (Trust II item 3).
        seen = max(report.withheld_root or 0, int(self.meta.get("withheld_root") or 0))
        self.meta["withheld_root"] = seen if seen > self.chain.current.version else None
        self._save_meta()
        return report
