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
from typing import Any, NoReturn

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
        return _sig_structure(self.sign1.protected, self.sign1.payload or b"")

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
        p = _decode_payload(payload)
        if not isinstance(p, dict) or p.keys() != _PAYLOAD_KEYS:
            raise DecodeError("entry: payload must be a map of exactly v, log, type, time, root, body")
        if p["v"] != ENTRY_VERSION or type(p["v"]) is not int:
            raise DecodeError(f"entry: unsupported payload version {p['v']!r:.40}")
        type_name = p["type"]
        if not isinstance(type_name, str) or type_name not in ENTRY_TYPES:
            raise DecodeError(f"entry: unknown entry type {type_name!r:.80}")
        body = ENTRY_TYPES[type_name].from_map(p["body"])
        return cls(raw, s1, p["log"], type_name, p["time"], p["root"], body)


# --------------------------------------------------------------------------- fast, strict decoding
#
# Entries are decoded at ledger speed (spec 6.1.3 explains the budget), so the
# common, well-formed case takes a short path: the envelope is matched against
# its one exact layout, and the payload goes through a decoder for the subset
# of deterministic CBOR that payloads use. Whatever the short path does not
# take is handed to ledger.cbor / ledger.cose, which decide and explain. The
# short path never accepts what those refuse, nor reads a value differently
# (tests/ledger/test_entries.py cross-checks both on random and mutated bytes).

_PROTECTED_PREFIX = cbor.encode({HDR_ALG: ALG_EDDSA, HDR_CONTENT_TYPE: ENTRY_CONTENT_TYPE,
                                 HDR_KID: bytes(KEY_ID_SIZE)})[:-KEY_ID_SIZE]
_PROTECTED_SIZE = len(_PROTECTED_PREFIX) + KEY_ID_SIZE
# tag 18, array of 4, bstr head of the protected header, then its fixed prefix
_ENVELOPE_PREFIX = b"\xd2\x84" + cbor.encode(bytes(_PROTECTED_SIZE))[:-_PROTECTED_SIZE] + _PROTECTED_PREFIX
_PROTECTED_START = len(_ENVELOPE_PREFIX) - len(_PROTECTED_PREFIX)
_PAYLOAD_HEAD_AT = len(_ENVELOPE_PREFIX) + KEY_ID_SIZE + 1  # after the kid and the empty map a0
_SIGNATURE_HEAD = b"\x58\x40"
_SIG1_CONTEXT = b"\x84\x6aSignature1"
_FAST_PAYLOAD_MAX = 4096  # larger payloads take ledger.cbor.decode
_FAST_MAX_DEPTH = PAYLOAD_LIMITS.max_depth - 1
# The encoded map keys of every payload and body, and their text (saves decoding them each time).
_KEY_NAMES = {cbor.encode(k): k for k in
              {*_PAYLOAD_KEYS, *PolicyRule._KEYS, *(k for c in ENTRY_TYPES.values() for k in c._KEYS)}}


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    # ["Signature1", protected, h'', payload] in deterministic CBOR
    return b"".join((_SIG1_CONTEXT, _bstr_head(len(protected)), protected, b"\x40",
                     _bstr_head(len(payload)), payload))


def _split_envelope(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(protected, payload, signature) when ``raw`` has the profile's exact layout, else None."""
    if not raw.startswith(_ENVELOPE_PREFIX) or len(raw) < _PAYLOAD_HEAD_AT + 1 + 66:
        return None
    if raw[_PAYLOAD_HEAD_AT - 1] != 0xA0:
        return None
    p = _PAYLOAD_HEAD_AT
    ib = raw[p]
    if 0x40 <= ib < 0x58:
        n, p = ib - 0x40, p + 1
    elif ib == 0x58:
        n, p = raw[p + 1], p + 2
        if n < 24:
            return None
    elif ib == 0x59:
        n, p = (raw[p + 1] << 8) | raw[p + 2], p + 3
        if n < 0x100:
            return None
    else:
        return None
    end = p + n
    if len(raw) != end + 66 or raw[end:end + 2] != _SIGNATURE_HEAD:
        return None
    return raw[_PROTECTED_START:_PROTECTED_START + _PROTECTED_SIZE], raw[p:end], raw[end + 2:]


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


class _Defer(Exception):
    """The short path does not take this input; ledger.cbor.decode decides."""


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    # Reads past the end give short slices or IndexError; positions only grow,
    # so such a read always fails the caller's final "consumed exactly" check.
    ib = data[pos]
    if ib < 0x18:  # small unsigned integer
        return ib, pos + 1
    if 0x40 <= ib < 0x58:  # short byte string
        end = pos + ib - 0x3F
        return data[pos + 1:end], end
    if 0x60 <= ib < 0x78:  # short text string
        end = pos + ib - 0x5F
        return data[pos + 1:end].decode("utf-8"), end
    if ib == 0x58 or ib == 0x78:  # string with a one-byte length
        n = data[pos + 1]
        if n < 24:
            raise _Defer
        end = pos + 2 + n
        return (data[pos + 2:end] if ib == 0x58 else data[pos + 2:end].decode("utf-8")), end
    if 0x18 <= ib <= 0x1B:  # unsigned integer with a 1, 2, 4 or 8-byte argument
        width = 1 << (ib - 0x18)
        end = pos + 1 + width
        v = int.from_bytes(data[pos + 1:end], "big")
        if v < (24 if width == 1 else 1 << (4 * width)) or end > len(data):
            raise _Defer
        return v, end
    if 0x80 <= ib < 0x98 and depth < _FAST_MAX_DEPTH:  # short array
        out = []
        pos += 1
        for _ in range(ib - 0x80):
            v, pos = _item(data, pos, depth + 1)
            out.append(v)
        return out, pos
    if 0xA0 <= ib < 0xB8 and depth < _FAST_MAX_DEPTH:  # short map with short text keys
        m: dict[str, Any] = {}
        prev = b""
        pos += 1
        for _ in range(ib - 0xA0):
            kend = pos + data[pos] - 0x5F
            kb = data[pos:kend]
            if not 0x60 <= kb[0] <= 0x77 or kb <= prev:
                raise _Defer
            prev = kb
            key = _KEY_NAMES.get(kb)
            m[kb[1:].decode("utf-8") if key is None else key], pos = _item(data, kend, depth + 1)
        return m, pos
    if ib == 0xF6:
        return None, pos + 1
    if ib == 0xF4 or ib == 0xF5:
        return ib == 0xF5, pos + 1
    raise _Defer  # anything else: ledger.cbor.decode decides


def _fast_value(data: bytes) -> Any:
    """The short path on its own: the value, or _Defer if it does not take ``data``."""
    try:
        value, end = _item(data, 0, 0)
    except (IndexError, UnicodeDecodeError) as e:
        raise _Defer from e
    if end != len(data):
        raise _Defer
    return value


# Every well-formed payload starts with these bytes: a map of six pairs, "v" => 1, then "log".
_PAYLOAD_START = b"\xa6" + cbor.encode("v") + cbor.encode(ENTRY_VERSION) + cbor.encode("log")
_PAYLOAD_NEXT = tuple(cbor.encode(k) for k in ("body", "root", "time", "type"))  # then these, in this order


def _decode_payload(payload: bytes) -> Any:
    if len(payload) <= _FAST_PAYLOAD_MAX and payload.startswith(_PAYLOAD_START):
        try:
            log, pos = _item(payload, len(_PAYLOAD_START), 1)
            values = []
            for key in _PAYLOAD_NEXT:
                if not payload.startswith(key, pos):
                    raise _Defer
                value, pos = _item(payload, pos + len(key), 1)
                values.append(value)
            if pos == len(payload):
                return {"v": 1, "log": log, "body": values[0], "root": values[1], "time": values[2],
                        "type": values[3]}
        except (_Defer, IndexError, UnicodeDecodeError):
            pass
    return cbor.decode(payload, PAYLOAD_LIMITS)


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
