"""The node's ledger: one database, the governance chain, the registry state and every member log.

:class:`LedgerHost` is synchronous and single-threaded by contract: the node
runs every call on one dedicated thread (:attr:`LedgerHost.executor`), so the
SQLite connection, the registry state and the witness records are never
touched by two threads at once, and the check-then-cosign of a witness is
atomic (specs/api.md A.8, C2SP tlog-witness). Ed25519 checks of a batch still
run on the member logs' two-thread verification pool.

What it leaves to others: HTTP, peers and timers (:mod:`node.service`), and
the formats themselves (:mod:`ledger`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.signing

from ledger import merkle
from ledger.checkpoint import Checkpoint, CosignatureSigner, parse_log_origin, witness_name
from ledger.errors import ConflictError, DecodeError, EquivocationError, StorageError, VerificationError
from ledger.evidencecheck import GOVERNANCE_EVIDENCE, note_key
from ledger.finality import Witnesses, log_verifier, named_root, open_signed
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog, ParallelVerifier, TargetTree
from ledger.note import Note, NoteSignature, verify_note
from ledger.reopen import open_registry
from ledger.replay import replay
from ledger.roots import Root, SignedRoot
from ledger.storage import Storage

log = logging.getLogger("mekong.node")

#: C2SP tlog-witness: at most 63 consistency proof lines.
MAX_PROOF_LINES = 63


class WitnessConflict(ConflictError):
    """The witness has cosigned a different size than the request's ``old`` (C2SP: 409 + its size)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class UnknownLog(DecodeError):
    """A checkpoint origin that names no log of this network (C2SP: 404)."""


class BadProof(VerificationError):
    """The consistency proof of an add-checkpoint request does not verify (C2SP: 422)."""


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed tlog-witness add-checkpoint request body (specs/api.md A.8)."""

    old: int
    proof: tuple[bytes, ...]
    note: Note
    checkpoint: Checkpoint
    member: str

    @classmethod
    def parse(cls, body: bytes, network: str) -> AddCheckpoint:
        """Parse ``old N``, proof lines, a blank line and a checkpoint note.

        Raises:
            DecodeError: anything malformed.
            UnknownLog: the origin is not a log of ``network``.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("add-checkpoint body is not UTF-8") from e
        head, sep, rest = text.partition("\n\n")
        if not sep:
            raise DecodeError("add-checkpoint body has no blank line before the checkpoint")
        lines = head.split("\n")
        first = lines[0]
        if not first.startswith("old ") or not first[4:].isdigit() or (first[4:] != "0" and first[4] == "0"):
            raise DecodeError("add-checkpoint body must start with 'old N' (decimal, no leading zeros)")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise DecodeError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof = []
        for line in lines[1:]:
            try:
                h = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError) as e:
                raise DecodeError("consistency proof line is not base64") from e
            if len(h) != merkle.HASH_SIZE:
                raise DecodeError("consistency proof line is not a 32-byte hash")
            proof.append(h)
        note = Note.parse(rest)
        cp = Checkpoint.parse(note.text)
        try:
            net, member = parse_log_origin(cp.origin)
        except DecodeError as e:
            raise UnknownLog(f"unknown log origin {cp.origin!r}") from e
        if net != network:
            raise UnknownLog(f"origin {cp.origin!r} is not a log of network {network!r}")
        return cls(int(first[4:]), tuple(proof), note, cp, member)


class LedgerHost:
    """Everything a node stores and believes, behind one thread.

    Args:
        storage: the node's open database.
        genesis: the pinned genesis root.
        pinned_hash: its hash, as configured.
        member: this node's member id.
        network: the network id.
        node_key: this node's Ed25519 key.
        full_check: replay the whole database first (spec 7.5), as ``mekong node start --replay`` asks.
        signature_processes: check signatures on worker processes rather than threads (spec 7.3 step 5: they
            then overlap this process's Python work); a node process does, tests in one process need not.

    Raises:
        StorageError: the database fails the start-up checks of spec 7.5.3 or, with ``full_check``, does not
            replay cleanly (every problem is logged with its location); the node refuses to start on it.
    """

    def __init__(self, storage: Storage, genesis: SignedRoot, pinned_hash: bytes, member: str, network: str,
                 node_key: nacl.signing.SigningKey, *, full_check: bool = False,
                 signature_processes: bool = False) -> None:
        self.storage = storage
        self.member = member
        self.network = network
        self.node_key = node_key
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.verifier = ParallelVerifier(processes=signature_processes)
        self.verifier.warm()
        if not storage.roots(1):
            storage.put_root(1, genesis.to_cbor())
        if full_check:
            report = replay(storage, genesis, pinned_hash)  # two threads: replay waits while they check
            if not report.ok:
                for p in report.problems:
                    log.error("replay: %s", p)
                raise StorageError(f"the database at {storage.path} does not replay cleanly: "
                                   f"{len(report.problems)} problem(s), first: {report.problems[0]}")
        # spec 7.5.3: the registry is read from the database, checked against the newest checkpoints
        self.chain: GovernanceChain
        self.chain, self.state = open_registry(storage, genesis, pinned_hash)
        if self.chain.current.node_key_of(member) != bytes(node_key.verify_key):
            raise VerificationError(f"the node key is not the node key of {member} in root version "
                                    f"{self.chain.current.version}")
        self.logs: dict[str, MemberLog] = {}
        self._open_logs()
        #: log -> (size, note bytes with every counted cosignature) of the newest final checkpoint.
        self.final: dict[str, tuple[int, bytes]] = {}
        #: log -> the newest size this node cosigned as a witness, read from storage once per log.
        self._last_cosigned: dict[str, int] = {}
        for m in self.logs:
            self._refresh_final(m)

    # ------------------------------------------------------------------ basics

    @property
    def root(self) -> Root:
        """The current governance root."""
        return self.chain.current

    @property
    def own(self) -> MemberLog:
        """The log this node owns."""
        return self.logs[self.member]

    def _open_logs(self) -> None:
        # Every member any root listed: a removed member's log stays readable, frozen (spec 7.4.2).
        for m in self.chain.members_ever:
            if m not in self.logs:
                signer = self.node_key if m == self.member else None
                self.logs[m] = MemberLog(self.storage, m, self.network, self.state, signer, verifier=self.verifier)

    def close(self) -> None:
        """Release the verification pool (the storage belongs to the caller)."""
        self.verifier.close()

    def member_log(self, member: str) -> MemberLog:
        """The log of ``member``.

        Raises:
            UnknownLog: no governance root of the chain lists that id.
        """
        found = self.logs.get(member)
        if found is None:
            raise UnknownLog(f"no member {member[:16]!r} in any governance root up to version {self.root.version}")
        return found

    def sizes(self) -> dict[str, tuple[int, int | None]]:
        """log -> (stored size, final size or None)."""
        return {m: (lg.size, self.final[m][0] if m in self.final else None) for m, lg in self.logs.items()}

    # ------------------------------------------------------------------ governance

    def add_root(self, data: bytes, now: int) -> Root:
        """Verify a successor root against the chain, store it and act on it (spec 5.4.2).

        Returns:
            The root; if the chain already holds exactly this root, it is returned unchanged.

        Raises:
            DecodeError, VerificationError: the root is malformed or not valid.
            EquivocationError: a different valid root of the same version is held; the new
                one is kept as ``root-equivocation`` evidence (spec 7.1.8) before this is raised.
        """
        signed = SignedRoot.from_cbor(data)
        held = self.chain.roots
        if signed.root.version <= len(held) and self.chain.signed(signed.root.version).payload == signed.payload:
            return signed.root
        try:
            root = self.chain.add(signed)
        except EquivocationError as e:
            self.storage.put_evidence(GOVERNANCE_EVIDENCE, "root-equivocation", signed.to_cbor(), str(e), now)
            log.warning("evidence stored: root-equivocation of governance root version %d: %s",
                        signed.root.version, e)
            raise
        self.storage.put_root(root.version, signed.to_cbor())
        self._open_logs()
        for m in self.logs:
            self._refresh_final(m)
        log.info("adopted governance root version %d", root.version)
        if self.own.can_adopt_head():
            index = self.own.adopt_head(now)  # spec 6.2.9: from here on the own log writes under this root
            log.info("log %s adopts governance root version %d at entry %s", self.member, root.version, index)
        elif self.member in root.member_ids:
            log.warning("governance root version %d gives %s another node key: this node can no longer sign its"
                        " log; restart it with the new key", root.version, self.member)
        else:
            log.warning("governance root version %d removes %s: its log is frozen", root.version, self.member)
        return root

    # ------------------------------------------------------------------ the owner's log

    def require_current_head(self, now: int) -> None:
        """Refuse to act under an expired governance head (spec 5.4.3).

        A node whose newest root has expired has missed a newer one (or is being kept from it): it
        neither appends to its log nor cosigns until it adopts a newer root; reads, replication and
        adopting roots go on.

        Raises:
            VerificationError: the head has expired at ``now``.
        """
        head = self.chain.current
        if head.expires is not None and now >= head.expires:
            raise VerificationError(f"governance root version {head.version} expired at {head.expires}: this node"
                                    " acts again once it adopts a newer root")

    def submit(self, raws: list[bytes], now: int) -> list[int]:
        """Verify and append entries to this node's own log; durable on return (spec 7.3).

        Raises:
            VerificationError: the head expired (:meth:`require_current_head`), or it no longer lists this
                node's member, whose log is then frozen (spec 7.4.2).
        """
        self.require_current_head(now)
        if self.member not in self.root.member_ids:
            raise VerificationError(f"governance root version {self.root.version} removed {self.member} from the"
                                    " network: its log is frozen and takes no entries")
        return self.own.append(raws)

    def sign_checkpoint(self, now: int, refresh: bool = False) -> tuple[Note, int]:
        """Sign (or reuse) the checkpoint of the whole own log, with the owner's cosignature.

        Args:
            now: the owner's cosignature time.
            refresh: cosign again even if the owner has (a heartbeat, spec 7.4.4).

        Returns:
            The note with the log signature only, and its size.
        """
        note = self.own.checkpoint(now, refresh=refresh)
        cp = Checkpoint.parse(note.text)
        self._refresh_final(self.member, cp.size)
        return note, cp.size

    def add_cosignatures(self, member: str, size: int, lines: list[str]) -> bool:
        """Store witnesses' cosignatures on a checkpoint; True when it is now final."""
        self.member_log(member).add_cosignatures(size, lines)
        self._saw_cosignatures(member, size)
        self._refresh_final(member, size)
        return member in self.final and self.final[member][0] >= size

    def consistency_proof(self, member: str, old: int, new: int) -> list[bytes]:
        """The proof from ``old`` to ``new``, empty when ``old`` is 0 or equal to ``new``."""
        if old == 0 or old == new:
            return []
        return self.member_log(member).consistency_proof(old, new)

    # ------------------------------------------------------------------ replicas

    def append_replicated(self, member: str, raws: list[bytes], start: int, target: TargetTree) -> int:
        """Append a peer-supplied range of ``member``'s log after full verification; the new size.

        ``target`` is the checkpoint the range was fetched for, with the proof that the range leads to it.
        """
        if member == self.member:
            raise VerificationError(f"log {member} is this node's own; it is never replicated from peers")
        self.member_log(member).append_replicated(raws, start, target)
        return self.logs[member].size

    def add_final_checkpoint(self, member: str, data: bytes) -> bool:
        """Store a checkpoint pushed or fetched from a peer, with its cosignatures; True if it is final here.

        The entries it covers must already be replicated (the caller fetches them first).
        """
        lg = self.member_log(member)
        if member == self.member:
            return False
        cp = Checkpoint.parse(Note.parse(data).text)
        if lg.storage.checkpoint(member, cp.size) is None:
            lg.add_checkpoint(data)
        else:
            note = Note.parse(data)
            cosigs = [s for s in note.signatures if s.name != lg.origin]
            if cosigs:
                self._add_known_cosignatures(member, cp.size, cosigs)
        self._saw_cosignatures(member, cp.size)
        self._refresh_final(member, cp.size)
        return member in self.final and self.final[member][0] >= cp.size

    def check_final(self, member: str, data: bytes) -> Checkpoint:
        """Check a checkpoint of ``member``'s log offered as final, before its entries are fetched.

        Returns:
            The checkpoint.

        Raises:
            DecodeError: the note or checkpoint is malformed.
            VerificationError: not signed by the log's node key, made under a root this node does not hold, or
                fewer than ``quorum`` cosignatures by witness keys of that root (:mod:`ledger.finality`).
        """
        self.member_log(member)
        _, cp, fin = open_signed(data, self.chain, member)
        fin.require_final()
        return cp

    def _add_known_cosignatures(self, member: str, size: int, sigs: list[NoteSignature]) -> None:
        # Lines by witness keys of the root the checkpoint names that this node does not hold: a member's first
        # line, or a later one (a heartbeat, spec 7.4.4); the member log verifies each one before storing it.
        lg = self.logs[member]
        stored = self.storage.checkpoint(member, size)
        if stored is None:
            return
        witnesses = Witnesses(self.network, named_root(Checkpoint.parse(Note.parse(stored).text), self.chain))
        held = {sig.line() for sig in lg.fresh_lines(size).values()}
        new = [s for s in sigs if witnesses.lookup(s) is not None and s.line() not in held]  # later lines too
        if new:
            lg.add_cosignatures(size, new)

    # ------------------------------------------------------------------ witnessing (C2SP tlog-witness)

    def witness_check(self, req: AddCheckpoint) -> None:
        """Steps 1-3 of add-checkpoint: known log, owner signature, ``old`` equals the last cosigned size.

        Raises:
            UnknownLog: not a log of this network (404).
            VerificationError: no valid signature by the log's node key (403).
            DecodeError: ``old`` is larger than the checkpoint size (400).
            WitnessConflict: ``old`` is not the last cosigned size (409).
        """
        self.member_log(req.member)
        if req.member == self.member:
            raise UnknownLog(f"this node owns log {req.member}; it does not witness it for others")
        # The owner's node key in the governance root the checkpoint names (spec 4.3.5, 7.4.2), which must be
        # this witness's head: no checkpoint made under an older root is cosigned once a newer one is adopted.
        named = named_root(req.checkpoint, self.chain)
        verify_note(req.note, (log_verifier(self.network, req.member, named),))
        if named.version != self.root.version:
            raise VerificationError(f"the checkpoint of log {req.member} is made under governance root version"
                                    f" {named.version}; this witness cosigns only under its head, version"
                                    f" {self.root.version}")
        if req.old > req.checkpoint.size:
            raise DecodeError(f"old size {req.old} is larger than the checkpoint size {req.checkpoint.size}")
        last = self.last_cosigned(req.member)
        if req.old != last:
            raise WitnessConflict(f"this witness last cosigned log {req.member} at size {last}, not {req.old}", last)

    def witnessed_sizes(self) -> dict[str, int]:
        """Per witness, the size of the newest checkpoint of this node's own log it cosigned (heartbeats
        included, spec 7.1.10): what its lag is measured from."""
        return self.storage.fresh_sizes(self.member)

    def last_cosigned(self, member: str) -> int:
        """The size of the newest checkpoint of ``member``'s log this node has cosigned (0 if none)."""
        if member not in self._last_cosigned:  # once per log: every cosignature of the log is read
            sizes = [c.size for c in self.storage.cosignatures(member) if c.witness == self.member]
            self._last_cosigned[member] = max(sizes, default=0)
        return self._last_cosigned[member]

    def _saw_cosignatures(self, member: str, size: int) -> None:
        # Cosignatures were stored on checkpoint ``size`` of ``member``: if this node's own is among
        # them (a pushed note may carry it), keep last_cosigned current.
        if member in self._last_cosigned and size > self._last_cosigned[member] and any(
                c.witness == self.member for c in self.storage.cosignatures(member, size)):
            self._last_cosigned[member] = size

    def witness_cosign(self, req: AddCheckpoint, now: int) -> str:
        """Steps 4-7: entries held and verified, proof, root; store and cosign atomically (on this thread).

        Returns:
            The cosignature line (with its newline).

        Raises:
            WitnessConflict: the state moved since :meth:`witness_check` (409).
            BadProof: the consistency proof does not verify (422).
            ConflictError: the checkpoint's root differs from the root of the
                verified entries (kept as evidence; 409).
        """
        self.witness_check(req)  # again: the check and the cosignature are one step on this thread
        self.require_current_head(now)
        lg = self.logs[req.member]
        cp = req.checkpoint
        data = req.note.to_bytes()  # as evidence, if it comes to that
        if lg.size < cp.size:
            raise StorageError(f"log {req.member}: this witness holds {lg.size} entries, the checkpoint needs "
                               f"{cp.size}; the entries could not be fetched")
        # Step 6 first: the owner-signed root against the entries this witness verified. Only a checkpoint
        # can be evidence against its owner; the proof is the sender's, unsigned, and proves nothing of it.
        if lg.root_hash(cp.size) != cp.root_hash:
            if self.storage.put_evidence(req.member, "root-mismatch", data,
                                         f"size {cp.size}: checkpoint root differs from the verified entries", now,
                                         note_key(data)):
                log.warning("evidence stored: root-mismatch of log %s at size %d", req.member, cp.size)
            raise ConflictError(f"log {req.member} at size {cp.size}: the checkpoint's root is not the root of "
                                f"the entries this witness verified; kept as evidence")
        # The state root (specs/state.md S.6): the owner's claim against the state of the entries verified here.
        try:
            if not lg.check_state_root(cp, req.note.to_bytes()):
                raise VerificationError(f"log {req.member}: this witness holds no state root at size {cp.size}"
                                        " (it verified the entries in batches that do not end there), so it"
                                        " cannot check the checkpoint's state root")
        except ConflictError as e:
            if self.storage.put_evidence(req.member, "state-mismatch", data, f"size {cp.size}: {e}", now,
                                         note_key(data)):
                log.warning("evidence stored: state-mismatch of log %s at size %d", req.member, cp.size)
            raise ConflictError(f"log {req.member} at size {cp.size}: the checkpoint's state root is not the state"
                                " root of the entries this witness verified; kept as evidence") from e
        # Step 5: the C2SP consistency proof from the last cosigned size; a bad one is a bad request only.
        if req.old and req.old != cp.size:
            try:
                merkle.verify_consistency(req.old, cp.size, list(req.proof), lg.root_hash(req.old), cp.root_hash)
            except merkle.ProofError as e:
                raise BadProof(f"log {req.member}: the consistency proof from size {req.old} to {cp.size} does not"
                               f" verify: {e}") from e
        elif req.proof:
            raise BadProof(f"the consistency proof must be empty when old is {req.old}")
        if lg.storage.checkpoint(req.member, cp.size) is None:
            lg.add_checkpoint(Note(req.note.text, tuple(
                s for s in req.note.signatures if s.name == lg.origin)).to_bytes())
        sig = CosignatureSigner(witness_name(self.network, self.member), self.node_key).cosign(cp, now)
        lg.add_cosignatures(cp.size, [sig])
        self._last_cosigned[req.member] = cp.size
        self._refresh_final(req.member, cp.size)
        return sig.line() + "\n"

    # ------------------------------------------------------------------ finality

    def first_final_covering(self, member: str, index: int) -> tuple[int, bytes] | None:
        """The oldest final checkpoint of ``member``'s log whose size exceeds ``index`` (specs/api.md A.7.2).

        Its witnessed time bounds when entry ``index`` existed (proof of existence, spec 7.4.3), so a
        client that synced late can still learn the earliest bound the network can prove. One indexed
        read of the recorded finals (spec 7.1.9): the cost does not grow with the log's history.
        """
        self.member_log(member)
        size = self.storage.final_covering(member, index)
        return None if size is None else (size, self.note_with_cosignatures(member, size))

    def _refresh_final(self, member: str, cosigned: int | None = None) -> None:
        # The newest recorded final checkpoint of the log (spec 7.1.9), served with every cosignature
        # line this node holds on it. ``cosigned``: the size of a checkpoint that just gained
        # cosignatures; only then can the served note or the final size change.
        held = self.final.get(member)
        if cosigned is not None and held is not None and cosigned < held[0]:
            return
        size = self.storage.latest_final(member)
        if size is not None:
            self.final[member] = (size, self.note_with_cosignatures(member, size))

    def note_with_cosignatures(self, member: str, size: int) -> bytes:
        """The stored checkpoint of ``size`` with each witness's newest line (a heartbeat's, spec 7.4.4)."""
        return self.member_log(member).served_note(size)
