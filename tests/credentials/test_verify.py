"""The verification engine against a real registry state: every sub-indication, keys, revocation, status, policy."""

from __future__ import annotations

import json

import nacl.signing
import pytest
from cred_helpers import DAY, T0, Net, certificate_of_origin, e_invoice, legal_entity, phyto

from credentials.issue import issue_credential
from credentials.report import INDETERMINATE, SUB_INDICATIONS, TOTAL_FAILED, TOTAL_PASSED, VerificationReport
from credentials.verify import VerificationPolicy, require_passed, verify
from ledger import cbor, cose
from ledger.errors import AuthorizationError, VerificationError
from ledger.keys import key_id, public_key_of

NOW = T0 + 1000


def coo(net: Net, iat: int = T0 + 200, key: nacl.signing.SigningKey | None = None, **kw: object) -> bytes:
    return issue_credential(certificate_of_origin(), "VN/customs", key or net.keys["VN/customs"], iat, **kw)  # type: ignore[arg-type]


def check(report: VerificationReport, name: str) -> tuple[str | None, str]:
    found = [c for c in report.checks if c.name == name]
    assert found, f"no check {name} in {[c.name for c in report.checks]}"
    return found[-1].sub_indication, found[-1].detail


def verdict(report: VerificationReport) -> tuple[str, str | None]:
    assert report.sub_indication is None or report.indication in SUB_INDICATIONS[report.sub_indication]
    return report.indication, report.sub_indication


# --------------------------------------------------------------------------- passing, and the report


def test_a_good_credential_passes_with_every_step_listed(net: Net, policy_th: VerificationPolicy) -> None:
    report = verify(coo(net), net.view(), policy_th, NOW)
    assert verdict(report) == (TOTAL_PASSED, None)
    assert [c.step for c in report.checks] == ["1", "2", "3", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "5.1",
                                               "5.2", "5.3", "6.1", "6.2", "7.1", "8", "8"]
    assert all(c.outcome == "passed" for c in report.checks)
    assert report.issuer == "VN/customs" and report.member == "VN"
    assert report.claims is not None and report.claims.attestation == certificate_of_origin()
    assert {s.checkpoint.log for s in report.ledger_state} == {"TH", "VN"}
    vn = next(s for s in report.ledger_state if s.checkpoint.log == "VN")
    assert vn.witnessed_time == T0 + 100 and vn.age_seconds == NOW - T0 - 100
    assert len(vn.checkpoint.cosignatures) == 4 and vn.checkpoint.size == net.sb.state.size("VN")
    assert require_passed(report) is report


def test_report_json_has_stable_documented_keys(net: Net, policy_th: VerificationPolicy) -> None:
    report = verify(coo(net), net.view(), policy_th, NOW)
    d = json.loads(report.to_json())
    assert set(d) == {"version", "indication", "sub_indication", "subject", "verified_at", "as_member", "digest",
                      "kid", "document_type", "issuer", "member", "signing_time", "claims", "envelope", "checks",
                      "governance", "ledger_state", "proof_of_existence", "signer"}
    assert d["version"] == 1 and d["indication"] == "TOTAL-PASSED" and d["subject"] == "credential"
    assert set(d["checks"][0]) == {"step", "name", "outcome", "detail", "indication", "sub_indication"}
    assert set(d["claims"]) == {"iss", "sub", "iat", "nbf", "exp", "cti", "type", "attestation"}
    assert d["claims"]["attestation"]["items"][0]["fob_value"] == {"amount": 1240000, "currency": "USD"}
    assert set(d["ledger_state"][0]) == {"log", "size", "root_hash", "witnessed_time", "age_seconds",
                                         "cosignatures"}
    assert d["governance"]["members"] == ["CN", "KH", "LA", "MM", "TH", "VN"]
    assert json.loads(report.to_json(indent=None)) == d
    text = report.render_text()
    assert text.startswith("TOTAL-PASSED\n") and "recognised" in text and "log VN: size" in text


def test_report_of_a_failure_names_what_was_wrong(net: Net, policy_th: VerificationPolicy) -> None:
    report = verify(b"\xa1\x01\x02", net.view(), policy_th, NOW)
    assert verdict(report) == (TOTAL_FAILED, "FORMAT_FAILURE")
    assert "COSE_Sign1" in report.checks[0].detail
    assert report.render_text().startswith("TOTAL-FAILED / FORMAT_FAILURE")
    with pytest.raises(VerificationError, match="FORMAT_FAILURE"):
        require_passed(report)
    assert json.loads(report.to_json())["claims"] is None


# --------------------------------------------------------------------------- steps 2 and 3


def test_unknown_key_is_no_signing_certificate_found(net: Net, policy_th: VerificationPolicy) -> None:
    stranger = nacl.signing.SigningKey.generate()
    report = verify(coo(net, key=stranger), net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    assert [c.step for c in report.checks] == ["1", "2"]


def test_key_of_another_issuer_is_no_signing_certificate_found(net: Net, policy_th: VerificationPolicy) -> None:
    # Signed with VN/business-registry's key but claiming iss VN/customs.
    report = verify(coo(net, key=net.keys["VN/business-registry"]), net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    assert "it is a key of VN/business-registry" in check(report, "key-found")[1]


def test_forged_signature_is_sig_crypto_failure(net: Net, policy_th: VerificationPolicy) -> None:
    forger = nacl.signing.SigningKey.generate()
    claims = cose.UnverifiedSign1.decode(coo(net)).payload
    assert claims is not None
    forged = cose.sign1(claims, forger, kid=key_id(public_key_of(net.keys["VN/customs"])))
    report = verify(forged, net.view(), policy_th, NOW)
    assert verdict(report) == (TOTAL_FAILED, "SIG_CRYPTO_FAILURE")
    # A flipped signature bit, too.
    good = bytearray(coo(net))
    good[-1] ^= 1
    assert verdict(verify(bytes(good), net.view(), policy_th, NOW)) == (TOTAL_FAILED, "SIG_CRYPTO_FAILURE")


# --------------------------------------------------------------------------- step 4


def test_issuer_not_accredited_for_the_type(net: Net, policy_th: VerificationPolicy) -> None:
    cred = issue_credential(legal_entity(), "VN/customs", net.keys["VN/customs"], T0 + 200)
    report = verify(cred, net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert "not accredited for legal-entity" in check(report, "accredited")[1]


def test_level_of_assurance_below_policy(net: Net) -> None:
    cred = issue_credential(legal_entity(), "VN/business-registry", net.keys["VN/business-registry"], T0 + 200)
    report = verify(cred, net.view(), VerificationPolicy("VN", min_loa="high"), NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert check(report, "level-of-assurance")[0] == "CHAIN_CONSTRAINTS_FAILURE"
    # The attested identity's level counts as well.
    cred = issue_credential(legal_entity(loa="low"), "VN/business-registry", net.keys["VN/business-registry"],
                            T0 + 200)
    report = verify(cred, net.view(), VerificationPolicy("VN"), NOW)
    assert "attested identity level low" in check(report, "level-of-assurance")[1]


def test_policy_document_types(net: Net) -> None:
    report = verify(coo(net), net.view(), VerificationPolicy("TH", document_types=frozenset({"e-invoice"})), NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert check(report, "policy-document-type")[0] == "CHAIN_CONSTRAINTS_FAILURE"
    ok = VerificationPolicy("TH", document_types=frozenset({"certificate-of-origin"}))
    assert verdict(verify(coo(net), net.view(), ok, NOW)) == (TOTAL_PASSED, None)


@pytest.mark.parametrize(("issuer", "profile", "as_member", "expected"), [
    ("VN/customs", certificate_of_origin, "TH", TOTAL_PASSED),  # TH: VN CoO at substantial
    ("VN/customs", certificate_of_origin, "CN", TOTAL_PASSED),  # CN: anyone, anything, at high
    ("VN/customs", certificate_of_origin, "VN", TOTAL_PASSED),  # own issuers need no rule
    ("VN/business-registry", e_invoice, "TH", INDETERMINATE),  # TH's rule does not cover e-invoice
    ("VN/business-registry", legal_entity, "CN", INDETERMINATE),  # CN wants high, issuer is substantial
    ("TH/doa", phyto, "KH", INDETERMINATE),  # KH published no policy
    ("TH/doa", phyto, "CN", TOTAL_PASSED),
], ids=["th-accepts-vn-coo", "cn-wildcard", "own-member", "th-refuses-type", "cn-refuses-loa", "kh-no-policy",
        "cn-accepts-th"])
def test_recognition_policies(net: Net, issuer: str, profile: object, as_member: str, expected: str) -> None:
    cred = issue_credential(profile(), issuer, net.keys[issuer], T0 + 200)  # type: ignore[operator]
    report = verify(cred, net.view(), VerificationPolicy(as_member, min_loa="low"), NOW)
    assert report.indication == expected, report.render_text()
    if expected != TOTAL_PASSED:
        assert report.sub_indication == "CHAIN_CONSTRAINTS_FAILURE"
        assert check(report, "recognised")[0] == "CHAIN_CONSTRAINTS_FAILURE"


def test_policy_change_is_seen_once_final(net: Net, policy_th: VerificationPolicy) -> None:
    net.sb.set_policy("TH", [("KH", ["e-invoice"], "low")], T0 + 300)
    assert verdict(verify(coo(net), net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)  # not final yet
    net.sb.finalize("TH", T0 + 400)
    assert verdict(verify(coo(net), net.view(), policy_th, NOW)) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")


def test_suspended_issuer(net: Net, policy_th: VerificationPolicy) -> None:
    cred = coo(net)
    net.sb.update_issuer("VN/customs", T0 + 300, status="suspended", reason="audit")
    net.sb.finalize("VN", T0 + 400)
    report = verify(cred, net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert "is suspended" in check(report, "issuer-registered")[1]


def test_credential_signed_while_the_issuer_was_suspended_fails_after_reinstatement(
        net: Net, policy_th: VerificationPolicy) -> None:
    # Check 4.7: the issuer is judged at the signing time too, not only now (Trust I item 5).
    net.sb.update_issuer("VN/customs", T0 + 300, status="suspended", reason="audit")
    cred = coo(net, iat=T0 + 350)  # signed during the suspension
    net.sb.update_issuer("VN/customs", T0 + 400, status="active", reason="audit closed")
    net.sb.anchor("VN/customs", net.keys["VN/customs"], cred, T0 + 450)
    net.sb.finalize("VN", T0 + 500)
    report = verify(cred, net.view(), policy_th, NOW)
    assert check(report, "issuer-registered")[0] is None  # active now
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    sub, detail = check(report, "issuer-at-signing-time")
    assert sub == "CHAIN_CONSTRAINTS_FAILURE" and "was suspended at the signing time 1" in detail, detail


def test_a_suspension_after_the_claimed_signing_time_needs_proof_of_existence(
        net: Net, policy_th: VerificationPolicy) -> None:
    early = coo(net, iat=T0 + 200)  # anchored before the suspension: proven to exist before it
    net.sb.anchor("VN/customs", net.keys["VN/customs"], early, T0 + 250)
    net.sb.finalize("VN", T0 + 260)
    backdated = coo(net, iat=T0 + 210, cti=b"backdated")  # claims the same time, never anchored
    net.sb.update_issuer("VN/customs", T0 + 300, status="suspended", reason="key misuse")
    net.sb.update_issuer("VN/customs", T0 + 400, status="active", reason="cleared")
    net.sb.finalize("VN", T0 + 500)
    assert verdict(verify(early, net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)
    report = verify(backdated, net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "REVOKED_NO_POE")
    assert "after the claimed signing time" in check(report, "issuer-at-signing-time")[1]


def test_accreditation_is_judged_at_the_signing_time(net: Net, policy_th: VerificationPolicy) -> None:
    net.sb.update_issuer("VN/customs", T0 + 300, document_types=["aeo-status"])
    cred = coo(net, iat=T0 + 350)
    net.sb.update_issuer("VN/customs", T0 + 400, document_types=["certificate-of-origin", "aeo-status"])
    net.sb.finalize("VN", T0 + 500)
    report = verify(cred, net.view(), policy_th, NOW)
    assert check(report, "accredited")[0] is None  # accredited now
    sub, detail = check(report, "issuer-at-signing-time")
    assert sub == "CHAIN_CONSTRAINTS_FAILURE" and "not accredited for certificate-of-origin" in detail


def test_member_no_longer_in_governance(net: Net, policy_th: VerificationPolicy) -> None:
    cred = coo(net)
    net.sb.next_root(["CN", "KH", "LA", "MM", "TH"], T0 + 300)
    report = verify(cred, net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert "VN left the network at governance root v2 (issued 1700000300), and nothing proves" in check(
        report, "member-current")[1]


def test_a_departed_members_credential_keeps_its_proof_of_existence(net: Net, policy_th: VerificationPolicy) -> None:
    # Spec 7.4.2: a removed member's log is frozen; what provably existed before it left still verifies, and
    # its log's age does not make the answer stale.
    cred = coo(net)
    net.sb.anchor("VN/customs", net.keys["VN/customs"], cred, T0 + 250)
    net.sb.finalize("VN", T0 + 260)
    net.sb.next_root(["CN", "KH", "LA", "MM", "TH"], T0 + 300)
    net.sb.finalize("TH", T0 + 400 * DAY)
    report = verify(cred, net.view(), policy_th, T0 + 400 * DAY)
    assert verdict(report) == (TOTAL_PASSED, None), report.render_text()
    assert "VN left the network at governance root v2" in check(report, "member-current")[1]
    fresh = [c.detail for c in report.checks if c.name == "freshness"]
    assert any("frozen since VN left" in d for d in fresh), fresh


# --------------------------------------------------------------------------- step 5: keys over time


def test_signing_time_outside_key_window(net: Net, policy_th: VerificationPolicy) -> None:
    key = net.sb.add_key("VN/customs", T0 + 200, valid_from=T0 + 300, valid_until=T0 + 600)
    net.sb.finalize("VN", T0 + 250)
    early = verify(coo(net, iat=T0 + 299, key=key), net.view(), policy_th, NOW)
    assert verdict(early) == (TOTAL_FAILED, "NOT_YET_VALID")
    assert check(early, "key-validity")[0] == "NOT_YET_VALID"
    late = verify(coo(net, iat=T0 + 600, key=key), net.view(), policy_th, NOW)
    assert verdict(late) == (TOTAL_FAILED, "EXPIRED")
    inside = verify(coo(net, iat=T0 + 599, key=key), net.view(), policy_th, NOW)
    assert verdict(inside) == (TOTAL_PASSED, None)


def test_rotation_with_pre_rotation(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    nxt = sb.new_key()
    old = sb.add_key("VN/customs", T0 + 200, next_key=nxt)
    before = coo(net, iat=T0 + 250, key=old)
    sb.rotate_key("VN/customs", old, nxt, T0 + 300)
    after_by_old = coo(net, iat=T0 + 300, key=old)
    by_new = coo(net, iat=T0 + 310, key=nxt)
    sb.finalize("VN", T0 + 320)
    view = net.view()
    assert verdict(verify(before, view, policy_th, NOW)) == (TOTAL_PASSED, None)
    report = verify(after_by_old, view, policy_th, NOW)
    assert verdict(report) == (TOTAL_FAILED, "REVOKED")
    assert "superseded" in check(report, "key-revocation")[1]
    assert verdict(verify(by_new, view, policy_th, NOW)) == (TOTAL_PASSED, None)
    # The new key is valid only from the rotation.
    assert verdict(verify(coo(net, iat=T0 + 299, key=nxt), view, policy_th, NOW)) == (TOTAL_FAILED, "NOT_YET_VALID")


def test_rotation_to_an_uncommitted_key_is_refused(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    committed, thief = sb.new_key(), sb.new_key()
    old = sb.add_key("VN/customs", T0 + 200, next_key=committed)
    with pytest.raises(AuthorizationError, match="commitment"):
        sb.rotate_key("VN/customs", old, thief, T0 + 300)
    sb.finalize("VN", T0 + 320)
    report = verify(coo(net, iat=T0 + 310, key=thief), net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")


@pytest.mark.parametrize("reason", ["superseded", "compromised", "ceased"])
@pytest.mark.parametrize("anchoring", ["before-revocation", "after-revocation", "never"])
def test_revocation_before_and_after_anchoring(net: Net, policy_th: VerificationPolicy, reason: str,
                                               anchoring: str) -> None:
    sb = net.sb
    key = sb.add_key("VN/customs", T0 + 200)
    cred = coo(net, iat=T0 + 250, key=key)
    effective = T0 + 500
    if anchoring == "before-revocation":
        sb.anchor("VN/customs", key, cred, T0 + 260)
        sb.finalize("VN", T0 + 270)  # witnessed at T0+270 < effective
    # Only a compromise may be dated back; the others take effect when logged.
    sb.revoke_key("VN/customs", key, reason, effective, T0 + 700 if reason == "compromised" else effective)
    if anchoring == "after-revocation":
        sb.anchor("VN/customs", net.keys["VN/customs"], cred, T0 + 710)
    sb.finalize("VN", T0 + 720)
    report = verify(cred, net.view(), policy_th, NOW)
    if reason != "compromised" or anchoring == "before-revocation":
        assert verdict(report) == (TOTAL_PASSED, None), report.render_text()
    else:
        assert verdict(report) == (INDETERMINATE, "REVOKED_NO_POE")
    poe = report.proof_of_existence
    if anchoring == "never":
        assert poe is None
    else:
        assert poe is not None and poe.time == (T0 + 270 if anchoring == "before-revocation" else T0 + 720)
    # Whatever the reason, a credential signed at or after the effective time fails for good.
    late = verify(coo(net, iat=effective, key=key), net.view(), policy_th, NOW)
    assert verdict(late) == (TOTAL_FAILED, "REVOKED")


def test_proof_of_existence_uses_the_f_plus_1th_smallest_cosignature(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    key = sb.add_key("VN/customs", T0 + 200)
    cred = coo(net, iat=T0 + 250, key=key)
    sb.anchor("VN/customs", key, cred, T0 + 260)
    # One lying witness (f = 1) claims an early time; the bound is the second smallest.
    sb.finalize("VN", {"VN": T0 + 400, "TH": T0 + 265, "CN": T0 + 450, "KH": T0 + 410})
    sb.revoke_key("VN/customs", key, "compromised", T0 + 300, T0 + 800)
    sb.finalize("VN", T0 + 810)
    report = verify(cred, net.view(), policy_th, NOW)
    assert report.proof_of_existence is not None and report.proof_of_existence.time == T0 + 400
    assert verdict(report) == (INDETERMINATE, "REVOKED_NO_POE")  # T0+400 is not before T0+300


def test_credential_signed_after_compromise_is_revoked(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    key = sb.add_key("VN/customs", T0 + 200)
    cred = coo(net, iat=T0 + 400, key=key)
    sb.anchor("VN/customs", net.keys["VN/customs"], cred, T0 + 410)
    sb.finalize("VN", T0 + 420)
    sb.revoke_key("VN/customs", key, "compromised", T0 + 300, T0 + 800)
    sb.finalize("VN", T0 + 810)
    report = verify(cred, net.view(), policy_th, NOW)
    assert verdict(report) == (TOTAL_FAILED, "REVOKED")


def test_proof_of_existence_before_claimed_signing_time(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    cred = coo(net, iat=T0 + 5000)
    sb.anchor("VN/customs", net.keys["VN/customs"], cred, T0 + 200)
    sb.finalize("VN", T0 + 300)
    report = verify(cred, net.view(), policy_th, T0 + 6000)
    assert verdict(report) == (INDETERMINATE, "TIMESTAMP_ORDER_FAILURE")


# --------------------------------------------------------------------------- steps 6 and 7


def test_validity_period_against_now(net: Net, policy_th: VerificationPolicy) -> None:
    report = verify(coo(net, nbf=NOW + 10, exp=NOW + 20), net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "NOT_YET_VALID")
    report = verify(coo(net, exp=NOW), net.view(), policy_th, NOW)
    assert verdict(report) == (TOTAL_FAILED, "EXPIRED")
    assert check(report, "expiry")[0] == "EXPIRED"
    report = verify(coo(net, iat=NOW + 3600), net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "NOT_YET_VALID")
    assert "before the credential was issued" in check(report, "not-before")[1]
    assert verdict(verify(coo(net, nbf=NOW, exp=NOW + 1), net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)


def test_suspension_reinstatement_and_revocation(net: Net, policy_th: VerificationPolicy) -> None:
    sb, key = net.sb, net.keys["VN/customs"]
    cti = bytes(range(16))
    cred = coo(net, cti=cti)
    sb.set_status("VN/customs", key, cti, "suspended", T0 + 300, "under investigation")
    sb.finalize("VN", T0 + 310)
    report = verify(cred, net.view(), policy_th, NOW)
    assert verdict(report) == (INDETERMINATE, "SUSPENDED")
    assert "under investigation" in check(report, "credential-status")[1]
    sb.set_status("VN/customs", key, cti, "active", T0 + 400, "cleared")
    sb.finalize("VN", T0 + 410)
    assert verdict(verify(cred, net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)
    sb.set_status("VN/customs", key, cti, "revoked", T0 + 500, "goods not originating")
    sb.finalize("VN", T0 + 510)
    assert verdict(verify(cred, net.view(), policy_th, NOW)) == (TOTAL_FAILED, "REVOKED")


def test_a_known_revocation_outweighs_an_unknown(net: Net) -> None:
    sb, key = net.sb, net.keys["VN/customs"]
    cti = b"\x01" * 16
    cred = coo(net, cti=cti)
    sb.set_status("VN/customs", key, cti, "revoked", T0 + 300)
    sb.finalize("VN", T0 + 310)
    strict = VerificationPolicy("TH", max_age_seconds=10)  # the view is stale: TRY_LATER too
    report = verify(cred, net.view(), strict, NOW)
    assert verdict(report) == (TOTAL_FAILED, "REVOKED")
    assert check(report, "freshness")[0] == "TRY_LATER"


# --------------------------------------------------------------------------- step 8


def test_stale_view_is_try_later_with_the_age(net: Net) -> None:
    policy = VerificationPolicy("TH", max_age_seconds=3600)
    report = verify(coo(net), net.view(), policy, T0 + 100 + 3601)
    assert verdict(report) == (INDETERMINATE, "TRY_LATER")
    assert "3601 s old, more than 3600 s" in check(report, "freshness")[1]
    assert verdict(verify(coo(net), net.view(), policy, T0 + 100 + 3600)) == (TOTAL_PASSED, None)


def test_unfinalized_entries_are_not_seen(net: Net, policy_th: VerificationPolicy) -> None:
    sb = net.sb
    key = sb.add_key("VN/customs", T0 + 200)  # not final: the view does not know the key yet
    cred = coo(net, key=key, iat=T0 + 250)
    assert verdict(verify(cred, net.view(), policy_th, NOW)) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    sb.finalize("VN", {"VN": T0 + 260, "TH": T0 + 260})  # two cosignatures: not final (quorum 4)
    assert verdict(verify(cred, net.view(), policy_th, NOW)) == (INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    sb.finalize("VN", T0 + 270)
    assert verdict(verify(cred, net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)


def test_log_without_final_checkpoint_is_try_later() -> None:
    from credentials.sandbox import Sandbox
    sb = Sandbox(seed="lonely")
    sb.register_issuer("VN/customs", ["certificate-of-origin"], "high", T0 + 10)
    key = sb.add_key("VN/customs", T0 + 10)
    sb.set_policy("TH", [("VN", ["*"], "low")], T0 + 10)
    sb.finalize("VN", T0 + 100)  # TH's policy never becomes final
    cred = issue_credential(certificate_of_origin(), "VN/customs", key, T0 + 200)
    report = verify(cred, sb.view(), VerificationPolicy("TH"), NOW)
    assert verdict(report) == (INDETERMINATE, "CHAIN_CONSTRAINTS_FAILURE")
    assert any(c.sub_indication == "TRY_LATER" and "no final checkpoint of log TH" in c.detail
               for c in report.checks)


# --------------------------------------------------------------------------- inputs that are not credentials


def test_verify_never_raises_for_odd_subjects(net: Net, policy_th: VerificationPolicy) -> None:
    for subject in (b"", b"\xd2", "text", None, 42, bytearray(coo(net))):
        report = verify(subject, net.view(), policy_th, NOW)  # type: ignore[arg-type]
        assert report.indication in (TOTAL_FAILED, TOTAL_PASSED)
    assert verify(bytearray(coo(net)), net.view(), policy_th, NOW).indication == TOTAL_PASSED  # type: ignore[arg-type]


def test_cwt_tag_61_is_accepted(net: Net, policy_th: VerificationPolicy) -> None:
    wrapped = cbor.encode(cbor.Tag(61, cbor.decode(coo(net), cose.SIGN1_LIMITS)))
    assert wrapped[:2] == b"\xd8\x3d"
    assert verdict(verify(wrapped, net.view(), policy_th, NOW)) == (TOTAL_PASSED, None)


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        VerificationPolicy("TH", min_loa="medium")
    with pytest.raises(ValueError):
        VerificationPolicy("TH", max_age_seconds=-1)
    with pytest.raises(ValueError):
        VerificationPolicy("TH", document_types={"e-invoice"})  # type: ignore[arg-type]
    assert VerificationPolicy("TH").accepts("anything") and DAY == 86400
