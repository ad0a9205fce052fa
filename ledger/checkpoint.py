"""C2SP tlog checkpoints and Ed25519 cosignature/v1 witness cosignatures.

Specified in specs/04-notes.md sections 4.3, 4.4 and 4.5, following C2SP
tlog-checkpoint (https://c2sp.org/tlog-checkpoint) and tlog-cosignature
(https://c2sp.org/tlog-cosignature, signature type 0x04).

A checkpoint is the text of a signed note (:mod:`ledger.note`): origin, tree
size, root hash and optional extension lines. The log signs it with a type
0x01 note key; witnesses add cosignatures, which sign the same text framed by
``cosignature/v1`` and a timestamp. :func:`open_checkpoint` checks the log
signature and every cosignature by a known witness. Whether the tree is
consistent with earlier checkpoints, how many cosignatures make it final and
how old they may be are decided elsewhere (Merkle proofs, finality rules).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nacl.signing

from ledger.errors import VerificationError
from ledger.keys import SIGNATURE_SIZE, public_key_of, verify_ed25519
from ledger.note import (
    DEFAULT_MAX_SIGNATURES,
    Note,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    decode_base64,
    decode_ed25519_vkey,
    format_vkey,
    is_valid_key_name,
    key_id,
    verify_note,
)

#: Signature type byte of Ed25519 cosignature/v1 (spec 4.4.1).
ALG_COSIGNATURE_V1 = 0x04
#: An RFC 6962 / RFC 9162 SHA-256 root (spec 4.3.1).
ROOT_HASH_SIZE = 32
#: Tree sizes are unsigned 64-bit integers (spec 4.3.1).
MAX_TREE_SIZE = (1 << 64) - 1
#: Cosignature timestamps must not exceed 2^63 - 1 (spec 4.4.2).
MAX_TIMESTAMP = (1 << 63) - 1
#: First path element of every Mekong log origin (spec 4.3.3).
ORIGIN_PREFIX = "mekong-trust-ledger"

_COSIG_HEADER = b"cosignature/v1\n"
_TIMESTAMP_SIZE = 8
_COSIG_SIZE = _TIMESTAMP_SIZE + SIGNATURE_SIZE
_SIZE_RE = re.compile("0|[1-9][0-9]{0,19}")
_BAD_LINE_CHAR = re.compile("[\x00-\x1f\ud800-\udfff]")
_ORIGIN_PART = re.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class CheckpointError(NoteError):
    """A checkpoint body or cosignature that is not well formed."""


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The body of a checkpoint note (spec 4.3.1).

    Attributes:
        origin: the log's unique identity (first line).
        size: the number of leaves in the tree.
        root_hash: the 32-byte Merkle tree root at ``size``.
        extensions: opaque non-empty extension lines, without newlines.

    Raises:
        CheckpointError: any field out of its range or holding a forbidden character.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("checkpoint extensions must be a tuple")
        for what, line in (("origin", self.origin), *(("extension line", e) for e in self.extensions)):
            if not isinstance(line, str) or not line or _BAD_LINE_CHAR.search(line):
                raise CheckpointError(f"checkpoint {what} must be non-empty text without control characters")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size must be a 64-bit unsigned integer, got {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != ROOT_HASH_SIZE:
            raise CheckpointError("checkpoint root hash must be 32 bytes")

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly (spec 4.3.2).

        Accepts exactly what :meth:`format` produces, so
        ``Checkpoint.parse(t).format() == t``.

        Raises:
            CheckpointError: fewer than three lines, an empty line, no final
                newline, a size that is not canonical decimal or exceeds
                2^64 - 1, or a root hash that is not canonical base64 of 32 bytes.
        """
        # Spec 4.3.2 step 1: newline-terminated, at least three lines, none empty.
        if not isinstance(text, str) or not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or "" in lines:
            raise CheckpointError("checkpoint needs at least three non-empty lines")
        origin, size_line, root_line, *extensions = lines
        # Spec 4.3.2 step 2: tree size, ASCII decimal without leading zeros.
        if not _SIZE_RE.fullmatch(size_line):
            raise CheckpointError("checkpoint tree size must be decimal without leading zeros")
        # Spec 4.3.2 step 3: root hash, canonical standard base64 of 32 bytes.
        root_hash = decode_base64(root_line, "checkpoint root hash", CheckpointError)
        # Spec 4.3.2 step 4: field checks (origin and extension characters, ranges).
        return cls(origin, int(size_line), root_hash, tuple(extensions))

    def format(self) -> str:
        """The checkpoint note text, ending in a newline (spec 4.3.1)."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(line + "\n" for line in (self.origin, str(self.size), root, *self.extensions))


def log_origin(network_id: str, member_id: str) -> str:
    """The origin (and log key name) of a member's log (spec 4.3.3).

    Raises:
        ValueError: an id outside ``[A-Za-z0-9][A-Za-z0-9._-]{0,62}``.
    """
    for part in (network_id, member_id):
        if not isinstance(part, str) or not _ORIGIN_PART.fullmatch(part):
            raise ValueError(f"invalid network or member id {part!r}")
    return f"{ORIGIN_PREFIX}/{network_id}/{member_id}"


def witness_name(network_id: str, member_id: str) -> str:
    """The cosigner key name of a member's witness (spec 4.3.3).

    Raises:
        ValueError: see :func:`log_origin`.
    """
    return log_origin(network_id, member_id) + "/witness"


def parse_log_origin(origin: str) -> tuple[str, str]:
    """Split a Mekong log origin into ``(network_id, member_id)`` (spec 4.3.3).

    Raises:
        CheckpointError: ``origin`` does not follow the project convention.
    """
    parts = origin.split("/") if isinstance(origin, str) else []
    if len(parts) != 3 or parts[0] != ORIGIN_PREFIX or not all(_ORIGIN_PART.fullmatch(p) for p in parts[1:]):
        raise CheckpointError(f"not a {ORIGIN_PREFIX} log origin: {origin!r}")
    return parts[1], parts[2]


# --------------------------------------------------------------------------- cosignatures


def cosignature_message(checkpoint_text: str | bytes, timestamp: int) -> bytes:
    """The message a cosignature/v1 signs (spec 4.4.3).

    ``cosignature/v1\\n`` ``time <timestamp>\\n`` then the checkpoint note text.

    Raises:
        CheckpointError: ``timestamp`` outside 0..2^63-1.
    """
    _check_timestamp(timestamp)
    body = checkpoint_text.encode("utf-8") if isinstance(checkpoint_text, str) else checkpoint_text
    return _COSIG_HEADER + b"time %d\n" % timestamp + body


def _check_timestamp(timestamp: object) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature timestamp must be in 0..2^63-1, got {timestamp!r}")
    return timestamp


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A decoded cosignature/v1 signature line (spec 4.4.2).

    Attributes:
        name: the cosigner name.
        key_id: the 4-byte key id (signature type 0x04).
        timestamp: seconds since the epoch when the cosigner signed.
        signature: the 64-byte Ed25519 signature.

    Raises:
        CheckpointError: a field out of range.
    """

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp)
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise CheckpointError("cosignature must hold a 64-byte Ed25519 signature")
        NoteSignature(self.name, self.key_id, self.signature)  # name and key id checks

    @classmethod
    def from_note_signature(cls, sig: NoteSignature) -> Cosignature:
        """Decode ``timestamp (8 bytes, big-endian) || signature (64)`` (spec 4.4.2).

        Raises:
            CheckpointError: not 72 bytes, or a timestamp above 2^63 - 1.
        """
        if len(sig.signature) != _COSIG_SIZE:
            raise CheckpointError(f"cosignature by {sig.name!r} must be 72 bytes after the key id")
        ts = int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big")
        return cls(sig.name, sig.key_id, ts, sig.signature[_TIMESTAMP_SIZE:])

    def to_note_signature(self) -> NoteSignature:
        """Encode as a note signature line (spec 4.4.2)."""
        blob = self.timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + self.signature
        return NoteSignature(self.name, self.key_id, blob)


@dataclass(frozen=True, slots=True, eq=False)
class CosignatureSigner:
    """An Ed25519 cosigner key, signature type 0x04 (spec 4.4).

    May share its ``signing_key`` with the member's :class:`NoteSigner`
    (spec 4.2.4).

    Attributes:
        name: the cosigner name.
        signing_key: the private key (never shown by ``repr``).
        public_key: the 32-byte Ed25519 public key.
        key_id: the 4-byte key id for type 0x04.

    Raises:
        NoteError: ``name`` is not a valid key name.
        TypeError: ``signing_key`` is not a ``nacl.signing.SigningKey``.
    """

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)
    public_key: bytes = field(init=False, repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise NoteError(f"invalid cosigner name {self.name!r}")
        if not isinstance(self.signing_key, nacl.signing.SigningKey):
            raise TypeError("signing_key must be a nacl.signing.SigningKey")
        object.__setattr__(self, "public_key", public_key_of(self.signing_key))
        object.__setattr__(self, "key_id", key_id(self.name, bytes([ALG_COSIGNATURE_V1]) + self.public_key))

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key string, signature type 0x04 (spec 4.2.2)."""
        return format_vkey(self.name, bytes([ALG_COSIGNATURE_V1]) + self.public_key)

    @property
    def verifier(self) -> CosignatureVerifier:
        """The matching :class:`CosignatureVerifier`."""
        return CosignatureVerifier(self.name, self.public_key)

    def cosign(self, checkpoint: Checkpoint, timestamp: int) -> NoteSignature:
        """Cosign ``checkpoint`` as of ``timestamp`` (spec 4.4.3).

        The caller must first have checked that the checkpoint is consistent
        with everything this witness cosigned before for the same origin.

        Raises:
            CheckpointError: ``timestamp`` outside 0..2^63-1.
        """
        sig = self.signing_key.sign(cosignature_message(checkpoint.format(), timestamp)).signature
        return Cosignature(self.name, self.key_id, timestamp, sig).to_note_signature()


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A trusted cosigner's Ed25519 key, signature type 0x04 (spec 4.4).

    Attributes:
        name: the cosigner name.
        public_key: the 32-byte Ed25519 public key.
        key_id: computed from both with type byte 0x04.

    Raises:
        NoteError: bad name or key size.
    """

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        NoteVerifier(self.name, self.public_key)  # name and key checks
        object.__setattr__(self, "key_id", key_id(self.name, bytes([ALG_COSIGNATURE_V1]) + self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse and check a type 0x04 verifier key string (spec 4.2.2).

        Type 0x01 keys are refused: which signature type a key is trusted for
        is part of the configuration.

        Raises:
            NoteError: see :func:`ledger.note.decode_ed25519_vkey`.
        """
        return cls(*decode_ed25519_vkey(vkey, ALG_COSIGNATURE_V1))

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key string, signature type 0x04 (spec 4.2.2)."""
        return format_vkey(self.name, bytes([ALG_COSIGNATURE_V1]) + self.public_key)

    def verify(self, checkpoint: Checkpoint, sig: NoteSignature) -> int:
        """Verify a cosignature on ``checkpoint`` (spec 4.5.2).

        Returns:
            The verified timestamp.

        Raises:
            VerificationError: not this cosigner's (name, key id), malformed,
                or the signature does not verify.
        """
        return self._verify_text(checkpoint.format().encode("utf-8"), sig)

    def _verify_text(self, text: bytes, sig: NoteSignature) -> int:
        # Spec 4.5.2 step 1: the line must name this cosigner's key.
        if (sig.name, sig.key_id) != (self.name, self.key_id):
            raise VerificationError(f"signature is not by cosigner {self.name}+{self.key_id.hex()}")
        # Spec 4.5.2 step 2: decode timestamp and signature.
        try:
            cosig = Cosignature.from_note_signature(sig)
        except CheckpointError as e:
            raise VerificationError(f"malformed cosignature: {e}") from e
        # Spec 4.5.2 step 3: Ed25519 over the framed message.
        try:
            verify_ed25519(self.public_key, cosignature_message(text, cosig.timestamp), cosig.signature)
        except VerificationError as e:
            raise VerificationError(f"cosignature by {self.name}+{self.key_id.hex()}: {e}") from e
        return cosig.timestamp


def sign_checkpoint(cp: Checkpoint, log_signer: NoteSigner) -> Note:
    """Sign a checkpoint with the log's note key (spec 4.3.4).

    The log must never sign two checkpoints that are not consistent; that is
    the caller's duty.
    """
    text = cp.format()
    return Note(text, (log_signer.sign(text),))


def open_checkpoint(data: bytes, log_verifier: NoteVerifier,
                    cosigners: Sequence[CosignatureVerifier] = (), *,
                    max_signatures: int = DEFAULT_MAX_SIGNATURES) -> tuple[Checkpoint, dict[str, int]]:
    """Verify a signed checkpoint and its cosignatures (spec 4.5.3).

    Returns:
        The checkpoint, and for each known cosigner whose cosignature
        verified, its name and timestamp (the earliest, if several keys of one
        name signed).

    Raises:
        NoteError: the note is malformed; CheckpointError if its body is.
        VerificationError: no valid log signature, a bad log signature, or a
            bad cosignature by a known cosigner.
        ValueError: two different cosigner keys share one (name, key id).
    """
    # Spec 4.5.3 step 1: strict note parse.
    note = Note.parse(data, max_signatures=max_signatures)
    # Spec 4.5.3 step 2: the log's signature (spec 4.5.1 steps 2-5 with the one log key).
    verify_note(note, (log_verifier,))
    # Spec 4.5.3 step 3: the body must be a checkpoint.
    checkpoint = Checkpoint.parse(note.text)
    # Spec 4.5.3 step 4: cosignatures by known cosigners, over the text as received.
    known: dict[tuple[str, bytes], CosignatureVerifier] = {}
    for c in cosigners:
        if known.setdefault((c.name, c.key_id), c) != c:
            raise ValueError(f"two different cosigner keys for {c.name}+{c.key_id.hex()}")
    text = note.text.encode("utf-8")
    times: dict[str, int] = {}
    for sig in note.signatures:
        cosigner = known.get((sig.name, sig.key_id))
        if cosigner is None:
            continue  # the log's own line, or an unknown key: ignored (spec 4.1.4)
        ts = cosigner._verify_text(text, sig)
        times[sig.name] = min(ts, times.get(sig.name, ts))
    return checkpoint, times


def add_signatures(note: Note, sigs: Iterable[NoteSignature]) -> Note:
    """Return ``note`` with ``sigs`` appended, skipping any (name, key id) already present.

    Nothing is verified: this merges cosignatures collected from witnesses.

    Raises:
        NoteError: an item is not a :class:`NoteSignature`.
    """
    merged = list(note.signatures)
    seen = {(s.name, s.key_id) for s in merged}
    for sig in sigs:
        if not isinstance(sig, NoteSignature):
            raise NoteError(f"not a NoteSignature: {type(sig).__name__}")
        if (sig.name, sig.key_id) not in seen:
            seen.add((sig.name, sig.key_id))
            merged.append(sig)
    return Note(note.text, tuple(merged))
