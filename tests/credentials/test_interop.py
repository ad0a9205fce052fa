"""Interoperability with an independent COSE library (pycose 1.x) in both directions."""

from __future__ import annotations

import cbor2
from cred_helpers import T0, Net, certificate_of_origin, legal_entity
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import CoseMessage, Sign1Message

from credentials.cwt import CLAIM_ATTESTATION, UnverifiedCredential
from credentials.issue import issue_credential
from credentials.profiles import attestation_from_map, attestation_to_map
from credentials.verify import VerificationPolicy, verify
from ledger.keys import key_id, public_key_of

NOW = T0 + 1000


def test_our_credential_verifies_with_pycose(net: Net) -> None:
    key = net.keys["VN/customs"]
    cred = issue_credential(certificate_of_origin(), "VN/customs", key, T0 + 200, exp=T0 + 9000, sub="0312345678")
    msg = CoseMessage.decode(cred)
    assert isinstance(msg, Sign1Message)
    assert msg.phdr[Algorithm] is EdDSA or msg.phdr[Algorithm] == EdDSA
    assert msg.phdr[KID] == key_id(public_key_of(key))
    msg.key = OKPKey(crv=Ed25519, x=public_key_of(key))
    assert msg.verify_signature()
    claims = cbor2.loads(msg.payload)
    assert claims[1] == "VN/customs" and claims[2] == "0312345678" and claims[6] == T0 + 200 and claims[4] == T0 + 9000
    assert attestation_from_map(claims[CLAIM_ATTESTATION]) == certificate_of_origin()
    # A different key does not verify it.
    msg.key = OKPKey(crv=Ed25519, x=public_key_of(net.keys["TH/doa"]))
    assert not msg.verify_signature()


def foreign_credential(net: Net, issuer: str, profile: object, *, tamper: bool = False) -> bytes:
    key = net.keys[issuer]
    # pycose and cbor2 write the claims map in insertion order, which is not bytewise order.
    claims = {CLAIM_ATTESTATION: attestation_to_map(profile), 7: b"\x42" * 16, 6: T0 + 200, 1: issuer,
              4: T0 + 90000, 3: "TH customs"}
    payload = cbor2.dumps(claims)
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: key_id(public_key_of(key))}, payload=payload)
    msg.key = OKPKey(crv=Ed25519, x=public_key_of(key), d=bytes(key))
    data: bytes = msg.encode(tag=True)
    if tamper:
        data = data.replace(b"Mekong Rice", b"Mekong Rica")
    return data


def test_pycose_credential_verifies_here(net: Net) -> None:
    data = foreign_credential(net, "VN/customs", certificate_of_origin())
    cred = UnverifiedCredential.decode(data)
    assert cred.claims.attestation == certificate_of_origin() and cred.claims.exp == T0 + 90000
    report = verify(data, net.view(), VerificationPolicy("TH"), NOW)
    assert (report.indication, report.sub_indication) == ("TOTAL-PASSED", None), report.render_text()


def test_pycose_credential_is_judged_by_the_ledger(net: Net) -> None:
    # Well signed, but CN wants high and the business registry is substantial.
    data = foreign_credential(net, "VN/business-registry", legal_entity())
    report = verify(data, net.view(), VerificationPolicy("CN"), NOW)
    assert (report.indication, report.sub_indication) == ("INDETERMINATE", "CHAIN_CONSTRAINTS_FAILURE")
    tampered = foreign_credential(net, "VN/customs", certificate_of_origin(), tamper=True)
    report = verify(tampered, net.view(), VerificationPolicy("TH"), NOW)
    assert (report.indication, report.sub_indication) == ("TOTAL-FAILED", "SIG_CRYPTO_FAILURE")


def test_pycose_duplicate_claims_are_refused(net: Net) -> None:
    key = net.keys["VN/customs"]
    good = cbor2.dumps({1: "VN/customs", 6: T0 + 200, 7: b"c" * 16,
                        CLAIM_ATTESTATION: attestation_to_map(certificate_of_origin())})
    payload = b"\xa5" + good[1:] + cbor2.dumps(1)[0:1] + cbor2.dumps("TH/doa")  # iss twice
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: key_id(public_key_of(key))}, payload=payload)
    msg.key = OKPKey(crv=Ed25519, x=public_key_of(key), d=bytes(key))
    report = verify(msg.encode(tag=True), net.view(), VerificationPolicy("TH"), NOW)
    assert (report.indication, report.sub_indication) == ("TOTAL-FAILED", "FORMAT_FAILURE")
    assert "duplicate map key 1" in report.checks[0].detail
