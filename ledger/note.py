"""C2SP signed notes: Ed25519 note keys, verifier key strings, signing, strict parsing, verification.

Specified in specs/04-notes.md sections 4.1, 4.2 and 4.5.1, following C2SP
signed-note (https://c2sp.org/signed-note, Ed25519 signature type 0x01).

:meth:`Note.parse` reads untrusted bytes and accepts only what
:meth:`Note.to_bytes` writes, so a parsed note serializes back to the bytes
that arrived. :func:`open_note` / :func:`verify_note` check every signature by
a known key and ignore the rest, as signed-note requires. Which keys are known
is the caller's decision. Checkpoint bodies and cosignatures (type 0x04) are in
:mod:`ledger.checkpoint`, which reuses the key id, vkey and base64 helpers here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.signing

from ledger.errors import DecodeError, VerificationError
from ledger.keys import PUBLIC_KEY_SIZE, public_key_of, verify_ed25519

#: Signature type byte of plain Ed25519 note signatures (spec 4.2.1).
ALG_ED25519 = 0x01
#: Length of a note key id (spec 4.2.1).
KEY_ID_SIZE = 4
#: Default cap on signature lines (spec 4.1.3); C2SP requires accepting at least 16.
DEFAULT_MAX_SIGNATURES = 100
#: Default cap on the size of one serialized note, in bytes (spec 4.1.3).
DEFAULT_MAX_NOTE_SIZE = 1 << 20

_SEED_SIZE = 32
_SIG_PREFIX = "\u2014 "  # em dash, space
_SKEY_PREFIX = "PRIVATE+KEY+"
# Control characters other than newline, and lone surrogates (not encodable as UTF-8).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")
# \s matches every Unicode space separator (Zs, Zl, Zp) and ASCII whitespace.
_BAD_NAME_CHAR = re.compile("[\\s+\x00-\x1f\ud800-\udfff]")
_KEY_ID_HEX = re.compile("[0-9a-f]{8}")
#: Texts a plain note key refuses to sign, so that it can never produce a
#: message of another signature type of the same key (spec 4.2.4).
_RESERVED_PREFIXES = ("cosignature/v1\n",)


class NoteError(DecodeError):
    """A signed note, note key or verifier key string that is not well formed."""


# --------------------------------------------------------------------------- helpers


def key_id(name: str, alg_and_pubkey: bytes) -> bytes:
    """``SHA-256(name || 0x0A || signature type || public key)[:4]`` (spec 4.2.1)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + alg_and_pubkey).digest()[:KEY_ID_SIZE]


def is_valid_key_name(name: object) -> bool:
    """Whether ``name`` may name a note key: non-empty, without Unicode spaces, ``+``
    or control characters (spec 4.1.2)."""
    return isinstance(name, str) and name != "" and _BAD_NAME_CHAR.search(name) is None


def _check_key_name(name: object) -> str:
    if not is_valid_key_name(name):
        raise NoteError(f"invalid note key name {name!r}")
    assert isinstance(name, str)
    return name


def check_note_text(text: object) -> str:
    """Check that ``text`` can be the text of a signed note and return it (spec 4.1.1).

    Raises:
        NoteError: not a string, not ending in a newline, or holding a control
            character other than newline or a lone surrogate.
    """
    if not isinstance(text, str):
        raise NoteError(f"note text must be a string, got {type(text).__name__}")
    if not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    if _CONTROL.search(text) is not None:
        raise NoteError("note text contains a control character or a lone surrogate")
    return text


def decode_base64(s: str, what: str, error: type[DecodeError] = NoteError) -> bytes:
    """Decode standard padded base64 (RFC 4648 section 4), canonical encodings only.

    A string that does not re-encode to itself is refused (spec 4.1.2).

    Raises:
        DecodeError: ``error`` (a subclass), naming ``what``.
    """
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise error(f"{what}: invalid base64") from e
    if base64.b64encode(raw).decode("ascii") != s:
        raise error(f"{what}: non-canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- verifier keys


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """Split ``name+hex(key id)+base64(type || key)`` into its three values (spec 4.2.2).

    Only the syntax is checked; :func:`decode_ed25519_vkey` checks the rest.

    Raises:
        NoteError: not three ``+``-separated parts, a bad key name, a key id
            that is not 8 lowercase hex digits, or bad base64.
    """
    if not isinstance(vkey, str):
        raise NoteError("verifier key must be a string")
    parts = vkey.split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise NoteError("verifier key must have three '+'-separated parts")
    name, id_hex, key_b64 = parts
    _check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError("verifier key id must be 8 lowercase hex digits")
    alg_and_pubkey = decode_base64(key_b64, "verifier key")
    if len(alg_and_pubkey) < 2:
        raise NoteError("verifier key has no key material")
    return name, bytes.fromhex(id_hex), alg_and_pubkey


def format_vkey(name: str, alg_and_pubkey: bytes) -> str:
    """Format a verifier key string, computing its key id (spec 4.2.2).

    Raises:
        NoteError: ``name`` is not a valid key name.
    """
    _check_key_name(name)
    return f"{name}+{key_id(name, alg_and_pubkey).hex()}+{_b64(alg_and_pubkey)}"


def decode_ed25519_vkey(vkey: str, alg: int) -> tuple[str, bytes]:
    """Parse a vkey of Ed25519 signature type ``alg`` into ``(name, public_key)`` (spec 4.2.2).

    Raises:
        NoteError: malformed, another signature type, a key that is not 32
            bytes, or a key id that is not the hash of name, type and key.
    """
    name, kid, raw = parse_vkey(vkey)
    if raw[0] != alg:
        raise NoteError(f"verifier key {name!r}: signature type 0x{raw[0]:02x}, expected 0x{alg:02x}")
    if len(raw) != 1 + PUBLIC_KEY_SIZE:
        raise NoteError(f"verifier key {name!r}: Ed25519 key must be 32 bytes, got {len(raw) - 1}")
    if kid != key_id(name, raw):
        raise NoteError(f"verifier key {name!r}: key id does not match name and key")
    return name, raw[1:]


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note (spec 4.1.2).

    Attributes:
        name: the key name.
        key_id: the 4-byte key id, the first bytes of the base64 blob.
        signature: the rest of the blob (for type 0x01, the 64-byte Ed25519 signature).
    """

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_SIZE:
            raise NoteError("note signature key id must be 4 bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise NoteError("note signature must be non-empty bytes")

    def line(self) -> str:
        """The signature line, without its final newline."""
        return f"{_SIG_PREFIX}{self.name} {_b64(self.key_id + self.signature)}"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse one signature line given without its newline (spec 4.1.2 step 6).

        Raises:
            NoteError: no em dash prefix, bad name or base64, fewer than 5 bytes.
        """
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("signature line must start with an em dash and a space")
        name, sep, blob_b64 = line[len(_SIG_PREFIX):].partition(" ")
        if not sep:
            raise NoteError("signature line has no signature")
        blob = decode_base64(blob_b64, f"signature by {name!r}")
        if len(blob) <= KEY_ID_SIZE:
            raise NoteError(f"signature by {name!r} is too short")
        return cls(name, blob[:KEY_ID_SIZE], blob[KEY_ID_SIZE:])


@dataclass(frozen=True, slots=True)
class Note:
    """A signed note: its text and at least one signature (spec 4.1).

    The signatures are unverified; only :func:`verify_note` says which of
    them hold. No two signatures share a (name, key id) pair.
    """

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_note_text(self.text)
        if not isinstance(self.signatures, tuple) or not self.signatures:
            raise NoteError("a signed note needs a non-empty tuple of signatures")
        seen: set[tuple[str, bytes]] = set()
        for sig in self.signatures:
            if not isinstance(sig, NoteSignature):
                raise NoteError(f"not a NoteSignature: {type(sig).__name__}")
            if (sig.name, sig.key_id) in seen:
                raise NoteError(f"two signatures by key {sig.name}+{sig.key_id.hex()}")
            seen.add((sig.name, sig.key_id))

    @classmethod
    def parse(cls, data: bytes | str, *, max_signatures: int = DEFAULT_MAX_SIGNATURES,
              max_size: int = DEFAULT_MAX_NOTE_SIZE) -> Note:
        """Parse a serialized signed note (UTF-8 bytes, or text) strictly (spec 4.1.2).

        Raises:
            NoteError: any deviation from the format, or a limit exceeded.
        """
        # Spec 4.1.2 step 1: size limit, then strict UTF-8.
        if isinstance(data, str):
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError as e:
                raise NoteError("note is not valid Unicode") from e
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise NoteError(f"note must be bytes, got {type(data).__name__}")
        if len(data) > max_size:
            raise NoteError(f"note is larger than {max_size} bytes")
        try:
            s = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError("note is not valid UTF-8") from e
        # Spec 4.1.2 step 2: no control characters other than newline.
        if _CONTROL.search(s) is not None:
            raise NoteError("note contains a control character")
        # Spec 4.1.2 step 3: the text ends at the last blank line.
        split = s.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no blank line before its signatures")
        text, block = s[:split + 1], s[split + 2:]
        # Spec 4.1.2 step 4: one or more signature lines, each ending in a newline.
        if not block.endswith("\n"):
            raise NoteError("note must end with a signature line and a newline")
        lines = block[:-1].split("\n")
        # Spec 4.1.2 step 5: signature count limit.
        if len(lines) > max_signatures:
            raise NoteError(f"note has more than {max_signatures} signatures")
        # Spec 4.1.2 steps 6 and 7: each line, then the note (which refuses duplicates).
        return cls(text, tuple(NoteSignature.parse_line(line) for line in lines))

    def format(self) -> str:
        """The serialized note as text: text, blank line, signature lines."""
        return self.text + "\n" + "".join(sig.line() + "\n" for sig in self.signatures)

    def to_bytes(self) -> bytes:
        """The serialized note as UTF-8 bytes."""
        return self.format().encode("utf-8")


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True, eq=False)
class NoteSigner:
    """An Ed25519 note signing key, signature type 0x01 (spec 4.2).

    The same ``signing_key`` may also back a
    :class:`ledger.checkpoint.CosignatureSigner`; the two get different key
    ids and sign differently framed messages (spec 4.2.4).

    ``public_key`` and ``key_id`` are computed; ``repr`` never shows the private key.

    Raises:
        NoteError: ``name`` is not a valid key name.
        TypeError: ``signing_key`` is not a ``nacl.signing.SigningKey``.
    """

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)
    public_key: bytes = field(init=False, repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.signing_key, nacl.signing.SigningKey):
            raise TypeError("signing_key must be a nacl.signing.SigningKey")
        object.__setattr__(self, "public_key", public_key_of(self.signing_key))
        object.__setattr__(self, "key_id", key_id(self.name, bytes([ALG_ED25519]) + self.public_key))

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key string of this key (spec 4.2.2)."""
        return format_vkey(self.name, bytes([ALG_ED25519]) + self.public_key)

    @property
    def verifier(self) -> NoteVerifier:
        """The matching :class:`NoteVerifier`."""
        return NoteVerifier(self.name, self.public_key)

    def sign(self, text: str) -> NoteSignature:
        """Sign a note text (spec 4.1.1, 4.2.4).

        Raises:
            NoteError: ``text`` is not a valid note text.
            ValueError: ``text`` starts like a message of another signature
                type this key may make (``cosignature/v1``).
        """
        check_note_text(text)
        if text.startswith(_RESERVED_PREFIXES):
            raise ValueError("refusing to sign a note text that looks like a cosignature message")
        sig = self.signing_key.sign(text.encode("utf-8")).signature
        return NoteSignature(self.name, self.key_id, sig)

    def to_skey(self) -> str:
        """Export the key as ``PRIVATE+KEY+name+hex(key id)+base64(0x01 || seed)`` (spec 4.2.3).

        The result is secret: it holds the private key.
        """
        seed = bytes(self.signing_key)
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + seed)}"

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Load a signer from its skey string (spec 4.2.3).

        Raises:
            NoteError: malformed, another signature type, a seed that is not
                32 bytes, or a key id that does not match the derived key.
                The message never contains key material.
        """
        if not isinstance(skey, str) or not skey.startswith(_SKEY_PREFIX):
            raise NoteError("signer key must start with PRIVATE+KEY+")
        try:
            name, kid, raw = parse_vkey(skey[len(_SKEY_PREFIX):])
        except NoteError as e:
            raise NoteError(f"malformed signer key: {e}") from None
        if raw[0] != ALG_ED25519 or len(raw) != 1 + _SEED_SIZE:
            raise NoteError(f"signer key {name!r}: not an Ed25519 (0x01) key")
        signer = cls(name, nacl.signing.SigningKey(raw[1:]))
        if signer.key_id != kid:
            raise NoteError(f"signer key {name!r}: key id does not match the key")
        return signer


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """An Ed25519 note verifier key, signature type 0x01 (spec 4.2); ``key_id`` is computed.

    Raises:
        NoteError: bad name or key size.
    """

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise NoteError("an Ed25519 public key must be 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, bytes([ALG_ED25519]) + self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse and check a type 0x01 verifier key string (spec 4.2.2).

        Raises:
            NoteError: see :func:`decode_ed25519_vkey`.
        """
        return cls(*decode_ed25519_vkey(vkey, ALG_ED25519))

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key string (spec 4.2.2)."""
        return format_vkey(self.name, bytes([ALG_ED25519]) + self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> None:
        """Check an Ed25519 signature (without its key id) over ``msg``.

        Raises:
            VerificationError: the signature does not verify.
        """
        try:
            verify_ed25519(self.public_key, msg, sig)
        except VerificationError as e:
            raise VerificationError(f"note signature by {self.name}+{self.key_id.hex()}: {e}") from e


# --------------------------------------------------------------------------- sign and open


def sign_note(text: str, signers: Sequence[NoteSigner]) -> Note:
    """Sign ``text`` with every signer, in order (spec 4.1).

    Raises:
        NoteError: invalid text, no signers, or two signers with one (name, key id).
        ValueError: see :meth:`NoteSigner.sign`.
    """
    return Note(check_note_text(text), tuple(s.sign(text) for s in signers))


def verify_note(note: Note, verifiers: Sequence[NoteVerifier]) -> tuple[NoteSignature, ...]:
    """Verify the signatures of ``note`` by known keys and return them (spec 4.5.1 steps 2-5).

    Raises:
        VerificationError: a known key's signature fails, or no known key signed.
        ValueError: two different verifiers share one (name, key id).
    """
    # Spec 4.5.1 step 2: index the trusted keys by (name, key id).
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        if known.setdefault((v.name, v.key_id), v) != v:
            raise ValueError(f"two different verifier keys for {v.name}+{v.key_id.hex()}")
    msg = note.text.encode("utf-8")
    verified = []
    for sig in note.signatures:
        # Spec 4.5.1 step 3: unknown (name, key id) pairs are ignored, even if one half matches.
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        # Spec 4.5.1 step 4: a known key's signature must verify, or the whole note is rejected.
        verifier.verify(msg, sig.signature)
        verified.append(sig)
    # Spec 4.5.1 step 5: at least one known key must have signed.
    if not verified:
        raise VerificationError("note is not signed by any known key")
    return tuple(verified)


def open_note(data: bytes, verifiers: Sequence[NoteVerifier], *,
              max_signatures: int = DEFAULT_MAX_SIGNATURES,
              max_size: int = DEFAULT_MAX_NOTE_SIZE) -> tuple[Note, tuple[NoteSignature, ...]]:
    """Parse a signed note and verify it; return it and its verified signatures (spec 4.5.1).

    Raises:
        NoteError: the note is malformed (step 1).
        VerificationError: see :func:`verify_note`.
        ValueError: see :func:`verify_note`.
    """
    # Spec 4.5.1 step 1: strict parse (spec 4.1.2).
    note = Note.parse(data, max_signatures=max_signatures, max_size=max_size)
    return note, verify_note(note, verifiers)
