"""Credentials, document e-signatures and the verification engine (specs/credentials.md).

The names most callers need are re-exported here::

    from credentials import issue_credential, sign_document, VerificationPolicy, RegistryView
    from credentials.verify import verify

(``verify`` itself is not re-exported, so that ``credentials.verify`` stays the module.)

Modules: :mod:`~credentials.profiles` (the seven attestation profiles), :mod:`~credentials.cwt`
(claims, decoding), :mod:`~credentials.issue`, :mod:`~credentials.docsig` (document signatures),
:mod:`~credentials.view` (what the verifier asks the ledger), :mod:`~credentials.verify` and
:mod:`~credentials.steps` (the engine), :mod:`~credentials.report` (its answer),
:mod:`~credentials.sandbox` (an in-memory network for tests and demos). No network I/O anywhere.
"""

from credentials.cwt import Claims, UnverifiedCredential, credential_digest
from credentials.docsig import SignedDocument, UnverifiedDocumentSignature, sign_document
from credentials.issue import issue_credential
from credentials.profiles import PROFILES
from credentials.report import VerificationReport
from credentials.verify import VerificationPolicy, require_passed
from credentials.view import FinalCheckpoint, LedgerView, RegistryView

__all__ = [
    "PROFILES",
    "Claims",
    "FinalCheckpoint",
    "LedgerView",
    "RegistryView",
    "SignedDocument",
    "UnverifiedCredential",
    "UnverifiedDocumentSignature",
    "VerificationPolicy",
    "VerificationReport",
    "credential_digest",
    "issue_credential",
    "require_passed",
    "sign_document",
]
