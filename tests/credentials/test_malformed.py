"""Malformed input of every kind gives FORMAT_FAILURE with a clear message, never an exception."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import nacl.signing
import pytest
from cred_helpers import T0, Net, certificate_of_origin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credentials.cwt import CLAIM_ATTESTATION, Claims, CredentialLimits, UnverifiedCredential
from credentials.issue import issue_credential
from credentials.profiles import attestation_to_map
from credentials.report import SUB_INDICATIONS, TOTAL_FAILED
from credentials.verify import VerificationPolicy, verify
from ledger import cbor, cose
from ledger.errors import DecodeError
from ledger.keys import key_id, public_key_of

NOW = T0 + 1000
KEY = nacl.signing.SigningKey(b"m" * 32)
KID = key_id(public_key_of(KEY))
CLAIMS = {1: "VN/customs", 6: T0 + 200, 7: b"c" * 16, CLAIM_ATTESTATION: attestation_to_map(certificate_of_origin())}


def signed(payload: bytes, **kw: Any) -> bytes:
    kw.setdefault("kid", KID)
    return cose.sign1(payload, KEY, **kw)


def without(claim: int) -> bytes:
    return signed(cbor.encode({k: v for k, v in CLAIMS.items() if k != claim}))


def att(**changes: Any) -> dict[str, Any]:
    return {**CLAIMS[CLAIM_ATTESTATION], **changes}


GOOD = signed(cbor.encode(CLAIMS))
PAYLOAD = cbor.encode(CLAIMS)


def raw_sign1(protected: bytes, unprotected: bytes, payload: bytes, signature: bytes, tag: bytes = b"\xd2") -> bytes:
    return tag + b"\x84" + protected + unprotected + payload + signature


def bstr(b: bytes) -> bytes:
    return cbor.encode(b)


PROT = bstr(cbor.encode({1: -8, 4: KID}))
SIG = bstr(b"\x00" * 64)

CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "it looks like an empty file"),
    ("one-byte", lambda: b"\xd2", "truncated"),
    ("truncated-in-signature", lambda: GOOD[:-10], "truncated"),
    ("truncated-in-payload", lambda: GOOD[:60], "truncated"),
    ("trailing-garbage", lambda: GOOD + b"\x00", "trailing"),
    ("wrong-tag-mac0", lambda: b"\xd1" + GOOD[1:], "tag"),
    ("wrong-tag-98", lambda: b"\xd8\x62" + GOOD[1:], "tag"),
    ("not-an-array", lambda: cbor.encode({"a": 1}), "array of 4"),
    ("array-of-3", lambda: b"\xd2\x83" + PROT + b"\xa0" + SIG, "array of 4"),
    ("protected-not-bstr", lambda: raw_sign1(b"\xa0", b"\xa0", bstr(PAYLOAD), SIG), "protected header"),
    ("payload-text", lambda: raw_sign1(PROT, b"\xa0", cbor.encode("x"), SIG), "payload"),
    ("signature-63-bytes", lambda: raw_sign1(PROT, b"\xa0", bstr(PAYLOAD), bstr(b"\x00" * 63)), "64 bytes"),
    ("alg-es256", lambda: raw_sign1(bstr(cbor.encode({1: -7, 4: KID})), b"\xa0", bstr(PAYLOAD), SIG), "EdDSA"),
    ("no-alg", lambda: raw_sign1(bstr(cbor.encode({4: KID})), b"\xa0", bstr(PAYLOAD), SIG), "EdDSA"),
    ("crit-header", lambda: raw_sign1(bstr(cbor.encode({1: -8, 2: [99], 4: KID})), b"\xa0", bstr(PAYLOAD), SIG),
     "crit"),
    ("kid-text", lambda: raw_sign1(bstr(cbor.encode({1: -8, 4: "kid"})), b"\xa0", bstr(PAYLOAD), SIG), "kid"),
    ("no-kid", lambda: signed(PAYLOAD, kid=None), "no kid"),
    ("detached-payload", lambda: signed(PAYLOAD, detached=True), "detached"),
    ("oversized", lambda: signed(cbor.encode({**CLAIMS, 8: b"\x00" * 70000})), "exceeds the limit"),
    ("payload-not-cbor", lambda: signed(b"\xff\xff"), "credential payload"),
    ("payload-array", lambda: signed(cbor.encode([1, 2])), "must be a map"),
    ("duplicate-claim", lambda: signed(b"\xa5" + PAYLOAD[1:] + b"\x01\x61x"), "duplicate map key 1"),
    ("duplicate-attestation-field", lambda: signed(
        cbor.encode({**CLAIMS, CLAIM_ATTESTATION: {}})[:-1] + b"\xa2\x64type\x61x\x64type\x61y"),
     "duplicate map key 'type'"),
    ("indefinite-map", lambda: signed(b"\xbf\x01\x61x\xff"), "indefinite"),
    ("non-shortest-int", lambda: signed(b"\xa1\x18\x01\x01"), "non-shortest"),
    ("float-iat", lambda: signed(PAYLOAD.replace(cbor.encode(T0 + 200), b"\xfb\x41\xd9\x54\xfc\x73\x00\x00\x00")),
     "floating-point"),
    ("bignum-tag", lambda: signed(b"\xa1\x06\xc2\x41\x01"), "unexpected tag"),
    ("invalid-utf8", lambda: signed(b"\xa1\x01\x62\xc3\x28"), "UTF-8"),
    ("too-deep", lambda: signed(b"\xa1\x08" + b"\x81" * 40 + b"\x00"), "nesting"),
    ("missing-iss", lambda: without(1), "iss"),
    ("missing-iat", lambda: without(6), "iat"),
    ("missing-cti", lambda: without(7), "cti"),
    ("missing-attestation", lambda: without(CLAIM_ATTESTATION), "attestation claim"),
    ("iss-int", lambda: signed(cbor.encode({**CLAIMS, 1: 5})), "iss"),
    ("iat-text", lambda: signed(cbor.encode({**CLAIMS, 6: "yesterday"})), "iat"),
    ("iat-negative", lambda: signed(cbor.encode({**CLAIMS, 6: -5})), "iat"),
    ("cti-text", lambda: signed(cbor.encode({**CLAIMS, 7: "id"})), "cti"),
    ("cti-too-long", lambda: signed(cbor.encode({**CLAIMS, 7: b"x" * 65})), "cti"),
    ("exp-before-iat", lambda: signed(cbor.encode({**CLAIMS, 4: T0 + 100})), "exp"),
    ("sub-bytes", lambda: signed(cbor.encode({**CLAIMS, 2: b"sub"})), "sub"),
    ("attestation-not-map", lambda: signed(cbor.encode({**CLAIMS, CLAIM_ATTESTATION: "coo"})), "attestation"),
    ("attestation-bad-field", lambda: signed(cbor.encode({**CLAIMS, CLAIM_ATTESTATION: att(agreement=7)})),
     "agreement"),
    ("content-type-json", lambda: signed(PAYLOAD, content_type="application/json"), "not a CWT"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_credential_is_format_failure(net: Net, make: Callable[[], bytes], message: str) -> None:
    data = make()
    with pytest.raises(DecodeError, match=message):
        UnverifiedCredential.decode(data)
    report = verify(data, net.view(), VerificationPolicy("TH"), NOW)
    assert (report.indication, report.sub_indication) == (TOTAL_FAILED, "FORMAT_FAILURE")
    assert message.lower() in report.checks[0].detail.lower()
    assert [c.step for c in report.checks] == ["1"]


def test_the_good_one_decodes() -> None:
    cred = UnverifiedCredential.decode(GOOD)
    assert cred.kid == KID and cred.claims.iss == "VN/customs" and cred.claims.document_type == "certificate-of-origin"
    assert Claims.from_map(cbor.decode(PAYLOAD)) == cred.claims


def test_unknown_claims_are_ignored_and_keys_may_come_in_any_order() -> None:
    reordered = b"".join([b"\xa5", cbor.encode(7), cbor.encode(b"c" * 16), cbor.encode(CLAIM_ATTESTATION),
                          cbor.encode(CLAIMS[CLAIM_ATTESTATION]), cbor.encode(6), cbor.encode(T0 + 200),
                          cbor.encode(1), cbor.encode("VN/customs"), cbor.encode(3), cbor.encode("aud")])
    assert UnverifiedCredential.decode(signed(reordered)).claims == UnverifiedCredential.decode(GOOD).claims


def test_limits_are_configurable() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        UnverifiedCredential.decode(GOOD, CredentialLimits(max_size=100))
    with pytest.raises(DecodeError, match="nesting"):
        UnverifiedCredential.decode(GOOD, CredentialLimits(max_payload_depth=2))


# --------------------------------------------------------------------------- random and mutated bytes


def _check_report(data: bytes, view: Any) -> None:
    report = verify(data, view, VerificationPolicy("TH"), NOW)
    assert report.indication in ("TOTAL-PASSED", "TOTAL-FAILED", "INDETERMINATE")
    assert report.sub_indication is None or report.indication in SUB_INDICATIONS[report.sub_indication]
    report.to_json()
    report.render_text()


@pytest.fixture(scope="module")
def fixed_net() -> tuple[Net, bytes]:
    n = Net()
    return n, issue_credential(certificate_of_origin(), "VN/customs", n.keys["VN/customs"], T0 + 200, exp=T0 + 5000,
                               sub="0312345678")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_random_bytes_never_raise(fixed_net: tuple[Net, bytes], data: bytes) -> None:
    _check_report(data, fixed_net[0].view())


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_credentials_never_raise_and_never_pass_changed(fixed_net: tuple[Net, bytes], data: Any) -> None:
    net, good = fixed_net
    b = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if kind == "flip" and b:
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and b:
            b[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            b[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and b:
            del b[pos:pos + data.draw(st.integers(1, 8))]
        elif kind == "truncate":
            del b[pos:]
    mutated = bytes(b)
    report = verify(mutated, net.view(), VerificationPolicy("TH"), T0 + 1000)
    if report.indication == "TOTAL-PASSED" and mutated != good:
        # Only the unsigned parts may differ: the signed fields must be those of the good credential.
        a, m = cose.UnverifiedSign1.decode(good), UnverifiedCredential.decode(mutated).sign1
        assert (a.protected, a.payload, a.signature) == (m.protected, m.payload, m.signature)
    _check_report(mutated, net.view())


def test_random_claims_sets_never_raise(fixed_net: tuple[Net, bytes]) -> None:
    net, _ = fixed_net
    rnd = os.urandom
    for i in range(200):
        payload = cbor.encode({1: "VN/customs", 6: i, 7: rnd(i % 70), CLAIM_ATTESTATION: {"type": "e-invoice",
                               "invoice_number": rnd(3).hex(), "total_with_tax": i}})
        _check_report(signed(payload), net.view())
