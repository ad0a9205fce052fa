"""Ledger entries: the signed envelope, the body of each entry type, and decoding.

Specified in specs/06-entries.md sections 6.1 and 6.2. An entry is a tagged
COSE_Sign1 (EdDSA) whose attached payload is a deterministic CBOR map naming
the log, the entry type, the author time, the governance root version the
signer acts under, and a type-specific body. The body classes live in
:mod:`ledger.bodies` and are re-exported here; :data:`ENTRY_TYPES` is the one
table that maps type names to them.

:meth:`UnverifiedEntry.decode` checks form only. Whether the signer may write
the entry, and whether the signature verifies, is decided by
:mod:`ledger.rules` and :class:`ledger.registry.RegistryState`, which turn an
:class:`UnverifiedEntry` into an :class:`Entry`. The bytes are kept exactly as
received: they are the Merkle leaf, and signatures are checked over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import nacl.signing

from ledger import cbor
from ledger.bodies import (
    ENTRY_TYPES,
    LOA_ORDER,
    LOAS,
    Body,
    CredentialAnchor,
    CredentialStatus,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    PolicyRule,
    check_member_id,
    check_uint,
)
from ledger.cose import (
    ALG_EDDSA,
    COSE_SIGN1_TAG,
    HDR_ALG,
    HDR_CONTENT_TYPE,
    HDR_KID,
    Sign1,
    UnverifiedSign1,
    sig_structure,
    sign1,
)
from ledger.errors import DecodeError
from ledger.keys import KEY_ID_SIZE, key_id, public_key_of

__all__ = [
    "ENTRY_CONTENT_TYPE",
    "ENTRY_TYPES",
    "ENTRY_VERSION",
    "LOAS",
    "LOA_ORDER",
    "MAX_ENTRY_SIZE",
    "PAYLOAD_LIMITS",
    "Body",
    "CredentialAnchor",
    "CredentialStatus",
    "Entry",
    "IssuerKeyAdd",
    "IssuerKeyRevoke",
    "IssuerKeyRotate",
    "IssuerRegister",
    "IssuerUpdate",
    "MemberPolicy",
    "PolicyRule",
    "UnverifiedEntry",
    "encode_payload",
    "make_entry",
]

#: COSE content type of every entry (spec 6.1.1).
ENTRY_CONTENT_TYPE = "application/mekong-entry+cbor"
#: The payload format version, the ``"v"`` field (spec 6.1.2).
ENTRY_VERSION = 1
#: Largest entry accepted, COSE envelope included (spec 6.1.3).
MAX_ENTRY_SIZE = 1 << 16
#: Limits for decoding an entry payload (spec 6.1.3).
PAYLOAD_LIMITS = cbor.CborLimits(max_size=MAX_ENTRY_SIZE, max_depth=6, max_items=1 << 14)
_ENVELOPE_LIMITS = cbor.CborLimits(max_size=MAX_ENTRY_SIZE, max_depth=4, max_items=64,
                                   allowed_tags=frozenset({COSE_SIGN1_TAG}))

_PAYLOAD_KEYS = frozenset({"v", "log", "type", "time", "root", "body"})
_HEADER_LABELS = frozenset({HDR_ALG, HDR_CONTENT_TYPE, HDR_KID})
_TAG18 = 0xD2  # initial byte of CBOR tag 18


def _check_envelope(log: object, type_name: object, time: object, root: object, body: object) -> None:
    check_member_id("log", log)
    if not isinstance(type_name, str) or type_name not in ENTRY_TYPES:
        raise DecodeError(f"entry: unknown entry type {type_name!r}")
    check_uint("time", time)
    if check_uint("root", root) < 1:
        raise DecodeError("entry: root version must be at least 1")
    if type(body) is not ENTRY_TYPES[type_name]:
        raise DecodeError(f"entry: body of a {type_name} entry must be a {ENTRY_TYPES[type_name].__name__}")


def encode_payload(log: str, type_name: str, time: int, body: Body, *, root: int = 1) -> bytes:
    """Encode an entry payload in deterministic CBOR (spec 6.1.2).

    Raises:
        DecodeError: a field is malformed, the type is unknown, or the body
            is not of the class :data:`ENTRY_TYPES` names for the type.
    """
    _check_envelope(log, type_name, time, root, body)
    return cbor.encode({"v": ENTRY_VERSION, "log": log, "type": type_name, "time": time,
                        "root": root, "body": body.to_map()})


def make_entry(log: str, type_name: str, time: int, body: Body, signing_key: nacl.signing.SigningKey,
               *, root: int = 1) -> bytes:
    """Sign an entry: a tagged COSE_Sign1 over its payload (spec 6.1.1).

    The protected header carries ``alg`` EdDSA, the ledger key id of
    ``signing_key`` and the entry content type; the unprotected header is
    empty. Whether the key may sign this entry is checked only when the entry
    is applied to a registry state (spec 6.3).

    Args:
        log: the member id of the log the entry is for.
        type_name: a key of :data:`ENTRY_TYPES`.
        time: the author time, Unix seconds.
        body: the body, an instance of ``ENTRY_TYPES[type_name]``.
        signing_key: the admin or issuer key the rules require.
        root: the governance root version the signer acts under (1 is the
            genesis root).

    Returns:
        The entry bytes, which become the Merkle leaf data.

    Raises:
        DecodeError: a field is malformed (see :func:`encode_payload`).
    """
    payload = encode_payload(log, type_name, time, body, root=root)
    return sign1(payload, signing_key, kid=key_id(public_key_of(signing_key)),
                 content_type=ENTRY_CONTENT_TYPE)


@dataclass(frozen=True, slots=True)
class UnverifiedEntry:
    """An entry that decoded well but whose signer and signature are not yet checked.

    Attributes:
        raw: the entry bytes exactly as received.
        sign1: the decoded COSE_Sign1 envelope.
        log: the member id of the log the entry names.
        type: the entry type name, a key of :data:`ENTRY_TYPES`.
        time: the author time (spec 6.5).
        root: the governance root version the signer acts under.
        body: the type-specific body.
    """

    raw: bytes = field(repr=False)
    sign1: UnverifiedSign1 = field(repr=False)
    log: str
    type: str
    time: int
    root: int
    body: Body

    def __post_init__(self) -> None:
        _check_envelope(self.log, self.type, self.time, self.root, self.body)

    @property
    def kid(self) -> bytes:
        """The signer's key id from the protected header."""
        return self.sign1.headers[HDR_KID]  # type: ignore[no-any-return]

    def to_be_signed(self) -> bytes:
        """The COSE Sig_structure the signature covers (RFC 9052 section 4.4).

        Built from the protected header and payload bytes as received.
        """
        return sig_structure(self.sign1.protected, self.sign1.payload or b"")

    @classmethod
    def decode(cls, raw: bytes) -> UnverifiedEntry:
        """Decode entry bytes, checking their form only (spec 6.1).

        Raises:
            DecodeError: for anything that is not a well-formed entry: not a
                tagged COSE_Sign1 in the entry profile's exact encoding, a
                payload that is not deterministic CBOR or lacks or adds
                fields, an unknown type, or a malformed body. No other
                exception escapes, whatever the input bytes.
        """
        if not isinstance(raw, bytes):
            raise DecodeError(f"entry: expected bytes, got {type(raw).__name__}")
        if len(raw) > MAX_ENTRY_SIZE:
            raise DecodeError(f"entry: {len(raw)} bytes exceeds the limit of {MAX_ENTRY_SIZE}")
        parts = _split_envelope(raw)
        if parts is None:
            _diagnose_envelope(raw)  # always raises
        protected, payload, signature = parts
        kid = protected[-KEY_ID_SIZE:]
        s1 = UnverifiedSign1(protected, {}, payload, signature,
                             {HDR_ALG: ALG_EDDSA, HDR_CONTENT_TYPE: ENTRY_CONTENT_TYPE, HDR_KID: kid}, raw)
        # Spec 6.1.2: the payload map.
        p = cbor.decode(payload, PAYLOAD_LIMITS)
        if not isinstance(p, dict) or p.keys() != _PAYLOAD_KEYS:
            raise DecodeError("entry: payload must be a map of exactly v, log, type, time, root, body")
        if p["v"] != ENTRY_VERSION or type(p["v"]) is not int:
            raise DecodeError(f"entry: unsupported payload version {p['v']!r:.40}")
        type_name = p["type"]
        if not isinstance(type_name, str) or type_name not in ENTRY_TYPES:
            raise DecodeError(f"entry: unknown entry type {type_name!r:.80}")
        body = ENTRY_TYPES[type_name].from_map(p["body"])
        return cls(raw, s1, p["log"], type_name, p["time"], p["root"], body)


# --------------------------------------------------------------------------- the envelope's one layout
#
# Spec 6.1.1 allows one encoding of the envelope, so it is checked by
# comparing the bytes with what the encoder writes for the same kid, payload
# and signature: everything but those three is fixed, and the payload's
# length follows from the input's. Nothing is parsed here; bytes that do not
# match are handed to ledger.cose, only to say why they are refused.

_PROTECTED_PREFIX = cbor.encode({HDR_ALG: ALG_EDDSA, HDR_CONTENT_TYPE: ENTRY_CONTENT_TYPE,
                                 HDR_KID: bytes(KEY_ID_SIZE)})[:-KEY_ID_SIZE]
_PROTECTED_SIZE = len(_PROTECTED_PREFIX) + KEY_ID_SIZE
# tag 18, array of 4, bstr head of the protected header, then its fixed prefix
_ENVELOPE_PREFIX = b"\xd2\x84" + cbor.encode(bytes(_PROTECTED_SIZE))[:-_PROTECTED_SIZE] + _PROTECTED_PREFIX
_PROTECTED_START = len(_ENVELOPE_PREFIX) - len(_PROTECTED_PREFIX)
_PAYLOAD_HEAD_AT = len(_ENVELOPE_PREFIX) + KEY_ID_SIZE + 1  # after the kid and the empty map a0
_SIGNATURE_HEAD = b"\x58\x40"  # bstr of 64 bytes
_SIGNATURE_PART = len(_SIGNATURE_HEAD) + 64
def _split_envelope(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(protected, payload, signature) when ``raw`` is the encoding of such an envelope, else None.

    ``raw`` matches when it is exactly ``_ENVELOPE_PREFIX + kid + a0 + bstr(payload) + bstr(signature)``
    for some 16-byte kid, payload and 64-byte signature.
    """
    # The payload's head and bytes fill what the prefix, kid, a0 and signature leave.
    rest = len(raw) - _PAYLOAD_HEAD_AT - _SIGNATURE_PART
    if rest < 1 or not raw.startswith(_ENVELOPE_PREFIX) or raw[_PAYLOAD_HEAD_AT - 1] != 0xA0:
        return None
    width = 1 if rest <= 24 else 2 if rest <= 0x101 else 3
    head = cbor.bstr_head(rest - width)
    start = _PAYLOAD_HEAD_AT + width
    end = len(raw) - _SIGNATURE_PART
    if len(head) != width or not raw.startswith(head, _PAYLOAD_HEAD_AT) or not raw.startswith(_SIGNATURE_HEAD, end):
        return None
    return raw[_PROTECTED_START:_PROTECTED_START + _PROTECTED_SIZE], raw[start:end], raw[end + 2:]


def _diagnose_envelope(raw: bytes) -> NoReturn:
    """Explain why ``raw`` is not an entry envelope; always raises DecodeError."""
    if not raw or raw[0] != _TAG18:
        raise DecodeError("entry: not a tagged COSE_Sign1 (tag 18)")
    s1 = UnverifiedSign1.decode(raw, _ENVELOPE_LIMITS)
    if s1.headers.keys() != _HEADER_LABELS:
        raise DecodeError("entry: protected header must hold exactly alg, kid and content type")
    if s1.unprotected:
        raise DecodeError("entry: unprotected header must be empty")
    if s1.headers[HDR_CONTENT_TYPE] != ENTRY_CONTENT_TYPE:
        raise DecodeError(f"entry: content type must be {ENTRY_CONTENT_TYPE!r}")
    if len(s1.headers[HDR_KID]) != KEY_ID_SIZE:
        raise DecodeError(f"entry: kid must be {KEY_ID_SIZE} bytes")
    if s1.payload is None:
        raise DecodeError("entry: payload must be attached")
    raise DecodeError("entry: envelope is not in the exact encoding of the entry profile")


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry whose signer the rules allowed and whose signature verified.

    Only :meth:`ledger.registry.RegistryState.apply_batch` makes these. The
    fields of the decoded entry are read through properties, so that making
    the verified twin copies nothing.

    Attributes:
        entry: the decoded entry it was made from.
        signer_kid: the key id of the key that signed it.
        index: the entry's position in its log.
    """

    entry: UnverifiedEntry = field(repr=False)
    signer_kid: bytes
    index: int

    @property
    def raw(self) -> bytes:
        """The entry bytes exactly as received (the Merkle leaf data)."""
        return self.entry.raw

    @property
    def sign1(self) -> Sign1:
        """The verified COSE_Sign1 envelope."""
        s = self.entry.sign1
        return Sign1(s.protected, s.unprotected, s.payload, s.signature, s.headers, s.raw)

    @property
    def log(self) -> str:
        """The member id of the log holding the entry."""
        return self.entry.log

    @property
    def type(self) -> str:
        """The entry type name."""
        return self.entry.type

    @property
    def time(self) -> int:
        """The author time (spec 6.5)."""
        return self.entry.time

    @property
    def root(self) -> int:
        """The governance root version the signer acted under."""
        return self.entry.root

    @property
    def body(self) -> Body:
        """The type-specific body."""
        return self.entry.body

    def __repr__(self) -> str:
        return (f"Entry(log={self.log!r}, index={self.index}, type={self.type!r}, time={self.time}, "
                f"root={self.root}, signer_kid={self.signer_kid.hex()!r}, body={self.body!r})")
