"""Finality of checkpoints: which keys count, whether a checkpoint is final, and its witnessed time (spec 7.4).

This is the one place that answers these questions; the member log, the node's witness and replication,
the verified replica, ``mekong audit`` and replay all call it.

Every checkpoint of a Mekong log names, in its ``governance`` extension line, the governance root it was
made under (spec 4.3.5): its version and root hash. That root, and only that root, says

- which key signs the checkpoint as the log (the owner's node key in that root),
- which keys cosign it as witnesses (each member's node key in that root, the owner's included),
- how many cosignatures make it final (``quorum``) and how many witnesses may lie (``faulty``).

So a cosignature keeps counting after the witness's node key is rotated by a later root, and a checkpoint
made under a later root is judged by the later keys: the keys in force when it was made and cosigned
(spec 7.4.3). Witnesses cosign only checkpoints that name the root they hold as head (spec 7.4.2), which
is what ties "made under" to "in force".

Left to others: parsing notes (:mod:`ledger.note`), checkpoint and cosignature formats
(:mod:`ledger.checkpoint`), the chain of roots (:mod:`ledger.governance`), storage.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ledger.checkpoint import Checkpoint, CheckpointError, CosignatureVerifier, log_origin, witness_name
from ledger.errors import AuthorizationError, DecodeError, VerificationError
from ledger.governance import GovernanceChain
from ledger.note import DEFAULT_MAX_SIGNATURES, Note, NoteSignature, NoteVerifier, verify_note
from ledger.roots import Root

__all__ = ["GOVERNANCE_KEYWORD", "STATE_KEYWORD", "Finality", "Witnesses", "checkpoint_extensions",
           "count_cosignatures", "governance_line", "log_verifier", "named_root", "open_signed", "root_reference",
           "state_line", "state_reference",
           "witnessed_time"]

#: Keyword of the extension line that names the governance root of a checkpoint (spec 4.3.5).
GOVERNANCE_KEYWORD = "governance"
_GOVERNANCE_RE = re.compile(r"governance (0|[1-9][0-9]{0,19}) ([A-Za-z0-9+/]{43}=)")
#: Keyword of the extension line that carries the log's state root (spec 4.3.5, specs/state.md).
STATE_KEYWORD = "state"
_STATE_RE = re.compile(r"state ([A-Za-z0-9+/]{43}=)")


def governance_line(root: Root) -> str:
    """The extension line naming ``root``: ``governance <version> <base64 root hash>`` (spec 4.3.5)."""
    return f"{GOVERNANCE_KEYWORD} {root.version} {base64.b64encode(root.root_hash).decode('ascii')}"


def state_line(state_root: bytes) -> str:
    """The extension line carrying a log's state root: ``state <base64 state root>`` (spec 4.3.5)."""
    if not isinstance(state_root, bytes) or len(state_root) != 32:
        raise ValueError("a state root is 32 bytes")
    return f"{STATE_KEYWORD} {base64.b64encode(state_root).decode('ascii')}"


def checkpoint_extensions(root: Root, state_root: bytes) -> tuple[str, ...]:
    """The extension lines of a checkpoint made under ``root`` with the log's ``state_root``, in order (4.3.5)."""
    return (governance_line(root), state_line(state_root))


def state_reference(checkpoint: Checkpoint) -> bytes:
    """The state root that the checkpoint's ``state`` line carries (spec 4.3.5).

    Raises:
        DecodeError: the checkpoint does not have exactly the two extension lines, or its second is not a
            well-formed ``state`` line.
    """
    if len(checkpoint.extensions) != 2:
        raise DecodeError(f"checkpoint of {checkpoint.origin} at size {checkpoint.size} has"
                          f" {len(checkpoint.extensions)} extension lines; a Mekong checkpoint has two,"
                          " 'governance <version> <root hash>' then 'state <state root>'")
    line = checkpoint.extensions[1]
    m = _STATE_RE.fullmatch(line)
    if m is None:
        raise DecodeError(f"checkpoint extension line {line[:80]!r} is not 'state <base64 state root>'")
    return base64.b64decode(m.group(1), validate=True)


def root_reference(checkpoint: Checkpoint) -> tuple[int, bytes]:
    """The (version, root hash) that the checkpoint's ``governance`` line names (spec 4.3.5).

    Raises:
        DecodeError: the first extension line is missing or is not a well-formed ``governance`` line.
    """
    if not checkpoint.extensions:
        raise DecodeError(f"checkpoint of {checkpoint.origin} at size {checkpoint.size} names no governance root"
                          " (its first extension line must be 'governance <version> <root hash>')")
    line = checkpoint.extensions[0]
    m = _GOVERNANCE_RE.fullmatch(line)
    if m is None:
        raise DecodeError(f"checkpoint extension line {line[:80]!r} is not 'governance <version> <base64 root hash>'")
    try:
        digest = base64.b64decode(m.group(2), validate=True)
    except binascii.Error as e:  # the pattern admits only valid base64; a guard
        raise DecodeError(f"checkpoint governance line: bad base64 root hash: {e}") from e
    return int(m.group(1)), digest


def named_root(checkpoint: Checkpoint, chain: GovernanceChain) -> Root:
    """The verified root of ``chain`` that the checkpoint names (spec 4.3.5, 7.4.3).

    Raises:
        DecodeError: the checkpoint names no root, or names it malformed.
        VerificationError: the chain holds no root of that version (fetch newer roots first), or its root of
            that version has another hash.
    """
    version, digest = root_reference(checkpoint)
    head = chain.current.version
    if not 1 <= version <= head:
        raise VerificationError(f"checkpoint of {checkpoint.origin} at size {checkpoint.size} was made under governance"
                                f" root version {version}, which is not known here (the chain's head is version"
                                f" {head}): fetch the newer roots first")
    root = chain.root_at(version)
    if root.root_hash != digest:
        raise VerificationError(f"checkpoint of {checkpoint.origin} at size {checkpoint.size} names governance root"
                                f" version {version} with hash {digest.hex()}, but that version hashes to"
                                f" {root.root_hash.hex()}")
    return root


def log_verifier(network: str, log: str, root: Root) -> NoteVerifier:
    """The note key that signs checkpoints of ``log`` made under ``root``: the owner's node key in it.

    Raises:
        AuthorizationError: ``log`` is not a member of ``root``.
    """
    return NoteVerifier(log_origin(network, log), root.node_key_of(log))


@dataclass(frozen=True, slots=True)
class Witnesses:
    """The witness keys of one root: each member's node key as a cosignature/v1 key (spec 7.4.2).

    Attributes:
        network: the network id (it names the keys, spec 4.3.3).
        root: the governance root whose members witness.
    """

    network: str
    root: Root
    _by_key: dict[tuple[str, bytes], tuple[str, CosignatureVerifier]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {
            (v.name, v.key_id): (m.id, v) for m in self.root.members
            for v in (CosignatureVerifier(witness_name(self.network, m.id), m.node_key),)})

    def lookup(self, sig: NoteSignature) -> tuple[str, CosignatureVerifier] | None:
        """The (member id, verifier) whose witness key made the line, or None for any other key."""
        return self._by_key.get((sig.name, sig.key_id))

    def verify(self, checkpoint: Checkpoint, sig: NoteSignature) -> tuple[str, int]:
        """Verify one cosignature line by a witness key of the root; return (member id, timestamp).

        Raises:
            AuthorizationError: the line is by no witness key of the root.
            VerificationError: the cosignature does not verify.
        """
        found = self.lookup(sig)
        if found is None:
            raise AuthorizationError(f"cosignature by {sig.name}+{sig.key_id.hex()} is not by a witness key of any"
                                     f" member of governance root version {self.root.version}")
        member, verifier = found
        return member, verifier.verify(checkpoint, sig)


def count_cosignatures(checkpoint: Checkpoint, lines: Iterable[NoteSignature], witnesses: Witnesses) -> dict[str, int]:
    """The members whose cosignature on ``checkpoint`` verifies, with its timestamp (spec 7.4.3).

    Lines by other keys (the log's own signature, unknown keys, keys of other roots) are ignored, as a
    note verifier ignores unknown keys (spec 4.1.4); so is a witness line that does not verify. A member
    with several valid lines counts once, with its earliest timestamp.
    """
    times: dict[str, int] = {}
    for sig in lines:
        found = witnesses.lookup(sig)
        if found is None:
            continue
        member, verifier = found
        try:
            ts = verifier.verify(checkpoint, sig)
        except VerificationError:
            continue
        times[member] = min(ts, times.get(member, ts))
    return times


def witnessed_time(times: Iterable[int], faulty: int) -> int | None:
    """The ``(f+1)``-th smallest cosignature time: an upper bound that no ``f`` liars can move (GUIDE 2a).

    Every entry under a final checkpoint existed no later than this (its proof of existence). None when
    there are fewer than ``f + 1`` times.
    """
    ordered = sorted(times)
    return ordered[faulty] if len(ordered) > faulty else None


@dataclass(frozen=True, slots=True)
class Finality:
    """How final one checkpoint of a log is (spec 7.4.3).

    Attributes:
        log: member id of the log.
        size: the checkpoint's tree size.
        root_version: the governance root it was made under; it sets the keys, ``quorum`` and ``faulty``.
        cosigners: member id -> verified cosignature timestamp, for every cosignature that counts.
        quorum: cosignatures needed, from that root.
        faulty: ``f`` of that root: how many witnesses may lie about time.
    """

    log: str
    size: int
    root_version: int
    cosigners: Mapping[str, int] = field(hash=False)
    quorum: int
    faulty: int

    @classmethod
    def of(cls, log: str, size: int, root: Root, cosigners: Mapping[str, int]) -> Finality:
        """The finality of a checkpoint made under ``root`` with these verified cosigners."""
        return cls(log, size, root.version, dict(cosigners), root.quorum, root.faulty)

    @property
    def final(self) -> bool:
        """``quorum`` distinct members cosigned (spec 7.4.3)."""
        return len(self.cosigners) >= self.quorum

    @property
    def witnessed_time(self) -> int | None:
        """When final, :func:`witnessed_time` of the cosignature times; None when not final."""
        return witnessed_time(self.cosigners.values(), self.faulty) if self.final else None

    def require_final(self) -> Finality:
        """Return self if final.

        Raises:
            VerificationError: fewer than ``quorum`` members cosigned.
        """
        if not self.final:
            who = ", ".join(sorted(self.cosigners)) or "none"
            raise VerificationError(f"log {self.log} checkpoint of size {self.size} has {len(self.cosigners)} valid"
                                    f" member cosignatures ({who}); final needs {self.quorum} under governance root"
                                    f" version {self.root_version}")
        return self


def open_signed(data: bytes, chain: GovernanceChain, log: str, *,
                max_signatures: int = DEFAULT_MAX_SIGNATURES) -> tuple[Note, Checkpoint, Finality]:
    """Open a checkpoint note of ``log`` as served or received: owner signature, root, cosignatures (spec 7.4).

    Steps: (1) parse the note strictly; (2) parse its text as a checkpoint with this log's origin;
    (3) find the root it names in ``chain``; (4) verify the owner's signature with the owner's node key in
    that root; (5) count the cosignatures by that root's witness keys. Whether it is final is
    :attr:`Finality.final`; call :meth:`Finality.require_final` to insist.

    Returns:
        The note as received, its checkpoint, and its finality.

    Raises:
        DecodeError: the note or checkpoint is malformed, names no governance root or carries no state root.
        VerificationError: wrong origin, an unknown root, or no valid signature by the owner's node key.
        AuthorizationError: ``log`` is not a member of the root the checkpoint names.
    """
    network = chain.current.network
    try:
        note = Note.parse(data, max_signatures=max_signatures)
        checkpoint = Checkpoint.parse(note.text)
    except CheckpointError as e:
        raise DecodeError(f"log {log} checkpoint: {e}") from e
    origin = log_origin(network, log)
    if checkpoint.origin != origin:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    root = named_root(checkpoint, chain)
    state_reference(checkpoint)  # spec 4.3.5: a Mekong checkpoint carries its state root
    verify_note(note, (log_verifier(network, log, root),))
    times = count_cosignatures(checkpoint, note.signatures, Witnesses(network, root))
    return note, checkpoint, Finality.of(log, checkpoint.size, root, times)
