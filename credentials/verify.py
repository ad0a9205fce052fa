"""The verification engine: a credential or signed document against a ledger view (specs/credentials.md section 5).

:func:`verify` runs the numbered steps of spec 5.2 and returns a
:class:`~credentials.report.VerificationReport`; it never returns a bool and
never raises for anything wrong with its input:

1. decode (FORMAT_FAILURE);
2. find the signing key on the ledger (NO_SIGNING_CERTIFICATE_FOUND);
3. check the signature (SIG_CRYPTO_FAILURE) and, for documents, the digest (HASH_FAILURE);
4. the issuer is registered by a current member, accredited for the document
   type at the policy's level of assurance, and recognised by the verifier's
   member policy (CHAIN_CONSTRAINTS_FAILURE);
5. the key was valid at the signing time, with revocations judged against
   proof of existence (REVOKED, REVOKED_NO_POE, NOT_YET_VALID, EXPIRED);
6. ``nbf``/``exp`` against ``now`` (NOT_YET_VALID, EXPIRED);
7. credential status on the ledger (REVOKED, SUSPENDED);
8. freshness of the final checkpoints the answer rests on (TRY_LATER).

Steps 1-3 stop at the first failure; steps 4-8 all run so the report lists
every problem, and :func:`credentials.report.conclude` picks the verdict.
The checks of steps 4, 5, 7 and 8 are in :mod:`credentials.steps`. Nothing
here reads a clock or the network: ``now`` and the view are passed in.
"""

from __future__ import annotations

from typing import Any

from credentials import steps
from credentials.cwt import UnverifiedCredential
from credentials.docsig import SignedDocument, UnverifiedDocumentSignature, hash_document
from credentials.profiles import AuthorisedSignatory
from credentials.report import (
    INDETERMINATE,
    TOTAL_FAILED,
    TOTAL_PASSED,
    VerificationReport,
    conclude,
    failed,
    passed,
)
from credentials.steps import Run, VerificationPolicy
from credentials.view import GovernanceInfo, KeyInfo, LedgerView, ProofOfExistence, proof_of_existence
from ledger.cose import sig_structure
from ledger.errors import DecodeError, VerificationError
from ledger.keys import key_id, verify_ed25519

__all__ = ["VerificationPolicy", "require_passed", "verify"]



def verify(subject: bytes | SignedDocument, view: LedgerView, policy: VerificationPolicy,
           now: int) -> VerificationReport:
    """Verify a credential (bytes) or a signed document against a ledger view (spec 5.2).

    Args:
        subject: the credential bytes, or a :class:`~credentials.docsig.SignedDocument`.
        view: the registry state and final checkpoints to judge against.
        policy: the verifier's requirements.
        now: the verification time, Unix seconds.

    Returns:
        The report: indication, sub-indication, every check, the ledger state used.
    """
    gov = view.governance
    if isinstance(subject, SignedDocument):
        return _document(subject, view, policy, now, gov)
    return _credential(subject, view, policy, now, gov, None, None)


def require_passed(report: VerificationReport) -> VerificationReport:
    """Return ``report`` if it is TOTAL-PASSED.

    Raises:
        VerificationError: naming the indication and sub-indication otherwise.
    """
    if report.indication != TOTAL_PASSED:
        raise VerificationError(f"{report.subject} not accepted: {report.indication}/{report.sub_indication}")
    return report


def _signature_ok(public_key: bytes, protected: bytes, payload: bytes, signature: bytes) -> str | None:
    """Step 3: check the EdDSA signature over the bytes as received; the failure message, or None."""
    # RFC 9052 section 4.4 Sig_structure ["Signature1", protected, h'', payload], built directly.
    tbs = sig_structure(protected, payload)
    try:
        verify_ed25519(public_key, tbs, signature)
    except VerificationError as e:
        return str(e)
    return None


def _report(run: Run, subject: str, info: dict[str, Any]) -> VerificationReport:
    steps.governance_current(run)  # steps 8.0 and 8.1 on every path: a stale governance head, or evidence of
    steps.single_history(run)  # two histories, outweighs what the other checks found
    checks = tuple(run.checks)
    indication, sub = conclude(checks)
    return VerificationReport(indication, sub, subject, checks, run.now, run.policy.as_member,
                              governance=run.gov, ledger_state=run.states(), **info)


# --------------------------------------------------------------------------- credentials


def _credential(raw: bytes, view: LedgerView, policy: VerificationPolicy, now: int, gov: GovernanceInfo,
                at: int | None, doc_poe: ProofOfExistence | None) -> VerificationReport:
    """Steps 1-8 for a credential; with ``at``, as the signer credential of a document signed at ``at``."""
    run = Run(view, policy, now, gov)
    add = run.checks.append
    # Step 1: decode.
    try:
        cred = UnverifiedCredential.decode(raw, policy.limits)
    except DecodeError as e:
        add(failed("1", "decode", TOTAL_FAILED, "FORMAT_FAILURE", "{}", str(e)))
        return _report(run, "credential", {})
    claims = cred.claims
    att = claims.attestation
    doc_type = att.TYPE
    kid = cred.kid
    add(passed("1", "decode", "{} credential {} from {}", doc_type, claims.cti.hex(), claims.iss))
    info: dict[str, Any] = {"digest": cred.digest, "kid": kid, "document_type": doc_type, "claims": claims,
                            "signing_time": claims.iat}
    # Step 2: the key on the ledger, and that it is the key of the claimed issuer.
    key = view.key(kid, claims.iss)
    if key is None or key.issuer != claims.iss:
        other = view.key(kid)
        add(failed("2", "key-found", INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND",
                   "no key with id {} of issuer {} on the ledger" + (
                       "" if other is None else " (it is a key of {})"), kid.hex(), claims.iss,
                   other and other.issuer))
        return _report(run, "credential", info)
    add(passed("2", "key-found", "key {} of {}", kid.hex(), key.issuer))
    # Step 3: the signature, over the bytes as received.
    sign1 = cred.sign1
    problem = _signature_ok(key.public_key, sign1.protected, sign1.payload or b"", sign1.signature)
    if problem is not None:
        add(failed("3", "signature", TOTAL_FAILED, "SIG_CRYPTO_FAILURE", "{}", problem))
        return _report(run, "credential", info)
    add(passed("3", "signature", "Ed25519 signature verifies"))
    # Step 4: chain constraints.
    issuer = view.issuer(claims.iss)
    if issuer is None:
        add(failed("4.1", "issuer-registered", INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE",
                   "issuer {} is not registered", claims.iss))
        return _report(run, "credential", info)
    info["issuer"] = issuer.issuer_id
    info["member"] = issuer.member
    poe = proof_of_existence(view, cred.digest, gov.faulty)
    info["proof_of_existence"] = poe
    steps.chain(run, issuer, doc_type, getattr(att, "loa", None), at is None, poe)
    # Step 5: the key at the signing time, with proof of existence.
    add(steps.issuer_at_signing_time(run, issuer, doc_type, claims.iat, poe))
    steps.key_at_signing_time(run, key, claims.iat, poe)
    # Step 6: validity period, at now (or at the document's signing time, for a signer credential).
    _validity_period(run, claims, at)
    # Step 7: credential status (and, for a signatory, that of the legal entity credential it rests on).
    _credential_status(run, claims, at, doc_poe)
    # Step 8: freshness of every log consulted.
    run.consult(issuer.member)
    steps.freshness(run)
    return _report(run, "credential", info)


def _validity_period(run: Run, claims: Any, at: int | None) -> None:
    """Step 6: ``nbf``/``iat`` and ``exp`` at now, or at a document's signing time ``at``."""
    add = run.checks.append
    t = run.now if at is None else at
    what = "now" if at is None else "the document's signing time"
    if claims.nbf is not None and t < claims.nbf:
        add(failed("6.1", "not-before", INDETERMINATE, "NOT_YET_VALID", "{} {} is before nbf {}", what, t,
                   claims.nbf))
    elif t + run.policy.clock_skew_seconds < claims.iat:
        add(failed("6.1", "not-before", INDETERMINATE, "NOT_YET_VALID", "{} {} is before the credential was "
                   "issued at {}", what, t, claims.iat))
    else:
        add(passed("6.1", "not-before", "valid from {}", claims.iat if claims.nbf is None else claims.nbf))
    if claims.exp is not None and t >= claims.exp:
        add(failed("6.2", "expiry", TOTAL_FAILED, "EXPIRED", "expired at {}; {} is {}", claims.exp, what, t))
    else:
        add(passed("6.2", "expiry", "valid until {}", "further notice" if claims.exp is None else claims.exp))


def _credential_status(run: Run, claims: Any, at: int | None, doc_poe: ProofOfExistence | None) -> None:
    """Step 7: the credential's status; for a signatory, also that of the legal entity credential."""
    view = run.view
    run.checks.append(steps.status("7.1", "credential-status", "credential",
                                   view.credential_status(claims.iss, claims.cti), at, doc_poe))
    att = claims.attestation
    if type(att) is AuthorisedSignatory:
        ref = att.legal_entity
        run.checks.append(steps.status("7.2", "legal-entity-status",
                                       f"legal entity credential {ref.cti.hex()} of {ref.issuer}",
                                       view.credential_status(ref.issuer, ref.cti), at, doc_poe))
        run.consult(ref.issuer.partition("/")[0])  # its status lives in its issuer's member log


# --------------------------------------------------------------------------- documents


def _document(doc: SignedDocument, view: LedgerView, policy: VerificationPolicy, now: int,
              gov: GovernanceInfo) -> VerificationReport:
    """Steps 1-8 for a document signature (spec 5.2, with 5.4 for the signatory chain)."""
    run = Run(view, policy, now, gov)
    add = run.checks.append
    subject = "document-signature"
    info: dict[str, Any] = {}
    # Step 1: decode the signature and its envelope.
    try:
        sig = UnverifiedDocumentSignature.decode(doc.signature, policy.limits)
    except DecodeError as e:
        add(failed("1", "decode", TOTAL_FAILED, "FORMAT_FAILURE", "{}", str(e)))
        return _report(run, subject, info)
    env = sig.envelope
    info.update(digest=sig.digest, kid=sig.kid, document_type=env.document_type, signing_time=env.signed_at,
                envelope=env.to_json())
    add(passed("1", "decode", "signature of {} ({}) as {}", env.file_name, env.media_type, env.document_type))
    # Step 2: an issuer key on the ledger, or a key certified by an authorised-signatory credential.
    found = _document_key(run, sig)
    if found is None:
        return _report(run, subject, info)
    key, public_key, signatory = found
    # Step 3: the signature over the envelope, then the document's digest.
    if not _document_signature(run, sig, doc, public_key):
        return _report(run, subject, info)
    poe = proof_of_existence(view, sig.digest, gov.faulty)
    info["proof_of_existence"] = poe
    if key is not None:
        _issuer_key_document(run, key, env, poe, info)
        return _report(run, subject, info)
    # Steps 4-8 through the signatory's credential, verified in turn at the document's signing time.
    assert signatory is not None and sig.signer_credential is not None
    _signatory_document(run, sig.signer_credential, signatory, env, poe, info)
    return _report(run, subject, info)


def _document_key(run: Run, sig: UnverifiedDocumentSignature) -> tuple[KeyInfo | None, bytes,
                                                                            AuthorisedSignatory | None] | None:
    """Step 2 for a document: (issuer key or None, public key, signatory or None); None after a failed check."""
    add = run.checks.append
    key = run.view.key(sig.kid)
    if key is not None:
        add(passed("2", "key-found", "issuer key {} of {}", sig.kid.hex(), key.issuer))
        return key, key.public_key, None
    if sig.signer_credential is None:
        add(failed("2", "key-found", INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND", "no issuer key with id {} on "
                   "the ledger, and no signer credential", sig.kid.hex()))
        return None
    try:
        signer = UnverifiedCredential.decode(sig.signer_credential, run.policy.limits)
    except DecodeError as e:
        add(failed("1", "decode", TOTAL_FAILED, "FORMAT_FAILURE", "signer credential: {}", str(e)))
        return None
    att = signer.claims.attestation
    if type(att) is not AuthorisedSignatory or key_id(att.signatory_key) != sig.kid:
        add(failed("2", "key-found", INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND", "key {} is not on the "
                   "ledger and the {} credential carried does not certify it", sig.kid.hex(), att.TYPE))
        return None
    add(passed("2", "key-found", "key {} of signatory {} ({}), certified by credential {} of {}",
               sig.kid.hex(), att.person_name, att.role, signer.claims.cti.hex(), signer.claims.iss))
    return None, att.signatory_key, att


def _document_signature(run: Run, sig: UnverifiedDocumentSignature, doc: SignedDocument, public_key: bytes) -> bool:
    """Step 3 for a document: the signature over the hash envelope, then the document's digest."""
    add = run.checks.append
    env = sig.envelope
    sign1 = sig.sign1
    problem = _signature_ok(public_key, sign1.protected, sign1.payload or b"", sign1.signature)
    if problem is not None:
        add(failed("3.1", "signature", TOTAL_FAILED, "SIG_CRYPTO_FAILURE", "{}", problem))
        return False
    add(passed("3.1", "signature", "Ed25519 signature over the hash envelope verifies"))
    if hash_document(doc.document, env.hash_alg) != env.digest:
        add(failed("3.2", "document-digest", TOTAL_FAILED, "HASH_FAILURE", "the document's {} digest differs from "
                   "the signed one", env.hash_alg))
        return False
    add(passed("3.2", "document-digest", "{} of {} bytes matches", env.hash_alg, len(doc.document)))
    return True


def _issuer_key_document(run: Run, key: KeyInfo, env: Any, poe: ProofOfExistence | None,
                         info: dict[str, Any]) -> None:
    """Steps 4, 5 and 8 for a document signed by an issuer key; 6 and 7 do not apply (spec 5.4)."""
    issuer = run.view.issuer(key.issuer)
    if issuer is None:
        run.checks.append(failed("4.1", "issuer-registered", INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE",
                                 "issuer {} is not registered", key.issuer))
        return
    info["issuer"] = issuer.issuer_id
    info["member"] = issuer.member
    steps.chain(run, issuer, env.document_type, None, True, poe)
    run.checks.append(steps.issuer_at_signing_time(run, issuer, env.document_type, env.signed_at, poe))
    steps.key_at_signing_time(run, key, env.signed_at, poe)
    run.consult(issuer.member)
    steps.freshness(run)


def _signatory_document(run: Run, signer_credential: bytes, signatory: AuthorisedSignatory, env: Any,
                        poe: ProofOfExistence | None, info: dict[str, Any]) -> None:
    """Steps 4-8 through the signatory's credential, verified in turn at the document's signing time."""
    add = run.checks.append
    inner = _credential(signer_credential, run.view, run.policy, run.now, run.gov, env.signed_at, poe)
    info.update(signer=inner, issuer=inner.issuer, member=inner.member)
    for state in inner.ledger_state:
        run.logs[state.checkpoint.log] = state
    if inner.indication == TOTAL_PASSED:
        add(passed("4.0", "signer-credential", "authorised-signatory credential verified (see signer)"))
    else:
        add(failed("4.0", "signer-credential", inner.indication, inner.sub_indication or "GENERIC",
                   "authorised-signatory credential: {}/{}", inner.indication, inner.sub_indication))
    if signatory.scope is not None and env.document_type not in signatory.scope:
        add(failed("4.5", "signer-scope", INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE", "the signatory may sign {}, "
                   "not {}", ", ".join(signatory.scope), env.document_type))
    else:
        add(passed("4.5", "signer-scope", "the signatory may sign {}", env.document_type))
    add(steps.policy_type(run.policy, env.document_type))
    add(steps.existence_order(run, env.signed_at, poe))
