"""Member logs: verified appends, signed checkpoints, cosignatures, finality and proofs (specs/07-storage.md 7.3, 7.4).

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

from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import nacl.signing

from ledger import merkle
from ledger.bodies import GovernanceAdopt
from ledger.checkpoint import Checkpoint, CosignatureSigner, add_signatures, log_origin, sign_checkpoint, witness_name
from ledger.entries import Entry, UnverifiedEntry, make_entry
from ledger.errors import (
    AuthorizationError,
    ConflictError,
    DecodeError,
    DuplicateEntryError,
    StorageError,
    VerificationError,
)
from ledger.finality import (
    Finality,
    Witnesses,
    checkpoint_extensions,
    count_cosignatures,
    log_verifier,
    named_root,
    open_signed,
)
from ledger.note import Note, NoteSignature, NoteSigner, verify_note
from ledger.registry import RegistryState
from ledger.roots import Root
from ledger.rules import SignatureJob, verify_sequential
from ledger.storage import Storage

__all__ = ["MemberLog", "ParallelVerifier"]


class ParallelVerifier:
    """Runs batches of Ed25519 checks on a small thread pool (spec 7.3 step 5).

    pynacl releases the GIL while it verifies, so two threads do nearly twice
    the work of one. :meth:`start` returns at once; :meth:`wait` raises the
    first failure. Calling the object does both, which is the shape
    ``RegistryState.apply_batch`` expects for ``verify_signatures``.
    """

    def __init__(self, workers: int = 2, executor: Executor | None = None) -> None:
        self._workers = workers
        self._own = executor is None
        self._executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="ed25519")

    def close(self) -> None:
        """Shut down the pool if this object created it."""
        if self._own:
            self._executor.shutdown(wait=True)

    def start(self, jobs: Sequence[SignatureJob]) -> list[Future[None]]:
        """Submit ``jobs`` in a few chunks per worker, so that a worker slowed by other
        load does not hold the batch up."""
        jobs = list(jobs)
        step = max(32, -(-len(jobs) // (4 * self._workers)))
        return [self._executor.submit(verify_sequential, jobs[i:i + step]) for i in range(0, len(jobs), step)]

    @staticmethod
    def wait(futures: Iterable[Future[None]]) -> None:
        """Wait for every chunk, then raise the first failure.

        Raises:
            VerificationError: a signature did not verify.
        """
        errors = [e for e in (f.exception() for f in list(futures)) if e is not None]
        if errors:
            raise errors[0]

    def __call__(self, jobs: Sequence[SignatureJob]) -> None:
        """Verify ``jobs`` and return only when all passed.

        Raises:
            VerificationError: a signature did not verify.
        """
        self.wait(self.start(jobs))


class MemberLog:
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

    def append_replicated(self, raws: Sequence[bytes], start: int) -> list[int]:
        """Append entries ``start, start+1, ...`` of this log received from a peer (spec 7.3).

        Entries this node already holds must be byte-identical to the stored
        ones and are skipped, so a peer may resend an overlapping range.

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
        return self._append(rest, size) if rest else []

    def _append(self, raws: list[bytes], start: int) -> list[int]:
        if self._broken:
            raise StorageError(self._broken)
        if not raws:
            return []
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
        # Step 3: leaf hashes and the complete subtrees the batch finishes (before the
        # rules, so that no Python work competes with the signature threads for the GIL).
        leaves = [merkle.leaf_hash(r) for r in raws]
        self._refuse_replays(leaves, start)
        nodes = merkle.stored_hashes_for_batch(start, leaves, self._get)
        stored = False

        def verify_and_store(jobs: Sequence[SignatureJob]) -> None:
            nonlocal stored
            # Step 5: signatures verify on the pool while this thread writes.
            futures = self._verify.start(jobs)
            try:
                # Step 6: write, and commit only once every signature verified.
                self.storage.append_entries(log, start, raws, leaves, nodes,
                                            before_commit=lambda: self._verify.wait(futures))
            except BaseException:
                for f in futures:
                    f.cancel()
                wait_futures(futures)
                raise
            stored = True

        # Step 4: the rules, in order, then (through verify_and_store) steps 5 and 6;
        # step 7: the state changes only after verify_and_store returned.
        entries: list[Entry] = self.state.apply_batch(log, start, unverified, verify_signatures=verify_and_store)
        if not stored:  # the state never asked for signatures: nothing may be stored unverified
            self._broken = f"log {log}: registry applied a batch without verifying signatures"
            raise StorageError(self._broken)
        if self.state.size(log) != start + len(raws):
            self._broken = f"log {log}: storage and registry state disagree after a batch; replay the database"
            raise StorageError(self._broken)
        return [e.index for e in entries]

    def _refuse_replays(self, leaves: list[bytes], start: int) -> None:
        # spec 6.3.18: a log holds each entry once; a replayed entry changes nothing.
        log = self.member_id
        first: dict[bytes, int] = {}
        for i, lh in enumerate(leaves):
            if lh in first:
                raise DuplicateEntryError(f"log {log} entry {start + i}: spec 6.3.18: the same entry is entry"
                                          f" {first[lh]} of this batch; nothing was stored", log, first[lh])
            first[lh] = start + i
        held = self.storage.find_leaves(log, leaves)
        if held:
            i, lh = next((i, lh) for i, lh in enumerate(leaves) if lh in held)
            raise DuplicateEntryError(f"log {log} already holds this entry at index {held[lh]} (spec 6.3.18: a"
                                      " replayed entry is refused); nothing was stored", log, held[lh])

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

    # ------------------------------------------------------------------ checkpoints (spec 7.4)

    def checkpoint(self, now: int | None = None) -> Note:
        """Sign and store a checkpoint of the whole log (spec 7.4.1).

        If the latest checkpoint already covers the whole log, it is reused
        instead of signing again.

        Args:
            now: Unix seconds. When given, the owner also cosigns the
                checkpoint as a witness with timestamp ``now`` (unless it
                already has), and that cosignature counts toward the quorum
                like any other member's (spec 7.4.3).

        Returns:
            The checkpoint note with the log signature only (cosignatures are
            served by :meth:`latest_checkpoint`).

        Raises:
            AuthorizationError: this node does not own the log.
            StorageError: the database failed.
        """
        if self._signer is None or self._node_key is None:
            raise AuthorizationError(f"this node does not own log {self.member_id}; it cannot sign checkpoints")
        if self.can_adopt_head():
            self.adopt_head(now)
        size = self.size
        latest = self.storage.latest_checkpoint(self.member_id)
        if latest is not None and latest[0] == size:
            note = Note.parse(latest[1])
        else:
            # spec 4.3.5, 7.4.1: the checkpoint names the root the log writes under (that of its newest
            # entry), signed with the owner's node key in that root; the tree root comes from stored nodes
            # over committed entries only.
            root = self.state.chain.root_at(self.state.root_version(self.member_id))
            if root.node_key_of(self.member_id) != self._signer.public_key:
                raise AuthorizationError(f"log {self.member_id} writes under root version {root.version}, whose node"
                                         " key for it is not this node's key")
            cp = Checkpoint(self.origin, size, self.root_hash(size), checkpoint_extensions(root))
            note = sign_checkpoint(cp, self._signer)
            self.storage.put_checkpoint(self.member_id, size, note.to_bytes())
        if now is not None and not any(c.witness == self.member_id
                                       for c in self.storage.cosignatures(self.member_id, size)):
            own = CosignatureSigner(witness_name(self.network, self.member_id), self._node_key)
            self.add_cosignatures(size, [own.cosign(Checkpoint.parse(note.text), now)])
        return note

    def can_adopt_head(self) -> bool:
        """Whether this node owns the log and its key is the member's node key in the head root."""
        head = self.state.chain.current
        return (self._signer is not None and self.member_id in head.member_ids
                and head.node_key_of(self.member_id) == self._signer.public_key)

    def adopt_head(self, now: int | None = None) -> int | None:
        """Append a ``governance.adopt`` entry when the log writes under an older root than the head (6.2.9).

        Only the owner does this, with its node key, which must be its node key in the head root: a node
        whose key the head rotated out cannot adopt it (it must be restarted with the new key). From the
        adoption on, the log accepts only entries made under the head or later (spec 6.3.4), and its
        checkpoints name the head (spec 4.3.5), which is what witnesses that hold the head require.

        Args:
            now: the author time; never earlier than the log's newest entry (spec 6.3.3).

        Returns:
            The adoption entry's index, or None when the log already writes under the head.

        Raises:
            AuthorizationError: this node does not own the log, the log's member is not in the head root,
                or this node's key is not the member's node key in it.
            StorageError: the database failed.
        """
        if self._signer is None or self._node_key is None:
            raise AuthorizationError(f"this node does not own log {self.member_id}; it cannot adopt roots for it")
        head = self.state.chain.current
        if self.state.root_version(self.member_id) >= head.version:
            return None
        if head.node_key_of(self.member_id) != self._signer.public_key:
            raise AuthorizationError(f"governance root version {head.version} gives {self.member_id} another node key:"
                                     " restart this node with that key to adopt it")
        t = max(now or 0, self.state.author_time(self.member_id))
        raw = make_entry(self.member_id, "governance.adopt", t, GovernanceAdopt(head.version, head.root_hash),
                         self._node_key, root=head.version)
        (index,) = self._append([raw], self.size)
        return index

    def add_checkpoint(self, data: bytes) -> Checkpoint:
        """Check and store a checkpoint of this log signed by its owner (spec 7.4.1).

        For replicas. The note must carry the owner's signature (by the owner's node key in the governance
        root the checkpoint names, spec 4.3.5) over a checkpoint with this log's origin, a size this node
        holds, and the root this node computes for that size. Cosignature lines on the note by witness keys
        of that root are checked and stored as by :meth:`add_cosignatures`.

        Returns:
            The checkpoint.

        Raises:
            DecodeError: the note or checkpoint is malformed, or names no governance root.
            VerificationError: bad log signature, wrong origin, a root this node does not hold, a size beyond
                the stored entries, or a bad cosignature.
            ConflictError: the root differs from the one computed here
                (evidence ``(size, received note bytes)``).
        """
        note, cp, _ = open_signed(data, self.state.chain, self.member_id)
        if cp.size > self.size:
            raise VerificationError(f"checkpoint of size {cp.size}, but log {self.member_id} holds {self.size}"
                                    " entries here: replicate them first")
        if cp.root_hash != self.root_hash(cp.size):
            raise ConflictError(f"log {self.member_id} checkpoint of size {cp.size} has a root this node does"
                                " not compute", evidence=(cp.size, bytes(data)))
        root = named_root(cp, self.state.chain)
        self._check_named_version(cp, root.version)
        witnesses = Witnesses(self.network, root)
        owner = log_verifier(self.network, self.member_id, root)
        (log_sig,) = verify_note(Note(note.text, tuple(s for s in note.signatures if s.key_id == owner.key_id)),
                                 (owner,))[:1]
        self.storage.put_checkpoint(self.member_id, cp.size, Note(note.text, (log_sig,)).to_bytes())
        others = [s for s in note.signatures if witnesses.lookup(s) is not None]  # spec 4.1.4: others ignored
        if others:
            self.add_cosignatures(cp.size, others)
        return cp

    def root_version_at(self, size: int) -> int:
        """The root version the log wrote under with its first ``size`` entries: that of entry ``size - 1``.

        Raises:
            StorageError: ``size`` is larger than the log.
        """
        if size == 0:
            return 1
        if size == self.size:
            return self.state.root_version(self.member_id)  # type: ignore[no-any-return]
        (raw,) = self.read(size - 1, size)
        return UnverifiedEntry.decode(raw).root

    def _check_named_version(self, cp: Checkpoint, version: int) -> None:
        # spec 7.4.1: a checkpoint names the root its newest covered entry was made under
        at = self.root_version_at(cp.size)
        if version != at:
            raise VerificationError(f"log {self.member_id} checkpoint of size {cp.size} names governance root version"
                                    f" {version}, but the log writes under version {at} at that size")

    def _stored(self, size: int | None) -> tuple[int, Note] | None:
        if size is None:
            latest = self.storage.latest_checkpoint(self.member_id)
            return None if latest is None else (latest[0], Note.parse(latest[1]))
        note = self.storage.checkpoint(self.member_id, size)
        return None if note is None else (size, Note.parse(note))

    def _stored_lines(self, size: int) -> list[tuple[str, NoteSignature]]:
        out = []
        for c in self.storage.cosignatures(self.member_id, size):
            try:
                out.append((c.witness, NoteSignature.parse_line(c.line.decode("utf-8"))))
            except (UnicodeDecodeError, DecodeError):
                continue  # damaged: replay reports it
        return out

    def add_cosignatures(self, size: int, lines: Iterable[NoteSignature | str | bytes]) -> dict[str, int]:
        """Verify witness cosignatures on the checkpoint of ``size`` and store them (spec 7.4.2).

        Each line must be a cosignature/v1 by the witness key of a member of the governance root the
        checkpoint names (:mod:`ledger.finality`); the owner's own witness key counts like any other
        member's (spec 7.4.3). All lines are checked before any is stored; one bad line refuses the lot.

        Returns:
            witness member id -> timestamp, for the lines given.

        Raises:
            StorageError: no checkpoint of ``size`` is stored.
            DecodeError: a line is malformed.
            AuthorizationError: a line is by an unknown key or a non-member.
            VerificationError: a cosignature does not verify.
        """
        stored = self._stored(size)
        if stored is None:
            raise StorageError(f"log {self.member_id} has no checkpoint at size {size}")
        cp = Checkpoint.parse(stored[1].text)
        witnesses = Witnesses(self.network, named_root(cp, self.state.chain))
        verified: dict[str, int] = {}
        rows: list[tuple[str, bytes]] = []
        for item in lines:
            sig = item if isinstance(item, NoteSignature) else NoteSignature.parse_line(
                item.decode("utf-8") if isinstance(item, bytes) else item)
            member, verified[member] = witnesses.verify(cp, sig)
            rows.append((member, sig.line().encode("utf-8")))
        self.storage.put_cosignatures(self.member_id, size, rows)
        fin = self.finality(size)
        if fin is not None and fin.final:  # spec 7.4.3: finality, once decided, is recorded
            self.storage.put_final(self.member_id, size, fin.root_version, fin.witnessed_time or 0)
        return verified

    def finality(self, size: int | None = None) -> Finality | None:
        """How final the checkpoint of ``size`` is (default: the latest), or None if there is none (spec 7.4.3).

        Stored cosignatures are re-checked (:func:`ledger.finality.count_cosignatures`) with the witness keys
        of the root the checkpoint names; a line stored under another member's name does not count.

        Raises:
            StorageError: the database failed.
        """
        stored = self._stored(size)
        if stored is None:
            return None
        size, note = stored
        cp = Checkpoint.parse(note.text)
        root = named_root(cp, self.state.chain)
        witnesses = Witnesses(self.network, root)
        lines = [sig for witness, sig in self._stored_lines(size)
                 if (found := witnesses.lookup(sig)) is not None and found[0] == witness]
        return Finality.of(self.member_id, size, root, count_cosignatures(cp, lines, witnesses))

    def latest_checkpoint(self) -> bytes | None:
        """The latest checkpoint note with every stored cosignature line appended, or None.

        This is what a node serves: a client checks the log signature and
        counts the cosignatures it trusts.
        """
        stored = self._stored(None)
        if stored is None:
            return None
        return add_signatures(stored[1], (sig for _, sig in self._stored_lines(stored[0]))).to_bytes()
