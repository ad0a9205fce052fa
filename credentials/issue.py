"""Issuing credentials: sign a profile as a CWT in a COSE_Sign1 (specs/credentials.md section 3.1).

The issuer's key must already be on the ledger (``issuer.key.add``) for a
verifier to trust what it signs; this module only builds and signs bytes.
Anchoring the result (``credential.anchor``, whose body :func:`anchor_body`
builds) and publishing its status are ledger entries, made by the issuer's node.
"""

from __future__ import annotations

import os

import nacl.signing

from credentials.cwt import Claims, UnverifiedCredential, credential_digest
from credentials.profiles import Profile
from ledger import cbor, cose
from ledger.bodies import CredentialAnchor
from ledger.keys import key_id, public_key_of

__all__ = ["anchor_body", "credential_digest", "issue_credential", "new_credential_id"]


def new_credential_id() -> bytes:
    """A fresh random 16-byte credential id (``cti``)."""
    return os.urandom(16)


def issue_credential(profile: Profile, issuer_id: str, signing_key: nacl.signing.SigningKey, iat: int,
                     exp: int | None = None, nbf: int | None = None, sub: str | None = None,
                     cti: bytes | None = None) -> bytes:
    """Sign ``profile`` as a credential of issuer ``issuer_id``.

    Args:
        profile: the attestation, one of the :data:`credentials.profiles.PROFILES` classes.
        issuer_id: the issuer's ledger id (``iss``).
        signing_key: the issuer key; its ledger key id goes in the protected ``kid``.
        iat: the signing time claimed, Unix seconds.
        exp: expiry (exclusive), if any.
        nbf: start of validity, if any.
        sub: subject identifier, if any.
        cti: credential id; a random 16 bytes when None.

    Returns:
        The tagged COSE_Sign1 bytes (deterministic CBOR throughout).

    Raises:
        DecodeError: a claim out of range (for example ``exp`` not after ``iat``).
    """
    claims = Claims(issuer_id, iat, new_credential_id() if cti is None else cti, profile, sub, nbf, exp)
    kid = key_id(public_key_of(signing_key))
    return cose.sign1(cbor.encode(claims.to_map()), signing_key, kid=kid)


def anchor_body(data: bytes, issuer: str | None = None) -> CredentialAnchor:
    """The ``credential.anchor`` body for a credential or a document signature (spec 3.5, 4.4).

    For a credential, the issuer and credential id come from its ``iss`` and
    ``cti``; for anything else (a document signature) ``issuer`` must be given
    and no credential id is recorded. Nothing is verified here.

    Raises:
        DecodeError: ``data`` is not a credential and ``issuer`` is None, or
            ``issuer`` is not an issuer id.
    """
    digest = credential_digest(data)
    if issuer is None:
        claims = UnverifiedCredential.decode(data).claims
        return CredentialAnchor(claims.iss, digest, "sha-256", claims.cti)
    return CredentialAnchor(issuer, digest, "sha-256", None)
