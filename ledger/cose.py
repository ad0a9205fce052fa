"""COSE_Sign1 with EdDSA (Ed25519): signing, strict decoding, verification.

Specified in specs/02-cose.md, following RFC 9052 section 4.2 (COSE_Sign1)
and section 4.4 (Sig_structure), and RFC 9053 section 2.2 (EdDSA).

Decoding returns an :class:`UnverifiedSign1`; only its :meth:`verify` returns
a :class:`Sign1`. Verification hashes the protected header and payload bytes
exactly as they arrived; nothing is re-encoded to verify. What key a message
must be verified with is decided by the caller (the ledger rules or the
credential verifier), never by this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nacl.signing

from ledger import cbor
from ledger.errors import DecodeError
from ledger.keys import verify_ed25519

COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
HDR_ALG = 1
HDR_CRIT = 2
HDR_CONTENT_TYPE = 3
HDR_KID = 4

#: Limits for decoding a COSE_Sign1 envelope (spec 2.3.1). The payload inside
#: is decoded separately by whoever knows its type. Key order is free: the
#: unprotected header is the only map an envelope holds (the other elements
#: are byte strings or nil), and it is neither signed nor ever re-encoded, so
#: its labels may come in the order another COSE library wrote them (spec
#: 2.3.3). Every other rule of spec 1.3, duplicate labels included, still holds.
SIGN1_LIMITS = cbor.CborLimits(max_size=1 << 20, max_depth=8, max_items=4096,
                               allowed_tags=frozenset({COSE_SIGN1_TAG}), deterministic=False)
#: Header maps made by other COSE libraries are decoded without key-order checks.
_HEADER_LIMITS = cbor.CborLimits(max_size=4096, max_depth=4, max_items=256, deterministic=False)


_SIG1_CONTEXT = b"\x84\x6aSignature1"  # array of 4, then the text "Signature1"


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The Sig_structure ``["Signature1", protected, external_aad, payload]`` (RFC 9052 section 4.4, spec 2.1).

    Equal to ``cbor.encode`` of that array, built by joining byte strings because it is on
    every verification's hot path.
    """
    return b"".join((_SIG1_CONTEXT, cbor.bstr_head(len(protected)), protected, cbor.bstr_head(len(external_aad)),
                     external_aad, cbor.bstr_head(len(payload)), payload))


@dataclass(frozen=True, slots=True)
class _Sign1Fields:
    protected: bytes
    unprotected: dict[Any, Any]
    payload: bytes | None
    signature: bytes
    headers: dict[Any, Any] = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def alg(self) -> int | None:
        """The ``alg`` protected header (spec 2.2)."""
        return self.headers.get(HDR_ALG)

    @property
    def kid(self) -> bytes | None:
        """The ``kid`` header: protected if present there, else unprotected."""
        kid = self.headers.get(HDR_KID, self.unprotected.get(HDR_KID))
        return kid if isinstance(kid, bytes) else None

    @property
    def content_type(self) -> str | int | None:
        """The ``content type`` protected header, if any."""
        return self.headers.get(HDR_CONTENT_TYPE)

    def to_be_signed(self, external_aad: bytes = b"", detached_payload: bytes | None = None) -> bytes:
        """The Sig_structure bytes for this message (RFC 9052 section 4.4, spec 2.1).

        Raises:
            DecodeError: the payload is detached and ``detached_payload`` is
                None, or the payload is attached and ``detached_payload`` is
                given as well (spec 2.5).
        """
        if self.payload is not None and detached_payload is not None:
            # A caller who passes a detached payload expects the signature to
            # cover it; an attached payload must not silently take its place.
            raise DecodeError("COSE_Sign1: payload is attached, but a detached payload was given")
        payload = self.payload if self.payload is not None else detached_payload
        if payload is None:
            raise DecodeError("COSE_Sign1: payload is detached and none was given")
        return sig_structure(self.protected, payload, external_aad)


@dataclass(frozen=True, slots=True)
class UnverifiedSign1(_Sign1Fields):
    """A COSE_Sign1 that decoded well but whose signature is not yet checked."""

    @classmethod
    def decode(cls, data: bytes, limits: cbor.CborLimits = SIGN1_LIMITS) -> UnverifiedSign1:
        """Decode a tagged or untagged COSE_Sign1 (spec 2.3).

        Args:
            data: untrusted bytes.
            limits: the envelope limits. Their key-order flag concerns the
                unprotected header alone, the only map in an envelope:
                :data:`SIGN1_LIMITS` leaves its order free (spec 2.3.3), and a
                format that wants it sorted too may pass deterministic limits.

        Raises:
            DecodeError: malformed CBOR, wrong structure, a ``crit`` header,
                an ``alg`` other than EdDSA, a signature that is not 64
                bytes, or a ``kid`` or ``content type`` of the wrong type.
        """
        # Step 2.3.1: one CBOR data item within the envelope limits (spec 1.3),
        # optionally tag 18, holding a four-element array. With SIGN1_LIMITS,
        # the unprotected map may list its labels in any order, never twice.
        value = cbor.decode(data, limits)
        if isinstance(value, cbor.Tag):
            if value.tag != COSE_SIGN1_TAG:
                raise DecodeError(f"COSE_Sign1: unexpected tag {value.tag}")
            value = value.value
        if not isinstance(value, list) or len(value) != 4:
            raise DecodeError("COSE_Sign1: expected an array of 4 items")
        protected, unprotected, payload, signature = value
        # Step 2.3.2: element types.
        if not isinstance(protected, bytes):
            raise DecodeError("COSE_Sign1: protected header must be a byte string")
        if not isinstance(unprotected, dict):
            raise DecodeError("COSE_Sign1: unprotected header must be a map")
        if payload is not None and not isinstance(payload, bytes):
            raise DecodeError("COSE_Sign1: payload must be a byte string or nil")
        if not isinstance(signature, bytes):
            raise DecodeError("COSE_Sign1: signature must be a byte string")
        # Step 2.3.3: protected header map; an empty bstr stands for an empty map.
        headers = cbor.decode(protected, _HEADER_LIMITS) if protected else {}
        if not isinstance(headers, dict):
            raise DecodeError("COSE_Sign1: protected header is not a map")
        dup = unprotected and headers.keys() & unprotected.keys()
        if dup:
            raise DecodeError(f"COSE_Sign1: header labels {sorted(map(str, dup))} in both buckets")
        # This profile understands no extension parameters, so any crit list
        # names one it cannot process (RFC 9052 section 3.1).
        if HDR_CRIT in headers or HDR_CRIT in unprotected:
            raise DecodeError("COSE_Sign1: critical header parameters (crit) are not supported")
        # Step 2.3.4: algorithm, signature size, kid and content type types.
        if headers.get(HDR_ALG) != ALG_EDDSA:
            raise DecodeError(f"COSE_Sign1: alg must be EdDSA (-8), got {headers.get(HDR_ALG)!r}")
        if len(signature) != 64:
            raise DecodeError(f"COSE_Sign1: EdDSA signature must be 64 bytes, got {len(signature)}")
        kid = headers.get(HDR_KID, unprotected.get(HDR_KID))
        if kid is not None and not isinstance(kid, bytes):
            raise DecodeError("COSE_Sign1: kid must be a byte string")
        ctype = headers.get(HDR_CONTENT_TYPE, unprotected.get(HDR_CONTENT_TYPE))
        if ctype is not None and not (isinstance(ctype, str) or (
                isinstance(ctype, int) and not isinstance(ctype, bool) and ctype >= 0)):
            raise DecodeError("COSE_Sign1: content type must be an unsigned integer or text")
        return cls(protected, unprotected, payload, signature, headers, bytes(data))

    def verify(self, public_key: bytes, external_aad: bytes = b"",
               detached_payload: bytes | None = None) -> Sign1:
        """Check the EdDSA signature with ``public_key`` (spec 2.5).

        Args:
            public_key: the 32-byte Ed25519 key the caller's rules require.
            external_aad: externally supplied data bound into the signature.
            detached_payload: the payload, when the message carries nil.

        Returns:
            The verified message.

        Raises:
            VerificationError: the signature does not verify under the key.
            DecodeError: the payload is detached and was not supplied, or is
                attached and a detached payload was supplied as well.
        """
        verify_ed25519(public_key, self.to_be_signed(external_aad, detached_payload), self.signature)
        payload = self.payload if self.payload is not None else detached_payload
        return Sign1(self.protected, self.unprotected, payload, self.signature, self.headers, self.raw)


@dataclass(frozen=True, slots=True)
class Sign1(_Sign1Fields):
    """A COSE_Sign1 whose signature has been verified; ``payload`` is never None."""


def sign1(payload: bytes, signing_key: nacl.signing.SigningKey, *, kid: bytes | None = None,
          content_type: str | int | None = None, detached: bool = False,
          protected: dict[int, Any] | None = None, unprotected: dict[int, Any] | None = None,
          external_aad: bytes = b"", tagged: bool = True) -> bytes:
    """Sign ``payload`` as a COSE_Sign1 with EdDSA (spec 2.2).

    By default ``alg``, ``kid`` and ``content type`` all go in the protected
    header, so the key id is covered by the signature. ``protected`` and
    ``unprotected`` add or override header parameters (used to reproduce
    published examples).

    Returns:
        The encoded message, with tag 18 unless ``tagged`` is false.
    """
    prot: dict[int, Any] = {HDR_ALG: ALG_EDDSA}
    if kid is not None:
        prot[HDR_KID] = kid
    if content_type is not None:
        prot[HDR_CONTENT_TYPE] = content_type
    prot.update(protected or {})
    prot_bytes = cbor.encode(prot)
    tbs = sig_structure(prot_bytes, payload, external_aad)
    signature = signing_key.sign(tbs).signature
    msg = [prot_bytes, dict(unprotected or {}), None if detached else payload, signature]
    return cbor.encode(cbor.Tag(COSE_SIGN1_TAG, msg) if tagged else msg)
