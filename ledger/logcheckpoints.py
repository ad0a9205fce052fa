"""The checkpoint half of a member log: signing, receiving, cosignatures, adoption and finality (spec 7.4).

:class:`LogCheckpoints` is the base of :class:`ledger.memberlog.MemberLog`, which adds the appends, reads and
proofs it relies on. The owner signs checkpoints naming the root its log writes under (spec 4.3.5, 7.4.1)
and adopts newer roots in its log (spec 6.2.9); replicas and witnesses store checkpoints and cosignatures
only once they verify under the root the checkpoint names, and a checkpoint is final as
:mod:`ledger.finality` says, recorded once decided (spec 7.1.9).
"""

from __future__ import annotations

from collections.abc import Iterable

import nacl.signing

from ledger.bodies import GovernanceAdopt
from ledger.checkpoint import Checkpoint, Cosignature, CosignatureSigner, add_signatures, sign_checkpoint, witness_name
from ledger.entries import UnverifiedEntry, make_entry
from ledger.errors import AuthorizationError, ConflictError, DecodeError, StorageError, VerificationError
from ledger.finality import (
    Finality,
    Witnesses,
    checkpoint_extensions,
    count_cosignatures,
    log_verifier,
    named_root,
    open_signed,
    state_reference,
)
from ledger.note import Note, NoteSignature, NoteSigner, verify_note
from ledger.registry import RegistryState
from ledger.storage import Storage

__all__ = ["LogCheckpoints"]


class LogCheckpoints:
    """Checkpoints, cosignatures, adoption and finality of one member's log (the base of ``MemberLog``).

    Subclasses provide the log's storage, identity and state attributes, and :attr:`size`,
    :meth:`root_hash`, :meth:`read` and :meth:`_append`.
    """

    storage: Storage
    member_id: str
    network: str
    state: RegistryState
    origin: str
    _signer: NoteSigner | None
    _node_key: nacl.signing.SigningKey | None

    @property
    def size(self) -> int:
        """Number of entries stored."""
        raise NotImplementedError

    def root_hash(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` entries (default: all)."""
        raise NotImplementedError

    def read(self, start: int, end: int) -> list[bytes]:
        """Entry bytes ``[start, end)`` as stored."""
        raise NotImplementedError

    def _append(self, raws: list[bytes], start: int) -> list[int]:
        raise NotImplementedError

    def state_root(self, size: int | None = None) -> bytes | None:
        """The state root after the first ``size`` entries, None if none was recorded at that size."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints (spec 7.4)

    def checkpoint(self, now: int | None = None, *, refresh: bool = False) -> Note:
        """Sign and store a checkpoint of the whole log (spec 7.4.1).

        If the latest checkpoint already covers the whole log, it is reused
        instead of signing again.

        Args:
            now: Unix seconds. When given, the owner also cosigns the
                checkpoint as a witness with timestamp ``now`` (unless it
                already has), and that cosignature counts toward the quorum
                like any other member's (spec 7.4.3).
            refresh: cosign again even if the owner has: a heartbeat (spec 7.4.4).

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
            state_root = self.state_root(size)
            if state_root is None:  # the whole log's state root is always known (MemberLog.state_root)
                raise StorageError(f"log {self.member_id}: no state root at size {size}")
            cp = Checkpoint(self.origin, size, self.root_hash(size), checkpoint_extensions(root, state_root))
            note = sign_checkpoint(cp, self._signer)
            self.storage.put_checkpoint(self.member_id, size, note.to_bytes())
        if now is not None and (refresh or not any(c.witness == self.member_id
                                                   for c in self.storage.cosignatures(self.member_id, size))):
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
        self.check_state_root(cp, data)
        witnesses = Witnesses(self.network, root)
        owner = log_verifier(self.network, self.member_id, root)
        (log_sig,) = verify_note(Note(note.text, tuple(s for s in note.signatures if s.key_id == owner.key_id)),
                                 (owner,))[:1]
        self.storage.put_checkpoint(self.member_id, cp.size, Note(note.text, (log_sig,)).to_bytes())
        others = [s for s in note.signatures if witnesses.lookup(s) is not None]  # spec 4.1.4: others ignored
        if others:
            self.add_cosignatures(cp.size, others)
        return cp

    def check_state_root(self, cp: Checkpoint, data: bytes) -> bool:
        """Check the checkpoint's ``state`` line against the state root computed here at its size (spec S.6).

        The root is known at the log's whole size and wherever a batch of entries ended here. A checkpoint of
        a size inside a batch (a replica that fetched entries beyond it first) cannot be checked here, and is
        not: a replica uses only its own state, and a verifier believes a state line only in a final
        checkpoint, whose witnesses each checked it before cosigning (they hold no entries beyond it).

        Returns:
            Whether the state line was checked.

        Raises:
            DecodeError: the checkpoint carries no well-formed state line.
            ConflictError: the state root differs from the one computed here (evidence ``(size, note bytes)``).
        """
        claimed = state_reference(cp)
        mine = self.state_root(cp.size)
        if mine is None:
            return False
        if claimed != mine:
            raise ConflictError(f"log {self.member_id} checkpoint of size {cp.size} carries state root"
                                f" {claimed.hex()}, but the entries verified here give {mine.hex()}",
                                evidence=(cp.size, bytes(data)))
        return True

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
        # spec 7.4.4: a later line (a heartbeat's) replaces a witness's fresh line; an older one never does
        held = self._fresh_times(size)
        newer = [(m, line) for m, line in rows if verified[m] > held.get(m, -1)]
        if newer:
            self.storage.put_fresh(self.member_id, size, newer)
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

    def served_note(self, size: int, *, first: bool = False) -> bytes:
        """The stored checkpoint of ``size`` with each witness's newest cosignature line (a heartbeat's, spec
        7.4.4: it shows how fresh the checkpoint is), or with ``first`` each witness's first line (it bounds
        when the entries existed).

        Raises:
            StorageError: no checkpoint of that size is stored.
        """
        stored = self.storage.checkpoint(self.member_id, size)
        if stored is None:
            raise StorageError(f"log {self.member_id} has no checkpoint of size {size}")
        lines = self.first_lines(size) if first else self.fresh_lines(size)
        return add_signatures(Note.parse(stored), list(lines.values())).to_bytes()

    def first_lines(self, size: int) -> dict[str, NoteSignature]:
        """Witness -> its first stored cosignature line on the checkpoint of ``size`` (it bounds when the
        entries existed: proof of existence)."""
        return dict(self._stored_lines(size))

    def fresh_lines(self, size: int) -> dict[str, NoteSignature]:
        """Witness -> its newest cosignature line on the checkpoint of ``size``: the first stored line, replaced
        by a later one (a heartbeat) where held. Lines are verified when they are stored, not here."""
        lines = dict(self._stored_lines(size))
        for witness, raw in self.storage.fresh(self.member_id, size):
            try:
                lines[witness] = NoteSignature.parse_line(raw.decode("utf-8"))
            except (UnicodeDecodeError, DecodeError):
                continue  # damaged: the stored first line stays
        return lines

    def _fresh_times(self, size: int) -> dict[str, int]:
        # The timestamps of the fresh lines held for ``size`` (verified when stored).
        out = {}
        for witness, sig in self.fresh_lines(size).items():
            try:
                out[witness] = Cosignature.from_note_signature(sig).timestamp
            except DecodeError:
                continue
        return out

    def freshness(self, size: int) -> dict[str, int]:
        """Member -> time of its newest valid cosignature on the checkpoint of ``size`` (spec 7.4.4).

        Raises:
            StorageError: no checkpoint of ``size`` is stored.
        """
        stored = self._stored(size)
        if stored is None:
            raise StorageError(f"log {self.member_id} has no checkpoint at size {size}")
        cp = Checkpoint.parse(stored[1].text)
        witnesses = Witnesses(self.network, named_root(cp, self.state.chain))
        lines = [sig for witness, sig in self.fresh_lines(size).items()
                 if (found := witnesses.lookup(sig)) is not None and found[0] == witness]
        return count_cosignatures(cp, lines, witnesses)

    def latest_checkpoint(self) -> bytes | None:
        """The latest checkpoint note with every stored cosignature line appended, or None.

        This is what a node serves: a client checks the log signature and
        counts the cosignatures it trusts.
        """
        stored = self._stored(None)
        if stored is None:
            return None
        return add_signatures(stored[1], (sig for _, sig in self._stored_lines(stored[0]))).to_bytes()
