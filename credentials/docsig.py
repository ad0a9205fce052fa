"""Document e-signatures: a detached COSE_Sign1 over a hash envelope of a file (specs/credentials.md section 4).

The signature travels beside the document (an XML e-invoice, a PDF) and never
contains it. Its payload is a *hash envelope*: the hash algorithm and digest
of the document's bytes, its media type, file name, document type and the
claimed signing time. The signature covers the envelope; verifying checks
the signature first and then the document's digest, so a tampered document
(HASH_FAILURE) is told apart from a forged signature (SIG_CRYPTO_FAILURE).

The signer is either an issuer key on the ledger, or a key certified by an
``authorised-signatory`` credential carried in the unprotected header (label
``-65537``); the credential is verified in turn by :mod:`credentials.verify`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nacl.signing

from credentials.cwt import DEFAULT_CREDENTIAL_LIMITS, CredentialLimits, decode_sign1
from credentials.fields import HASH_SIZES, TEXT, UINT, Codec, Field, Record, one_of
from credentials.profiles import DOCUMENT_TYPE_CODEC
from ledger import cbor, cose
from ledger.errors import DecodeError
from ledger.keys import key_id, public_key_of

__all__ = [
    "DOCSIG_CONTENT_TYPE", "HDR_SIGNER_CREDENTIAL", "HashEnvelope", "SignedDocument",
    "UnverifiedDocumentSignature", "hash_document", "sign_document",
]

#: Protected content type of a document signature; its payload is a hash envelope.
DOCSIG_CONTENT_TYPE = "application/mekong-docsig+cbor"
#: Unprotected header label carrying the signer's ``authorised-signatory`` credential (private use).
HDR_SIGNER_CREDENTIAL = -65537

_HASHLIB_NAMES = {"sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def hash_document(document: bytes, hash_alg: str = "sha-256") -> bytes:
    """The digest of a document's bytes under ``hash_alg`` (sha-256, sha-384 or sha-512).

    Raises:
        DecodeError: an unknown hash algorithm.
    """
    name = _HASHLIB_NAMES.get(hash_alg)
    if name is None:
        raise DecodeError(f"unknown hash algorithm {hash_alg!r}")
    return hashlib.new(name, document).digest()


def _media_type_check(v: Any, where: str) -> Any:
    if type(v) is not str or not _MEDIA_TYPE_RE.fullmatch(v):
        raise DecodeError(f"{where}: expected a media type such as application/pdf, got {v!r:.60}")
    return v


def _file_name_check(v: Any, where: str) -> Any:
    TEXT.check(v, where)
    if "/" in v or "\\" in v or v in (".", ".."):
        raise DecodeError(f"{where}: a file name, not a path, is expected")
    return v


def _bytes_check(v: Any, where: str) -> Any:
    if type(v) is not bytes:
        raise DecodeError(f"{where}: expected bytes, got {type(v).__name__}")
    return v


@dataclass(frozen=True, slots=True)
class HashEnvelope(Record):
    """What a document signature signs (spec 4.1).

    Attributes:
        hash_alg: ``sha-256``, ``sha-384`` or ``sha-512``.
        digest: the digest of the document's bytes.
        media_type: the document's media type, such as ``application/xml``.
        file_name: the document's file name, without a path.
        document_type: the document type it is signed as, such as ``e-invoice``.
        signed_at: the claimed signing time, Unix seconds.
    """

    hash_alg: str
    digest: bytes
    media_type: str
    file_name: str
    document_type: str
    signed_at: int

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("hash_alg", one_of(*HASH_SIZES)), Field("digest", Codec("digest", _bytes_check)),
        Field("media_type", Codec("media type", _media_type_check)),
        Field("file_name", Codec("file name", _file_name_check)),
        Field("document_type", DOCUMENT_TYPE_CODEC), Field("signed_at", UINT),
    )

    def _validate(self) -> None:
        if len(self.digest) != HASH_SIZES[self.hash_alg]:
            raise DecodeError(f"HashEnvelope.digest: {self.hash_alg} digest must be "
                              f"{HASH_SIZES[self.hash_alg]} bytes, got {len(self.digest)}")

    def to_json(self) -> dict[str, Any]:
        """The JSON form used in reports (digest as hex)."""
        return {"hash_alg": self.hash_alg, "digest": self.digest.hex(), "media_type": self.media_type,
                "file_name": self.file_name, "document_type": self.document_type, "signed_at": self.signed_at}


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A document and its detached signature, as handed to :func:`credentials.verify.verify`."""

    signature: bytes = field(repr=False)
    document: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or not isinstance(self.document, bytes):
            raise TypeError("SignedDocument holds the signature and document as bytes")


def sign_document(document: bytes, signing_key: nacl.signing.SigningKey, *, media_type: str, file_name: str,
                  document_type: str, signed_at: int, signer_credential: bytes | None = None,
                  hash_alg: str = "sha-256") -> bytes:
    """Sign a document: a COSE_Sign1 over its hash envelope (spec 4.2).

    Args:
        document: the document's bytes, exactly as they will be verified.
        signing_key: an issuer key on the ledger, or the key certified by ``signer_credential``.
        media_type: the document's media type.
        file_name: its file name.
        document_type: the document type it is signed as.
        signed_at: the signing time claimed.
        signer_credential: the ``authorised-signatory`` credential certifying
            ``signing_key``, when it is not an issuer key.
        hash_alg: the hash algorithm.

    Returns:
        The tagged COSE_Sign1 bytes.

    Raises:
        DecodeError: an envelope field out of range.
    """
    envelope = HashEnvelope(hash_alg, hash_document(document, hash_alg), media_type, file_name,
                            document_type, signed_at)
    unprotected = {HDR_SIGNER_CREDENTIAL: signer_credential} if signer_credential is not None else None
    return cose.sign1(cbor.encode(envelope.to_map()), signing_key, kid=key_id(public_key_of(signing_key)),
                      content_type=DOCSIG_CONTENT_TYPE, unprotected=unprotected)


@dataclass(frozen=True, slots=True)
class UnverifiedDocumentSignature:
    """A document signature that decoded well; nothing about it is verified yet.

    Attributes:
        raw: the signature bytes as received.
        sign1: the decoded COSE_Sign1.
        envelope: the hash envelope it carries.
        signer_credential: the ``authorised-signatory`` credential bytes, if carried.
        digest: SHA-256 of ``raw``, what an anchor of the signature records.
    """

    raw: bytes = field(repr=False)
    sign1: cose.UnverifiedSign1 = field(repr=False)
    envelope: HashEnvelope
    signer_credential: bytes | None = field(repr=False)
    digest: bytes

    @property
    def kid(self) -> bytes:
        """The key id the signature names."""
        kid = self.sign1.kid
        assert kid is not None
        return kid

    @classmethod
    def decode(cls, data: bytes,
               limits: CredentialLimits = DEFAULT_CREDENTIAL_LIMITS) -> UnverifiedDocumentSignature:
        """Decode a document signature (spec 4.3, verification step 1).

        Raises:
            DecodeError: malformed COSE, wrong content type, no envelope, a
                malformed envelope, or a signer credential that is not bytes.
        """
        sign1 = decode_sign1(data, limits, "document signature")
        if sign1.content_type != DOCSIG_CONTENT_TYPE:
            raise DecodeError(f"document signature: content type must be {DOCSIG_CONTENT_TYPE}, "
                              f"got {sign1.content_type!r:.80}")
        if sign1.payload is None:
            raise DecodeError("document signature: the hash envelope payload is missing")
        try:
            envelope = HashEnvelope.from_map(cbor.decode(sign1.payload, limits.payload_limits()))
        except DecodeError as e:
            raise DecodeError(f"document signature envelope: {e}") from e
        signer = sign1.unprotected.get(HDR_SIGNER_CREDENTIAL)
        if signer is not None and type(signer) is not bytes:
            raise DecodeError(f"document signature: header {HDR_SIGNER_CREDENTIAL} must hold credential bytes")
        raw = bytes(data)
        return cls(raw, sign1, envelope, signer, hashlib.sha256(raw).digest())
