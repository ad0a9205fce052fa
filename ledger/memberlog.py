"""Member logs: verified appends, reads and proofs (spec 7.3), on top of their checkpoints (spec 7.4).

A :class:`MemberLog` keeps three things in step: the entries and tree hashes in
:class:`~ledger.storage.Storage`, the in-memory :class:`~ledger.registry.RegistryState`,
and the checkpoints the node key signs. A batch is stored and applied everywhere, or nowhere.
One class serves the log a node owns (with the node key; :meth:`MemberLog.append`) and the
replicas of other members' logs (:meth:`MemberLog.append_replicated`,
:meth:`MemberLog.add_checkpoint`); both check every entry the same way.

Left to others: the rules (:mod:`ledger.rules`), Merkle arithmetic (:mod:`ledger.merkle`),
note and cosignature formats (:mod:`ledger.note`, :mod:`ledger.checkpoint`), fetching from
peers and cosigning other logs as a witness (the node).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import nacl.signing

from ledger import merkle
from ledger.checkpoint import Checkpoint, log_origin
from ledger.credbook import book_rows
from ledger.entries import Entry, UnverifiedEntry
from ledger.errors import (
    AuthorizationError,
    ConflictError,
    DecodeError,
    DuplicateEntryError,
    StorageError,
    VerificationError,
)
from ledger.finality import state_reference
from ledger.logcheckpoints import LogCheckpoints
from ledger.note import Note, NoteSigner
from ledger.registry import RegistryState
from ledger.roots import Root
from ledger.rules import SignatureJob
from ledger.sigpool import EarlyChecks, ParallelVerifier, Submitted
from ledger.state import PreparedBatch, StateBatch, plan_prepared, prepare_batch
from ledger.statemap import EMPTY, StateMap, StateProof
from ledger.storage import Storage

__all__ = ["MemberLog", "ParallelVerifier", "RuleBreach", "TargetTree"]


class RuleBreach(VerificationError):
    """A replicated range leads to its checkpoint's root, and an entry of it is refused (malformed, a rule, a
    signature, a replay): the log's owner signed a checkpoint over it (spec 7.3 step 3).

    Attributes:
        size: the size of that checkpoint.
    """

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True, slots=True)
class TargetTree:
    """The tree a replicated range must lead to (spec 7.3 step 3): a checkpoint's size and root hash, and the
    RFC 9162 consistency proof from the tree that ends with the range to it (empty when the range ends at
    ``size``)."""

    size: int
    root_hash: bytes
    proof: tuple[bytes, ...] = ()


class MemberLog(LogCheckpoints):
    """One member's log in a node's database, with its registry state.

    Args:
        storage: the node's database.
        member_id: whose log this is.
        network: the network id (it names the origin, spec 4.3.3).
        state: the registry state, already holding exactly the entries that
            ``storage`` holds for this log (see :func:`ledger.replay.replay`).
        node_key: the node's Ed25519 signing key when the node owns this
            log (it signs checkpoints, spec 7.4.1, and the owner's own
            cosignatures); None for a replica.
        verifier: the signature pool; by default a private 2-thread pool.

    Raises:
        StorageError: ``state`` and ``storage`` disagree about the size of the log.
        VerificationError: ``node_key`` is not the node key the current root
            lists for ``member_id``, or ``member_id`` is not a member.
    """

    def __init__(self, storage: Storage, member_id: str, network: str, state: RegistryState,
                 node_key: nacl.signing.SigningKey | None = None,
                 verifier: ParallelVerifier | None = None) -> None:
        self.storage = storage
        self.member_id = member_id
        self.network = network
        self.state = state
        self.origin = log_origin(network, member_id)
        self._own_verifier = verifier is None
        self._verify = verifier or ParallelVerifier()
        self._signer: NoteSigner | None = None
        self._node_key = node_key
        if node_key is not None:
            signer = NoteSigner(self.origin, node_key)
            if signer.public_key != self.root.node_key_of(member_id):
                raise VerificationError(f"node signer is not the node key of {member_id} in the current root")
            self._signer = signer
        elif not any(member_id in r.member_ids for r in state.chain.roots):
            # a replica may hold the log of a member a later root removed (frozen, spec 7.4.2)
            self.root.member(member_id)  # raises AuthorizationError naming the current root
        if state.size(member_id) != storage.size(member_id):
            raise StorageError(f"log {member_id}: registry state holds {state.size(member_id)} entries,"
                               f" storage {storage.size(member_id)}; replay the database first")
        self._broken: str | None = None
        self._map = self._open_state_map()
        self._map_lock = threading.Lock()  # the map, the stored values and the size change together

    def _open_state_map(self) -> StateMap:
        # spec S.5: the top of the state map from the stored buckets, checked against the stored state root of
        # the whole log; its cost depends on the number of buckets (at most 2^18), not on the log's length.
        try:
            state_map = StateMap(self.storage.state_buckets(self.member_id))
        except DecodeError as e:
            raise StorageError(f"log {self.member_id}: {e}; replay the database (mekong audit replay)") from e
        size = self.storage.size(self.member_id)
        latest = self.storage.latest_state_root(self.member_id)
        if size and (latest is None or latest != (size, state_map.root)):
            raise StorageError(f"log {self.member_id}: the stored state map does not match the stored state root at"
                               f" size {size}; replay the database (mekong audit replay)")
        newest = self.storage.latest_checkpoint(self.member_id)
        if newest is not None and newest[0] == size:  # and the newest checkpoint's signed state line agrees
            try:
                claimed = state_reference(Checkpoint.parse(Note.parse(newest[1]).text))
            except DecodeError as e:
                raise StorageError(f"log {self.member_id}: the stored checkpoint of size {size} is damaged ({e});"
                                   " replay the database (mekong audit replay)") from e
            if claimed != state_map.root:
                raise StorageError(f"log {self.member_id}: the stored state map is not the state the checkpoint of"
                                   f" size {size} carries; replay the database (mekong audit replay)")
        return state_map

    def state_root(self, size: int | None = None) -> bytes | None:
        """The state root after the first ``size`` entries (default: all), None if none was recorded there."""
        size = self.size if size is None else size
        if size == 0:
            return EMPTY
        if size == self.size:
            return self._map.root
        return self.storage.state_root(self.member_id, size)

    def prove_states(self, paths: Sequence[bytes]) -> tuple[int, list[tuple[bytes | None, StateProof]]]:
        """(size, [(encoded value or None, proof)]) for ``paths``, all against the state root at ``size``.

        ``size`` is the log's whole size when called; the answers are taken together, so no append lands
        between them (spec S.3).
        """
        with self._map_lock:
            size = self.size
            out = []
            for path in paths:
                found = self.storage.state_value(self.member_id, path)
                out.append((None if found is None else found[1],
                            self._map.prove(path, partial(self.storage.state_bucket, self.member_id))))
        return size, out

    # ------------------------------------------------------------------ basics

    @property
    def root(self) -> Root:
        """The current governance root (it sets quorum and witness keys)."""
        return self.state.chain.current  # type: ignore[no-any-return]

    @property
    def owner(self) -> bool:
        """Whether this node owns (signs checkpoints for) the log."""
        return self._signer is not None

    @property
    def size(self) -> int:
        """Number of entries stored."""
        return self.storage.size(self.member_id)

    def close(self) -> None:
        """Release the verification pool if this log created it."""
        if self._own_verifier:
            self._verify.close()

    def _get(self, level: int, idx: int) -> bytes:
        return self.storage.get_node(self.member_id, level, idx)

    # ------------------------------------------------------------------ appends (spec 7.3)

    def append(self, raws: Sequence[bytes]) -> list[int]:
        """Verify and append a batch of signed entries to the log this node owns (spec 7.3).

        Returns:
            The durable indices of the entries.

        Raises:
            DecodeError: an entry is malformed (nothing is stored).
            VerificationError: a rule or signature check failed (nothing is stored);
                AuthorizationError when this node does not own the log.
            StorageError: the database failed (nothing is stored).
        """
        if self._signer is None:
            raise AuthorizationError(f"this node does not own log {self.member_id}; use append_replicated")
        return self._append(list(raws), self.size)

    def append_replicated(self, raws: Sequence[bytes], start: int, target: TargetTree | None = None) -> list[int]:
        """Append entries ``start, start+1, ...`` of this log received from a peer (spec 7.3).

        Entries this node already holds must be byte-identical to the stored
        ones and are skipped, so a peer may resend an overlapping range. With
        ``target``, the tree the new entries end must be a prefix of the target
        tree (its proof verifies), checked before anything is stored: entries
        that each keep the rules but are not the checkpoint's (reordered, one
        left out) never reach storage.

        Returns:
            The indices newly stored (empty when everything was already held).

        Raises:
            ConflictError: an entry differs from the stored one at its index
                (evidence of two histories: ``(index, stored, received)``).
            StorageError: ``start`` leaves a gap after the stored entries.
            DecodeError, VerificationError: as :meth:`append`.
        """
        raws = list(raws)
        size = self.size
        if start < 0 or start > size:
            raise StorageError(f"log {self.member_id} has {size} entries; cannot append from {start}")
        overlap = min(size - start, len(raws))
        if overlap:
            held = self.storage.read_entries(self.member_id, start, start + overlap)
            for i, (old, new) in enumerate(zip(held, raws)):
                if old != new:
                    raise ConflictError(f"log {self.member_id} entry {start + i} differs from the stored one",
                                        evidence=(start + i, old, new))
        rest = raws[overlap:]
        return self._append(rest, size, target) if rest else []

    def _append(self, raws: list[bytes], start: int, target: TargetTree | None = None) -> list[int]:
        if self._broken:
            raise StorageError(self._broken)
        if not raws:
            return []
        if target is None:
            return self._append_verified(raws, start, None)
        # Step 3 first for a replicated range: once it leads to the checkpoint, whatever is wrong with it is
        # the checkpoint's own content, signed by the log's owner.
        leaves = [merkle.leaf_hash(r) for r in raws]
        nodes = merkle.stored_hashes_for_batch(start, leaves, self._get)
        self._check_target(start, start + len(raws), nodes, target)
        try:
            return self._append_verified(raws, start, (leaves, nodes))
        except (DecodeError, VerificationError, DuplicateEntryError) as e:  # about the entries, not this node
            raise RuleBreach(f"log {self.member_id} entries {start}-{start + len(raws) - 1} lead to the checkpoint of"
                             f" size {target.size}, and one is refused: {e}", target.size) from e

    def _append_verified(self, raws: list[bytes], start: int,
                         tree: tuple[list[bytes], list[tuple[int, int, bytes]]] | None) -> list[int]:
        log = self.member_id
        # Step 1: decode every entry; the leaf data is the bytes as received.
        unverified = []
        for i, raw in enumerate(raws):
            try:
                u = UnverifiedEntry.decode(raw)
            except DecodeError as e:
                raise DecodeError(f"log {log} entry {start + i}: {e}") from e
            # Step 2: the entry must name this log.
            if u.log != log:
                raise VerificationError(f"log {log} entry {start + i} names log {u.log}")
            unverified.append(u)
        # Step 5, ahead: each signature against the key its key id names in the registry before the batch,
        # on the pool while this thread does steps 3 and 4 (a key the batch itself adds is checked after
        # the rules); only the rules' own jobs count, and a check ahead counts for the same job only.
        ahead = self._verify.check_ahead(self._jobs_ahead(unverified))
        try:
            return self._append_checked(raws, start, unverified, ahead, tree)
        finally:
            ahead.cancel()

    def _jobs_ahead(self, unverified: list[UnverifiedEntry]) -> list[SignatureJob]:
        jobs = []
        for u in unverified:
            key = self.state.live_key(self.member_id, u.kid)
            if key is not None:
                jobs.append((key.key, u.to_be_signed(), u.sign1.signature))
        return jobs

    def _append_checked(self, raws: list[bytes], start: int, unverified: list[UnverifiedEntry],
                        ahead: EarlyChecks, tree: tuple[list[bytes], list[tuple[int, int, bytes]]] | None,
                        ) -> list[int]:
        log = self.member_id
        # Step 3: leaf hashes and the complete subtrees the batch finishes (a replicated range: made and
        # checked against its checkpoint before step 1).
        if tree is None:
            leaves = [merkle.leaf_hash(r) for r in raws]
            tree = leaves, merkle.stored_hashes_for_batch(start, leaves, self._get)
        leaves, nodes = tree
        bodies = [u.body for u in unverified]
        stored = False
        planned: list[StateBatch] = []
        with self._map_lock:  # the map, the stored values and the size change together
            # the stored state values the batch adds to: they also show an entry the log already holds
            prepared = prepare_batch(self._map, start, bodies, leaves, partial(self.storage.state_rows, log))
            self._refuse_replays(leaves, start, prepared)

            def verify_and_store(jobs: Sequence[SignatureJob]) -> None:
                nonlocal stored
                # Step 5: the rules' jobs not checked ahead verify on the pool while this thread plans the
                # state map's change (spec S.4) and writes.
                rest: Submitted = self._verify.start([j for j in jobs if not ahead.covers(j)])

                def verified() -> None:
                    rest.wait()
                    ahead.require(jobs)
                try:
                    planned.append(plan_prepared(self._map, prepared))
                    # Step 6: write, and commit only once every signature verified.
                    self.storage.append_entries(log, start, raws, leaves, nodes, before_commit=verified,
                                                state=planned[0], book=book_rows(start, bodies))
                except BaseException:
                    rest.cancel()
                    raise
                stored = True

            # Step 4: the rules, in order, then (through verify_and_store) steps 5 and 6;
            # step 7: the state changes only after verify_and_store returned.
            try:
                entries: list[Entry] = self.state.apply_batch(log, start, unverified,
                                                              verify_signatures=verify_and_store)
            finally:
                if stored:  # committed: the map follows the stored rows whatever happens next
                    self._map.apply(planned[0].update)
        if not stored:  # the state never asked for signatures: nothing may be stored unverified
            self._broken = f"log {log}: registry applied a batch without verifying signatures"
            raise StorageError(self._broken)
        if self.state.size(log) != start + len(raws):
            self._broken = f"log {log}: storage and registry state disagree after a batch; replay the database"
            raise StorageError(self._broken)
        return [e.index for e in entries]

    def _check_target(self, start: int, end: int, nodes: list[tuple[int, int, bytes]], target: TargetTree) -> None:
        what = f"log {self.member_id} entries {start}-{end - 1} as received"
        if end > target.size:
            raise VerificationError(f"{what} go beyond the checkpoint of size {target.size}; nothing was stored")
        root = merkle.root_with(end, nodes, self._get)
        try:
            if end < target.size:
                merkle.verify_consistency(end, target.size, target.proof, root, target.root_hash)
            elif target.proof or root != target.root_hash:
                raise merkle.ProofError("the tree they end is not the checkpoint's")
        except merkle.ProofError as e:
            raise VerificationError(f"{what} are not those of the checkpoint of size {target.size} ({e});"
                                    " nothing was stored") from e

    def _refuse_replays(self, leaves: list[bytes], start: int, prepared: PreparedBatch) -> None:
        # spec 6.3.18: a log holds each entry once; a replayed entry changes nothing.
        log = self.member_id
        first: dict[bytes, int] = {}
        for i, lh in enumerate(leaves):
            if lh in first:
                raise DuplicateEntryError(f"log {log} entry {start + i}: spec 6.3.18: the same entry is entry"
                                          f" {first[lh]} of this batch; nothing was stored", log, first[lh])
            first[lh] = start + i
        try:
            held = prepared.replayed(leaves)
        except DecodeError as e:  # a stored state value that does not decode: this node's damage, not the batch's
            raise StorageError(f"log {log}: a stored state value is damaged ({e}); replay the database"
                               " (mekong audit replay)") from e
        if held is not None:
            raise DuplicateEntryError(f"log {log} already holds this entry at index {held[1]} (spec 6.3.18: a"
                                      " replayed entry is refused); nothing was stored", log, held[1])

    def read(self, start: int, end: int) -> list[bytes]:
        """Entry bytes ``[start, end)`` as stored.

        Raises:
            StorageError: the range is outside the log.
        """
        return self.storage.read_entries(self.member_id, start, end)

    # ------------------------------------------------------------------ tree and proofs

    def root_hash(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` entries (default: all).

        Raises:
            StorageError: ``size`` is larger than the log, or a node is missing.
        """
        size = self._size_arg(size)
        return merkle.tree_root(size, self._get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of entry ``index`` in the tree of ``size`` (default: all), O(log n) reads.

        Raises:
            StorageError: ``size`` is larger than the log, or ``index`` is not below it.
        """
        size = self._size_arg(size)
        if not 0 <= index < size:
            raise StorageError(f"log {self.member_id}: no entry {index} in a tree of size {size}")
        return merkle.inclusion_proof(index, size, self._get)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The consistency proof from ``size1`` to ``size2`` (default: all).

        Raises:
            StorageError: sizes out of range (``0 < size1 <= size2 <= size``).
        """
        size2 = self._size_arg(size2)
        if not 0 < size1 <= size2:
            raise StorageError(f"log {self.member_id}: no consistency proof from {size1} to {size2}")
        return merkle.consistency_proof(size1, size2, self._get)

    def _size_arg(self, size: int | None) -> int:
        have = self.size
        if size is None:
            return have
        if not 0 <= size <= have:
            raise StorageError(f"log {self.member_id} has {have} entries, not {size}")
        return size
