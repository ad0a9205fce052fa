"""Document e-signatures: issuer keys, and the two-level chain through an authorised-signatory credential."""

from __future__ import annotations

import json

import nacl.signing
import pytest
from cred_helpers import DOC, T0, Net, legal_entity, signatory

from credentials.docsig import HashEnvelope, SignedDocument, UnverifiedDocumentSignature, hash_document, sign_document
from credentials.issue import issue_credential
from credentials.report import INDETERMINATE, TOTAL_FAILED, TOTAL_PASSED, VerificationReport
from credentials.verify import VerificationPolicy, verify
from ledger import cbor, cose
from ledger.errors import DecodeError
from ledger.keys import public_key_of

NOW = T0 + 1000
VN = VerificationPolicy("VN")


def verdict(report: VerificationReport) -> tuple[str, str | None]:
    return report.indication, report.sub_indication


def sign(key: nacl.signing.SigningKey, doc: bytes = DOC, signed_at: int = T0 + 300, **kw: object) -> bytes:
    args: dict[str, object] = {"media_type": "application/xml", "file_name": "invoice-0000123.xml",
                                   "document_type": "e-invoice", "signed_at": signed_at}
    args.update(kw)
    return sign_document(doc, key, **args)  # type: ignore[arg-type]


class Chain:
    """A company's legal-entity credential, and an authorised-signatory credential for one of its people."""

    def __init__(self, net: Net, *, scope: tuple[str, ...] | None = None, exp: int | None = None) -> None:
        reg = net.keys["VN/business-registry"]
        self.entity_cti = b"E" * 16
        self.entity = issue_credential(legal_entity(), "VN/business-registry", reg, T0 + 150, cti=self.entity_cti)
        self.person = nacl.signing.SigningKey(b"p" * 32)
        self.cti = b"S" * 16
        self.credential = issue_credential(
            signatory(self.entity, public_key_of(self.person), cti=self.entity_cti, scope=scope),
            "VN/business-registry", reg, T0 + 200, exp=exp, cti=self.cti)

    def sign(self, doc: bytes = DOC, signed_at: int = T0 + 300, **kw: object) -> bytes:
        return sign(self.person, doc, signed_at, signer_credential=self.credential, **kw)


def test_issuer_key_signs_a_document(net: Net) -> None:
    sig = sign(net.keys["VN/business-registry"])
    report = verify(SignedDocument(sig, DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_PASSED, None)
    assert report.subject == "document-signature" and report.issuer == "VN/business-registry"
    assert [c.step for c in report.checks] == ["1", "2", "3.1", "3.2", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7",
                                               "5.1", "5.2", "5.3", "8"]
    d = json.loads(report.to_json())
    assert d["envelope"] == {"hash_alg": "sha-256", "digest": hash_document(DOC).hex(),
                             "media_type": "application/xml", "file_name": "invoice-0000123.xml",
                             "document_type": "e-invoice", "signed_at": T0 + 300}
    assert "invoice-0000123.xml (application/xml)" in report.render_text()


@pytest.mark.parametrize("alg", ["sha-256", "sha-384", "sha-512"])
def test_hash_algorithms(net: Net, alg: str) -> None:
    sig = sign(net.keys["VN/business-registry"], hash_alg=alg)
    assert UnverifiedDocumentSignature.decode(sig).envelope.hash_alg == alg
    assert verdict(verify(SignedDocument(sig, DOC), net.view(), VN, NOW)) == (TOTAL_PASSED, None)


def test_altered_document_is_hash_failure(net: Net) -> None:
    sig = sign(net.keys["VN/business-registry"])
    report = verify(SignedDocument(sig, DOC.replace(b"20 t", b"30 t")), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "HASH_FAILURE")
    assert report.checks[-1].name == "document-digest"


def test_altered_envelope_is_sig_crypto_failure(net: Net) -> None:
    sig = sign(net.keys["VN/business-registry"])
    tampered = sig.replace(b"invoice-0000123.xml", b"invoice-0000124.xml")
    report = verify(SignedDocument(tampered, DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "SIG_CRYPTO_FAILURE")


def test_issuer_key_not_accredited_for_the_document_type(net: Net) -> None:
    sig = sign(net.keys["VN/customs"])  # VN/customs is not accredited for e-invoice
    report = verify(SignedDocument(sig, DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")


def test_unknown_signer_without_credential(net: Net) -> None:
    sig = sign(nacl.signing.SigningKey.generate())
    assert verdict(verify(SignedDocument(sig, DOC), net.view(), VN, NOW)) == (
        INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")


def test_malformed_signatures_are_format_failures(net: Net) -> None:
    for bad in (b"", b"\x00", sign(net.keys["VN/business-registry"])[:-3]):
        assert verdict(verify(SignedDocument(bad, DOC), net.view(), VN, NOW)) == (TOTAL_FAILED, "FORMAT_FAILURE")
    # A credential is not a document signature, and the other way round.
    cred = issue_credential(legal_entity(), "VN/business-registry", net.keys["VN/business-registry"], T0 + 200)
    report = verify(SignedDocument(cred, DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "FORMAT_FAILURE") and "content type" in report.checks[0].detail
    report = verify(sign(net.keys["VN/business-registry"]), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "FORMAT_FAILURE") and "not a CWT" in report.checks[0].detail
    # An envelope with a digest of the wrong size, or a path for a file name.
    key = net.keys["VN/business-registry"]
    for env in ({"hash_alg": "sha-256", "digest": b"\x00" * 31, "media_type": "application/pdf", "file_name": "a.pdf",
                 "document_type": "e-invoice", "signed_at": 1},
                {"hash_alg": "sha-256", "digest": b"\x00" * 32, "media_type": "application/pdf",
                 "file_name": "../a.pdf", "document_type": "e-invoice", "signed_at": 1}):
        raw = cose.sign1(cbor.encode(env), key, kid=b"k" * 16, content_type="application/mekong-docsig+cbor")
        with pytest.raises(DecodeError, match="envelope"):
            UnverifiedDocumentSignature.decode(raw)
        assert verify(SignedDocument(raw, DOC), net.view(), VN, NOW).sub_indication == "FORMAT_FAILURE"


def test_envelope_round_trip() -> None:
    env = HashEnvelope("sha-256", hash_document(DOC), "application/pdf", "co.pdf", "certificate-of-origin", 5)
    assert HashEnvelope.from_map(env.to_map()) == env
    with pytest.raises(DecodeError):
        HashEnvelope("md5", b"", "application/pdf", "co.pdf", "x", 5)
    with pytest.raises(DecodeError):
        hash_document(DOC, "md5")
    with pytest.raises(TypeError):
        SignedDocument("sig", DOC)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the two-level chain


def test_signatory_chain_passes(net: Net) -> None:
    chain = Chain(net)
    report = verify(SignedDocument(chain.sign(), DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_PASSED, None), report.render_text()
    assert report.signer is not None and report.signer.document_type == "authorised-signatory"
    assert report.signer.indication == TOTAL_PASSED
    assert "7.2" in [c.step for c in report.signer.checks]
    assert report.issuer == "VN/business-registry"
    d = json.loads(report.to_json())
    assert d["signer"]["claims"]["attestation"]["person_name"] == "Nguyen Van An"
    assert "signer credential:" in report.render_text()


def test_signatory_chain_recognition_abroad(net: Net) -> None:
    chain = Chain(net)
    th = VerificationPolicy("TH", document_types=frozenset({"e-invoice"}))
    assert verdict(verify(SignedDocument(chain.sign(), DOC), net.view(), th, NOW)) == (TOTAL_PASSED, None)
    cn = VerificationPolicy("CN")  # CN wants high; the business registry is substantial
    report = verify(SignedDocument(chain.sign(), DOC), net.view(), cn, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert report.signer is not None and report.signer.sub_indication == "CHAIN_CONSTRAINTS_FAILURE"


def test_signatory_scope(net: Net) -> None:
    chain = Chain(net, scope=("certificate-of-origin",))
    report = verify(SignedDocument(chain.sign(), DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert any(c.name == "signer-scope" and c.outcome == "failed" for c in report.checks)


def test_signing_outside_the_signatory_credential_validity(net: Net) -> None:
    chain = Chain(net, exp=T0 + 400)
    assert verdict(verify(SignedDocument(chain.sign(signed_at=T0 + 399), DOC), net.view(), VN, NOW)) == (
        TOTAL_PASSED, None)  # expired now, but valid when the document was signed
    report = verify(SignedDocument(chain.sign(signed_at=T0 + 400), DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "EXPIRED")
    report = verify(SignedDocument(chain.sign(signed_at=T0 - 200), DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "NOT_YET_VALID")


@pytest.mark.parametrize("anchored", [True, False])
def test_signatory_revoked_after_signing(net: Net, anchored: bool) -> None:
    sb, reg = net.sb, net.keys["VN/business-registry"]
    chain = Chain(net)
    sig = chain.sign(signed_at=T0 + 300)
    if anchored:
        sb.anchor("VN/business-registry", reg, sig, T0 + 310)
        sb.finalize("VN", T0 + 320)
    sb.set_status("VN/business-registry", reg, chain.cti, "revoked", T0 + 500, "left the company")
    sb.finalize("VN", T0 + 510)
    report = verify(SignedDocument(sig, DOC), net.view(), VN, NOW)
    if anchored:
        assert verdict(report) == (TOTAL_PASSED, None), report.render_text()
        assert report.proof_of_existence is not None and report.proof_of_existence.time == T0 + 320
    else:
        assert verdict(report) == (INDETERMINATE, "REVOKED_NO_POE")
    # Signed after the revocation: revoked whatever the proof.
    late = chain.sign(signed_at=T0 + 600)
    assert verdict(verify(SignedDocument(late, DOC), net.view(), VN, NOW)) == (TOTAL_FAILED, "REVOKED")


def test_signatory_suspended_at_signing_time(net: Net) -> None:
    sb, reg = net.sb, net.keys["VN/business-registry"]
    chain = Chain(net)
    sb.set_status("VN/business-registry", reg, chain.cti, "suspended", T0 + 250)
    sb.set_status("VN/business-registry", reg, chain.cti, "active", T0 + 350)
    sb.finalize("VN", T0 + 360)
    assert verdict(verify(SignedDocument(chain.sign(signed_at=T0 + 300), DOC), net.view(), VN, NOW)) == (
        INDETERMINATE, "SUSPENDED")
    assert verdict(verify(SignedDocument(chain.sign(signed_at=T0 + 400), DOC), net.view(), VN, NOW)) == (
        TOTAL_PASSED, None)


def test_legal_entity_credential_revoked(net: Net) -> None:
    sb, reg = net.sb, net.keys["VN/business-registry"]
    chain = Chain(net)
    sb.set_status("VN/business-registry", reg, chain.entity_cti, "revoked", T0 + 250, "dissolved")
    sb.finalize("VN", T0 + 260)
    report = verify(SignedDocument(chain.sign(), DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "REVOKED")
    assert report.signer is not None
    assert any(c.name == "legal-entity-status" and c.sub_indication == "REVOKED" for c in report.signer.checks)


def test_signatory_issuer_key_compromised(net: Net) -> None:
    sb = net.sb
    reg = sb.add_key("VN/business-registry", T0 + 120)
    person = nacl.signing.SigningKey(b"q" * 32)
    entity = issue_credential(legal_entity(), "VN/business-registry", reg, T0 + 150)
    cred = issue_credential(signatory(entity, public_key_of(person), cti=b"e" * 16), "VN/business-registry", reg,
                            T0 + 200)
    sb.revoke_key("VN/business-registry", reg, "compromised", T0 + 180, T0 + 400)
    sb.finalize("VN", T0 + 410)
    sig = sign(person, signer_credential=cred)
    report = verify(SignedDocument(sig, DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "REVOKED")


def test_carried_credential_that_does_not_certify_the_key(net: Net) -> None:
    chain = Chain(net)
    stranger = nacl.signing.SigningKey.generate()
    report = verify(SignedDocument(sign(stranger, signer_credential=chain.credential), DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    # A legal-entity credential certifies no key at all.
    report = verify(SignedDocument(sign(chain.person, signer_credential=chain.entity), DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    # A malformed carried credential is a format failure.
    report = verify(SignedDocument(sign(chain.person, signer_credential=b"\x00junk"), DOC), net.view(), VN, NOW)
    assert verdict(report) == (TOTAL_FAILED, "FORMAT_FAILURE")
    assert "signer credential" in report.checks[-1].detail


def test_legal_entity_in_a_log_the_view_does_not_hold(net: Net) -> None:
    reg = net.keys["VN/business-registry"]
    person = nacl.signing.SigningKey(b"r" * 32)
    cred = issue_credential(signatory(b"entity", public_key_of(person), cti=b"x" * 16, issuer="LA/registry"),
                            "VN/business-registry", reg, T0 + 200)
    report = verify(SignedDocument(sign(person, signer_credential=cred), DOC), net.view(), VN, NOW)
    assert verdict(report) == (INDETERMINATE, "TRY_LATER")
    assert report.signer is not None
    assert any("no final checkpoint of log LA" in c.detail for c in report.signer.checks)
