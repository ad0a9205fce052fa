"""Credentials as CWTs (RFC 8392) in COSE_Sign1 with EdDSA: claims and strict decoding.

Specified in specs/credentials.md sections 1 and 3. A credential is a
COSE_Sign1 (tag 18, optionally inside the CWT tag 61) whose protected header
holds ``alg`` EdDSA and ``kid``, the ledger key id of the issuer key, and
whose payload is a CWT claims set with ``iss``, ``iat``, ``cti`` and the
attestation claim ``-65537`` (a profile of :mod:`credentials.profiles`), and
optionally ``sub``, ``nbf`` and ``exp``.

:meth:`UnverifiedCredential.decode` checks form only; whether the signature
verifies and the issuer is trusted is :mod:`credentials.verify`'s job.
Payloads are decoded as received and never re-encoded; map keys may come in
any order (other COSE libraries do not sort them) but never twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from credentials.profiles import Profile, attestation_from_map, attestation_to_map
from ledger import cbor, cose
from ledger.errors import DecodeError

__all__ = [
    "CLAIM_ATTESTATION",
    "CLAIM_CTI",
    "CLAIM_EXP",
    "CLAIM_IAT",
    "CLAIM_ISS",
    "CLAIM_NBF",
    "CLAIM_SUB",
    "CWT_TAG",
    "DEFAULT_CREDENTIAL_LIMITS",
    "Claims",
    "CredentialLimits",
    "UnverifiedCredential",
    "credential_digest",
]

CLAIM_ISS = 1
CLAIM_SUB = 2
CLAIM_AUD = 3
CLAIM_EXP = 4
CLAIM_NBF = 5
CLAIM_IAT = 6
CLAIM_CTI = 7
#: The attestation claim: a private-use CWT claim key (RFC 8392 section 9.1: below -65536).
CLAIM_ATTESTATION = -65537
#: The optional CWT tag (RFC 8392 section 6).
CWT_TAG = 61
#: Content types a credential may declare in its protected header (absent is fine too).
CREDENTIAL_CONTENT_TYPES = frozenset({"application/cwt", 61})

_MAX_TIME = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class CredentialLimits:
    """Bounds on credentials and document signatures read from untrusted input (spec 3.3).

    Attributes:
        max_size: largest encoded credential or signature accepted, in bytes.
        max_payload_depth: deepest nesting in the claims set.
        max_payload_items: most data items in the claims set.
    """

    max_size: int = 1 << 16
    max_payload_depth: int = 10
    max_payload_items: int = 1 << 14

    def payload_limits(self) -> cbor.CborLimits:
        """CBOR limits for a claims set; key order is free (foreign payloads), duplicates are not."""
        return cbor.CborLimits(max_size=self.max_size, max_depth=self.max_payload_depth,
                               max_items=self.max_payload_items, deterministic=False)


DEFAULT_CREDENTIAL_LIMITS = CredentialLimits()
_DEFAULT_PAYLOAD_LIMITS = DEFAULT_CREDENTIAL_LIMITS.payload_limits()


def credential_digest(data: bytes) -> bytes:
    """SHA-256 of a credential's (or document signature's) bytes: what ``credential.anchor`` records."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Claims:
    """A credential's claims set (spec 3.1).

    Attributes:
        iss: the issuer id on the ledger, such as ``"VN/customs-coo"``.
        iat: the claimed signing time (Unix seconds).
        cti: the credential id, 1 to 64 bytes, used by ``credential.status``.
        attestation: the profile object stated.
        sub: the subject, if any.
        nbf: not valid before, if any.
        exp: not valid from this time on, if any.

    Raises:
        DecodeError: a field of the wrong type or out of range, or
            ``nbf``/``exp`` inconsistent with ``iat``.
    """

    iss: str
    iat: int
    cti: bytes
    attestation: Profile
    sub: str | None = None
    nbf: int | None = None
    exp: int | None = None

    def __post_init__(self) -> None:
        if type(self.iss) is not str or not 0 < len(self.iss) <= 256:
            raise DecodeError("claims: iss (1) must be text of 1 to 256 characters")
        if self.sub is not None and (type(self.sub) is not str or not 0 < len(self.sub) <= 256):
            raise DecodeError("claims: sub (2) must be text of 1 to 256 characters")
        if type(self.iat) is not int or not 0 <= self.iat <= _MAX_TIME:
            raise DecodeError("claims: iat (6) must be an integer NumericDate")
        if self.nbf is not None and (type(self.nbf) is not int or not 0 <= self.nbf <= _MAX_TIME):
            raise DecodeError("claims: nbf (5) must be an integer NumericDate")
        if self.exp is not None and (type(self.exp) is not int or not 0 <= self.exp <= _MAX_TIME):
            raise DecodeError("claims: exp (4) must be an integer NumericDate")
        if type(self.cti) is not bytes or not 1 <= len(self.cti) <= 64:
            raise DecodeError("claims: cti (7) must be 1 to 64 bytes")
        if self.exp is not None and self.exp <= self.iat:
            raise DecodeError("claims: exp (4) must be later than iat (6)")
        if self.exp is not None and self.nbf is not None and self.exp <= self.nbf:
            raise DecodeError("claims: exp (4) must be later than nbf (5)")

    @property
    def document_type(self) -> str:
        """The profile name of the attestation."""
        return self.attestation.TYPE

    def to_map(self) -> dict[int, Any]:
        """The CWT claims set map."""
        m: dict[int, Any] = {CLAIM_ISS: self.iss, CLAIM_IAT: self.iat, CLAIM_CTI: self.cti,
                             CLAIM_ATTESTATION: attestation_to_map(self.attestation)}
        if self.sub is not None:
            m[CLAIM_SUB] = self.sub
        if self.nbf is not None:
            m[CLAIM_NBF] = self.nbf
        if self.exp is not None:
            m[CLAIM_EXP] = self.exp
        return m

    @classmethod
    def from_map(cls, m: Any) -> Claims:
        """Read a decoded claims set; claims this profile does not define are ignored (RFC 8392 section 3).

        Raises:
            DecodeError: a required claim missing, or any claim malformed.
        """
        if type(m) is not dict:
            raise DecodeError(f"claims: the payload must be a map, got {type(m).__name__}")
        for key, name in _REQUIRED_CLAIMS:
            if key not in m:
                raise DecodeError(f"claims: {name} is required")
        # Types and ranges are checked once, by __post_init__.
        return cls(m[CLAIM_ISS], m[CLAIM_IAT], m[CLAIM_CTI], attestation_from_map(m[CLAIM_ATTESTATION]),
                   m.get(CLAIM_SUB), m.get(CLAIM_NBF), m.get(CLAIM_EXP))


_REQUIRED_CLAIMS = ((CLAIM_ISS, "iss (1)"), (CLAIM_IAT, "iat (6)"), (CLAIM_CTI, "cti (7)"),
                    (CLAIM_ATTESTATION, f"the attestation claim ({CLAIM_ATTESTATION})"))


def strip_cwt_tag(data: bytes) -> bytes:
    """Remove an outer CWT tag 61 (``d8 3d``) if present (RFC 8392 section 6)."""
    return data[2:] if data[:2] == b"\xd8\x3d" else data


def _looks_like(data: bytes) -> str | None:
    """What ``data`` evidently is when it is evidently not CBOR (a COSE_Sign1 starts 0xd2, 0xd8 or 0x84)."""
    if not data:
        return "an empty file"
    if data[0] in (0xD2, 0xD8, 0x84):
        return None
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"-----BEGIN"):
        return "PEM text (a certificate or key, not a credential)"
    if head[:1] in (b"{", b"["):
        return "JSON (a claims file? issue it with 'mekong credential issue')"
    if head[:1] == b"<":
        return "XML or HTML"
    if head[:5] == b"%PDF-":
        return "a PDF document (verify a document's signature with 'mekong verify-signature')"
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text"
    return None


def decode_sign1(data: Any, limits: CredentialLimits, what: str) -> cose.UnverifiedSign1:
    """Decode the COSE_Sign1 of a credential or signature, naming ``what`` in errors.

    Raises:
        DecodeError: not bytes, too large, or not a well-formed COSE_Sign1 with EdDSA and a kid.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_size:
        raise DecodeError(f"{what}: {len(data)} bytes exceeds the limit of {limits.max_size}")
    looks = _looks_like(data)
    if looks is not None:  # say what the file is, not what a CBOR parser trips over in it
        raise DecodeError(f"{what}: not a COSE_Sign1 {what}: it looks like {looks}")
    try:
        sign1 = cose.UnverifiedSign1.decode(strip_cwt_tag(data))
    except DecodeError as e:
        raise DecodeError(f"{what}: {e}") from e
    if sign1.kid is None:
        raise DecodeError(f"{what}: no kid header naming the signing key")
    return sign1


@dataclass(frozen=True, slots=True)
class UnverifiedCredential:
    """A credential that decoded well; nothing about its signature or issuer is known yet.

    Attributes:
        raw: the bytes as received.
        sign1: the decoded COSE_Sign1.
        claims: the decoded claims.
        digest: :func:`credential_digest` of ``raw``.
    """

    raw: bytes = field(repr=False)
    sign1: cose.UnverifiedSign1 = field(repr=False)
    claims: Claims
    digest: bytes

    @property
    def kid(self) -> bytes:
        """The ledger key id the credential names."""
        kid = self.sign1.kid
        assert kid is not None
        return kid

    @classmethod
    def decode(cls, data: bytes, limits: CredentialLimits = DEFAULT_CREDENTIAL_LIMITS) -> UnverifiedCredential:
        """Decode a credential (spec 3.2, verification step 1).

        Raises:
            DecodeError: anything malformed, with what was wrong: CBOR, COSE
                structure, algorithm, missing kid, detached payload, content
                type, claims or attestation.
        """
        sign1 = decode_sign1(data, limits, "credential")
        raw = data if type(data) is bytes else bytes(data)
        if sign1.payload is None:
            raise DecodeError("credential: the payload is detached; a credential carries its claims")
        ctype = sign1.content_type
        if ctype is not None and ctype not in CREDENTIAL_CONTENT_TYPES:
            raise DecodeError(f"credential: content type {ctype!r:.80} is not a CWT")
        payload_limits = _DEFAULT_PAYLOAD_LIMITS if limits is DEFAULT_CREDENTIAL_LIMITS else limits.payload_limits()
        try:
            claims = Claims.from_map(cbor.decode(sign1.payload, payload_limits))
        except DecodeError as e:
            raise DecodeError(f"credential payload: {e}") from e
        return cls(raw, sign1, claims, hashlib.sha256(raw).digest())
