"""The one exception hierarchy of Mekong Trust Ledger.

Every error the core raises derives from :class:`MekongError`. Decoders of
untrusted input raise :class:`DecodeError`; signature, proof and rule checks
raise :class:`VerificationError`; evidence of two histories raises
:class:`ConflictError`; the database raises :class:`StorageError`.
Third-party exceptions are wrapped at the boundary with ``raise ... from e``.

Messages never contain private key material.
"""

from __future__ import annotations

from typing import Any


class MekongError(Exception):
    """Root of every error raised by the ledger, credentials and node code."""


class DecodeError(MekongError):
    """Bytes or text that are not a well-formed instance of the expected format."""


class VerificationError(MekongError):
    """A signature, proof, hash or rule check failed."""


class AuthorizationError(VerificationError):
    """A well-signed object was signed by a key the rules do not allow for it."""


class ConflictError(MekongError):
    """Two objects that must agree do not (for example two roots of one version).

    Attributes:
        evidence: the conflicting objects, kept so they can be reported.
    """

    def __init__(self, message: str, evidence: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.evidence = evidence


class DuplicateEntryError(ConflictError):
    """An entry a log already holds, submitted again (a replay, spec 6.3.18).

    Attributes:
        log: the log.
        index: where the log already holds it.
    """

    def __init__(self, message: str, log: str, index: int) -> None:
        super().__init__(message)
        self.log = log
        self.index = index


class EquivocationError(ConflictError):
    """Two different valid signed statements where only one may exist."""


class StorageError(MekongError):
    """The database failed, or holds data that does not check out."""


class StorageFullError(StorageError):
    """The database or the disk is full: nothing more can be written; reads go on."""


class StorageReadOnlyError(StorageError):
    """The database cannot be written (a read-only file, directory or mount): reads go on."""


class TamperError(StorageError):
    """Stored data does not match what was signed or hashed.

    Attributes:
        location: a human-readable place, such as ``"log VN entry 17"``.
    """

    def __init__(self, message: str, location: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
