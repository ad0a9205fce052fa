"""Ed25519 keys as the ledger names them: key ids and pre-rotation commitments.

Specified in specs/02-cose.md section 2.4. Private keys live only in memory
(``nacl.signing.SigningKey``) or in encrypted key files handled elsewhere;
nothing here formats a private key into a string.
"""

from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing

from ledger.errors import DecodeError, VerificationError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 16
DIGEST_SIZE = 32

_KID_DOMAIN = b"mekong/key-id/v1\x00"
_NEXT_DOMAIN = b"mekong/next-key/v1\x00"


def key_id(public_key: bytes) -> bytes:
    """Return the 16-byte ledger key id of an Ed25519 public key (spec 2.4.1).

    Raises:
        DecodeError: ``public_key`` is not 32 bytes.
    """
    check_public_key(public_key)
    return hashlib.sha256(_KID_DOMAIN + public_key).digest()[:KEY_ID_SIZE]


def next_key_digest(public_key: bytes) -> bytes:
    """Return the pre-rotation commitment to ``public_key`` (spec 2.4.2).

    Raises:
        DecodeError: ``public_key`` is not 32 bytes.
    """
    check_public_key(public_key)
    return hashlib.sha256(_NEXT_DOMAIN + public_key).digest()


def check_public_key(public_key: object) -> bytes:
    """Check that ``public_key`` is a 32-byte string and return it.

    Raises:
        DecodeError: wrong type or length.
    """
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        size = len(public_key) if isinstance(public_key, (bytes, bytearray)) else type(public_key).__name__
        raise DecodeError(f"an Ed25519 public key must be 32 bytes, got {size}")
    return public_key


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify a raw Ed25519 signature (RFC 8032) and raise on failure.

    Raises:
        VerificationError: the signature does not verify, or the key or
            signature has the wrong size.
    """
    if len(signature) != SIGNATURE_SIZE:
        raise VerificationError(f"an Ed25519 signature must be 64 bytes, got {len(signature)}")
    try:
        nacl.signing.VerifyKey(check_public_key(public_key)).verify(message, signature)
    except DecodeError as e:
        raise VerificationError(str(e)) from e
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as e:
        raise VerificationError("Ed25519 signature does not verify") from e


def public_key_of(signing_key: nacl.signing.SigningKey) -> bytes:
    """The 32-byte public key of an in-memory signing key."""
    return bytes(signing_key.verify_key)
