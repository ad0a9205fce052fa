"""Tests for ledger.cose: COSE_Sign1 with EdDSA (specs/02-cose.md).

Vectors from tests/vectors/cose_sign1_eddsa.json (cose-wg/Examples), interop with pycose in
both directions, named negative cases, and hypothesis mutation of valid messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from ledger import cbor, cose
from ledger.cbor import Tag
from ledger.cose import SIGN1_LIMITS, Sign1, UnverifiedSign1, sign1
from ledger.errors import DecodeError, VerificationError
from ledger.keys import verify_ed25519

COSE = json.loads((Path(__file__).parents[1] / "vectors" / "cose_sign1_eddsa.json").read_text("utf-8"))
SIGN1_VEC = next(v for v in COSE["vectors"] if "sig-01" in v["file"])
SIGN_VEC = next(v for v in COSE["vectors"] if v["file"].endswith("eddsa-01.json"))

SEED = bytes.fromhex(SIGN1_VEC["key"]["d"])
KEY = nacl.signing.SigningKey(SEED)
PUB = bytes.fromhex(SIGN1_VEC["key"]["x"])
OTHER = nacl.signing.SigningKey(b"\x07" * 32)
OTHER_PUB = bytes(OTHER.verify_key)
PAYLOAD = b"an entry payload"


def _flip(b: bytes, i: int, bit: int = 0) -> bytes:
    out = bytearray(b)
    out[i] ^= 1 << bit
    return bytes(out)


def _parts(msg: bytes) -> list[Any]:
    """The four elements of a tagged COSE_Sign1 made by sign1."""
    value = cbor.decode(msg, SIGN1_LIMITS)
    assert isinstance(value, Tag) and value.tag == 18
    return list(value.value)


def _raw_sign(protected: bytes, payload: bytes, key: nacl.signing.SigningKey = KEY, aad: bytes = b"") -> bytes:
    return key.sign(cbor.encode(["Signature1", protected, aad, payload])).signature


def _message(protected: dict[Any, Any] | bytes, unprotected: Any = None, payload: Any = PAYLOAD,
             signature: bytes | None = None, tag: int | None = 18, extra: list[Any] | None = None) -> bytes:
    """Build a (possibly malformed) message, properly signed unless ``signature`` is given."""
    prot = protected if isinstance(protected, bytes) else cbor.encode(protected)
    if signature is None:
        signature = _raw_sign(prot, payload if isinstance(payload, bytes) else b"")
    arr = [prot, {} if unprotected is None else unprotected, payload, signature] + (extra or [])
    return cbor.encode(arr if tag is None else Tag(tag, arr))


# --------------------------------------------------------------------------- cose-wg/Examples


def test_eddsa_sig_01_reproduced_byte_exact() -> None:
    v = SIGN1_VEC
    payload = bytes.fromhex(v["payload_hex"])
    msg = sign1(payload, KEY, protected={3: 0}, unprotected={4: b"11"})
    assert msg.hex() == v["expected_cbor_hex"]
    u = UnverifiedSign1.decode(msg)
    assert u.protected.hex() == v["protected_header_hex"]
    assert u.to_be_signed().hex() == v["to_be_signed_hex"]
    assert u.signature.hex() == v["signature_hex"]
    assert (u.alg, u.kid, u.content_type) == (-8, b"11", 0)
    verified = u.verify(PUB)
    assert isinstance(verified, Sign1) and not isinstance(verified, UnverifiedSign1)
    assert verified.payload == payload == v["payload"].encode()
    assert verified.raw == msg


def test_eddsa_sig_01_vector_key_matches_rfc8032_test_1() -> None:
    assert bytes(KEY.verify_key) == PUB


def test_eddsa_01_cose_sign_signature_verifies_via_rebuilt_sig_structure() -> None:
    """COSE_Sign (tag 98) is not implemented; its one signature is checked by hand (RFC 9052 4.4)."""
    v = SIGN_VEC
    msg = bytes.fromhex(v["expected_cbor_hex"])
    value = cbor.decode(msg, cbor.CborLimits(allowed_tags=frozenset({98})))
    assert isinstance(value, Tag) and value.tag == 98
    body_protected, body_unprotected, payload, signatures = value.value
    assert (body_protected.hex(), body_unprotected, payload.hex()) == (
        v["body_protected_header_hex"], {}, v["payload_hex"])
    [[sign_protected, sign_unprotected, signature]] = signatures
    assert sign_protected.hex() == v["signer_protected_header_hex"]
    assert sign_unprotected == {4: b"11"}
    assert cbor.decode(sign_protected) == {1: -8}
    tbs = cbor.encode(["Signature", body_protected, sign_protected, b"", payload])
    assert tbs.hex() == v["to_be_signed_hex"]
    verify_ed25519(PUB, tbs, signature)
    assert KEY.sign(tbs).signature == signature == bytes.fromhex(v["signature_hex"])
    with pytest.raises(VerificationError):
        verify_ed25519(PUB, _flip(tbs, len(tbs) - 1), signature)
    # And it is not a COSE_Sign1.
    with pytest.raises(DecodeError):
        UnverifiedSign1.decode(msg)


# --------------------------------------------------------------------------- signing profile


def test_default_profile_puts_alg_kid_and_content_type_in_protected_header() -> None:
    msg = sign1(PAYLOAD, KEY, kid=b"kid-1", content_type="application/cbor")
    prot, unprot, payload, sig = _parts(msg)
    assert cbor.decode(prot) == {1: -8, 3: "application/cbor", 4: b"kid-1"}
    assert prot == cbor.encode({1: -8, 3: "application/cbor", 4: b"kid-1"})  # deterministic
    assert (unprot, payload, len(sig)) == ({}, PAYLOAD, 64)
    u = UnverifiedSign1.decode(msg)
    assert (u.alg, u.kid, u.content_type) == (-8, b"kid-1", "application/cbor")
    assert u.verify(PUB).payload == PAYLOAD


def test_untagged_message_decodes_and_verifies() -> None:
    msg = sign1(PAYLOAD, KEY, tagged=False)
    assert msg[0] == 0x84
    assert UnverifiedSign1.decode(msg).verify(PUB).payload == PAYLOAD
    assert msg == cbor.encode(_parts(sign1(PAYLOAD, KEY)))


def test_signing_is_deterministic() -> None:
    assert sign1(PAYLOAD, KEY, kid=b"k") == sign1(PAYLOAD, KEY, kid=b"k")


def test_external_aad_is_bound() -> None:
    msg = sign1(PAYLOAD, KEY, external_aad=b"context")
    u = UnverifiedSign1.decode(msg)
    assert u.verify(PUB, external_aad=b"context").payload == PAYLOAD
    with pytest.raises(VerificationError):
        u.verify(PUB)
    with pytest.raises(VerificationError):
        u.verify(PUB, external_aad=b"other")


def test_detached_payload() -> None:
    msg = sign1(PAYLOAD, KEY, kid=b"k", detached=True)
    u = UnverifiedSign1.decode(msg)
    assert u.payload is None
    with pytest.raises(DecodeError, match="detached and none was given"):
        u.verify(PUB)
    verified = u.verify(PUB, detached_payload=PAYLOAD)
    assert verified.payload == PAYLOAD
    with pytest.raises(VerificationError):
        u.verify(PUB, detached_payload=PAYLOAD + b"x")
    with pytest.raises(VerificationError):
        u.verify(OTHER_PUB, detached_payload=PAYLOAD)


def test_attached_payload_refuses_a_detached_payload_too() -> None:
    """A caller verifying a document must not be handed a message that signs something else."""
    u = UnverifiedSign1.decode(sign1(b"something else", KEY))
    with pytest.raises(DecodeError, match="attached"):
        u.verify(PUB, detached_payload=PAYLOAD)


def test_empty_payload_is_not_detached() -> None:
    u = UnverifiedSign1.decode(sign1(b"", KEY))
    assert u.payload == b""
    assert u.verify(PUB).payload == b""


# --------------------------------------------------------------------------- pycose interop


def _pycose_key(public: bytes, seed: bytes | None = None) -> OKPKey:
    return OKPKey(crv=Ed25519, x=public, d=seed) if seed else OKPKey(crv=Ed25519, x=public)


def test_pycose_verifies_our_message() -> None:
    msg = sign1(PAYLOAD, KEY, kid=b"kid-1", content_type="application/cbor")
    decoded = Sign1Message.decode(msg)
    assert decoded.payload == PAYLOAD
    assert decoded.phdr[KID] == b"kid-1" and decoded.phdr[Algorithm] is EdDSA
    decoded.key = _pycose_key(PUB)
    assert decoded.verify_signature() is True
    decoded.key = _pycose_key(OTHER_PUB)
    assert decoded.verify_signature() is False


def test_pycose_verifies_our_detached_message() -> None:
    decoded = Sign1Message.decode(sign1(PAYLOAD, KEY, detached=True))
    decoded.key = _pycose_key(PUB)
    assert decoded.verify_signature(detached_payload=PAYLOAD) is True
    assert decoded.verify_signature(detached_payload=PAYLOAD + b"x") is False


@pytest.mark.parametrize(("phdr", "uhdr"), [
    pytest.param({Algorithm: EdDSA}, {}, id="alg-only"),
    pytest.param({Algorithm: EdDSA, KID: b"kid-1"}, {}, id="kid-protected"),
    pytest.param({Algorithm: EdDSA}, {KID: b"kid-1"}, id="kid-unprotected"),
    pytest.param({Algorithm: EdDSA, ContentType: 60}, {KID: b"kid-1"}, id="content-type"),
])
def test_pycose_message_verifies_with_us(phdr: dict[Any, Any], uhdr: dict[Any, Any]) -> None:
    m = Sign1Message(phdr=phdr, uhdr=uhdr, payload=PAYLOAD)
    m.key = _pycose_key(PUB, SEED)
    data = m.encode()
    u = UnverifiedSign1.decode(data)
    verified = u.verify(PUB)
    assert verified.payload == PAYLOAD
    assert verified.raw == data
    if KID in phdr or KID in uhdr:
        assert verified.kid == b"kid-1"
    with pytest.raises(VerificationError):
        u.verify(OTHER_PUB)


def test_pycose_message_with_external_aad() -> None:
    m = Sign1Message(phdr={Algorithm: EdDSA}, payload=PAYLOAD, external_aad=b"aad")
    m.key = _pycose_key(PUB, SEED)
    u = UnverifiedSign1.decode(m.encode())
    assert u.verify(PUB, external_aad=b"aad").payload == PAYLOAD
    with pytest.raises(VerificationError):
        u.verify(PUB)


# --------------------------------------------------------------------------- negative cases

VALID = sign1(PAYLOAD, KEY, kid=b"kid-1", content_type=0)
PROT = _parts(VALID)[0]
SIG = _parts(VALID)[3]


def test_valid_baseline() -> None:
    assert UnverifiedSign1.decode(VALID).verify(PUB).payload == PAYLOAD


def test_wrong_key() -> None:
    with pytest.raises(VerificationError):
        UnverifiedSign1.decode(VALID).verify(OTHER_PUB)


@pytest.mark.parametrize("bad_key", [
    pytest.param(PUB[:31], id="31-bytes"), pytest.param(PUB + b"\x00", id="33-bytes"),
    pytest.param(PUB.hex(), id="text"), pytest.param(None, id="none"),
])
def test_malformed_verification_key(bad_key: Any) -> None:
    with pytest.raises(VerificationError):
        UnverifiedSign1.decode(VALID).verify(bad_key)


def _flip_protected_kid() -> bytes:
    prot, unprot, payload, sig = _parts(VALID)
    i = prot.index(b"kid-1") + 4
    return cbor.encode(Tag(18, [_flip(prot, i), unprot, payload, sig]))


VERIFY_FAILURES = {
    "flipped-bit-protected-kid": _flip_protected_kid(),
    "flipped-bit-protected-content-type": cbor.encode(Tag(18, [
        cbor.encode({1: -8, 3: 1, 4: b"kid-1"}), {}, PAYLOAD, SIG])),
    "flipped-bit-payload-first": cbor.encode(Tag(18, [PROT, {}, _flip(PAYLOAD, 0), SIG])),
    "flipped-bit-payload-last": cbor.encode(Tag(18, [PROT, {}, _flip(PAYLOAD, len(PAYLOAD) - 1, 7), SIG])),
    "payload-truncated": cbor.encode(Tag(18, [PROT, {}, PAYLOAD[:-1], SIG])),
    "payload-emptied": cbor.encode(Tag(18, [PROT, {}, b"", SIG])),
    "flipped-bit-signature-R": cbor.encode(Tag(18, [PROT, {}, PAYLOAD, _flip(SIG, 0)])),
    "flipped-bit-signature-S": cbor.encode(Tag(18, [PROT, {}, PAYLOAD, _flip(SIG, 40, 3)])),
    "flipped-bit-signature-last": cbor.encode(Tag(18, [PROT, {}, PAYLOAD, _flip(SIG, 63, 7)])),
    "zero-signature": cbor.encode(Tag(18, [PROT, {}, PAYLOAD, b"\x00" * 64])),
    "signed-by-other-key": sign1(PAYLOAD, OTHER, kid=b"kid-1", content_type=0),
    "signature-from-other-message": cbor.encode(Tag(18, [PROT, {}, PAYLOAD, _parts(sign1(b"x", KEY))[3]])),
    "signed-with-external-aad": sign1(PAYLOAD, KEY, kid=b"kid-1", external_aad=b"aad"),
}


@pytest.mark.parametrize("data", list(VERIFY_FAILURES.values()), ids=list(VERIFY_FAILURES))
def test_decodes_but_does_not_verify(data: bytes) -> None:
    u = UnverifiedSign1.decode(data)
    with pytest.raises(VerificationError):
        u.verify(PUB)


DECODE_FAILURES: dict[str, tuple[bytes, str]] = {
    "alg-es256": (sign1(PAYLOAD, KEY, protected={1: -7}), "alg must be EdDSA"),
    "alg-text-EdDSA": (sign1(PAYLOAD, KEY, protected={1: "EdDSA"}), "alg must be EdDSA"),
    "alg-missing": (_message({4: b"k"}), "alg must be EdDSA"),
    "alg-only-unprotected": (_message(b"", {1: -8}), "alg must be EdDSA"),
    "empty-protected": (_message(b""), "alg must be EdDSA"),
    "array-3-items": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD])), "array of 4"),
    "array-5-items": (_message({1: -8}, extra=[b""]), "array of 4"),
    "array-0-items": (cbor.encode(Tag(18, [])), "array of 4"),
    "not-an-array": (cbor.encode(Tag(18, {1: 2})), "array of 4"),
    "bare-bytes": (cbor.encode(PAYLOAD), "array of 4"),
    "wrong-tag-98": (_message({1: -8}, tag=98), "unexpected tag 98"),
    "wrong-tag-17-mac0": (_message({1: -8}, tag=17), "unexpected tag 17"),
    "double-tag-18": (cbor.encode(Tag(18, Tag(18, [PROT, {}, PAYLOAD, SIG]))), "array of 4"),
    "protected-is-map-not-bstr": (cbor.encode(Tag(18, [{1: -8}, {}, PAYLOAD, SIG])), "protected header must be a byte"),
    "protected-not-a-map": (_message(cbor.encode([1, -8])), "protected header is not a map"),
    "protected-is-int": (_message(cbor.encode(-8)), "protected header is not a map"),
    "protected-garbage": (_message(b"\xa1\x01"), "CBOR"),
    "protected-trailing-bytes": (_message(PROT + b"\x00"), "trailing"),
    "protected-float": (_message(b"\xa2\x01\x27\x03\xf9\x3c\x00"), "floating-point"),
    "protected-duplicate-label": (_message(b"\xa2\x01\x27\x01\x27"), "duplicate map key"),
    "unprotected-not-a-map": (cbor.encode(Tag(18, [PROT, [], PAYLOAD, SIG])), "unprotected header must be a map"),
    "unprotected-duplicate-label": (_message({1: -8}, {4: b"k", 5: b"k"}).replace(
        b"\xa2\x04\x41k\x05\x41k", b"\xa2\x04\x41k\x04\x41k"), "duplicate map key 4"),
    "unprotected-duplicate-after-unsorted": (_message({1: -8}, {4: b"k", 5: 0, "b": 1}).replace(
        b"\xa3\x04\x41k\x05\x00\x61b\x01", b"\xa3\x61b\x01\x04\x41k\x61b\x02"), "duplicate map key 'b'"),
    "unprotected-nested-non-shortest": (_message({1: -8}, {"b": 1, 4: b"k"}).replace(
        b"\xa2\x04\x41k\x61b\x01", b"\xa2\x61b\x18\x01\x04\x41k"), "non-shortest"),
    "payload-text": (_message({1: -8}, payload="text"), "payload must be a byte string or nil"),
    "payload-int": (_message({1: -8}, payload=5), "payload must be a byte string or nil"),
    "signature-text": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD, "sig"])), "signature must be a byte string"),
    "signature-nil": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD, None])), "signature must be a byte string"),
    "signature-63-bytes": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD, SIG[:63]])), "64 bytes, got 63"),
    "signature-65-bytes": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD, SIG + b"\x00"])), "64 bytes, got 65"),
    "signature-empty": (cbor.encode(Tag(18, [PROT, {}, PAYLOAD, b""])), "64 bytes, got 0"),
    "kid-text-protected": (sign1(PAYLOAD, KEY, protected={4: "kid-1"}), "kid must be a byte string"),
    "kid-int-unprotected": (sign1(PAYLOAD, KEY, unprotected={4: 11}), "kid must be a byte string"),
    "kid-array": (sign1(PAYLOAD, KEY, protected={4: [b"k"]}), "kid must be a byte string"),
    "content-type-negative": (sign1(PAYLOAD, KEY, content_type=-1), "content type"),
    "content-type-bytes": (sign1(PAYLOAD, KEY, protected={3: b"json"}), "content type"),
    "content-type-bool": (sign1(PAYLOAD, KEY, protected={3: True}), "content type"),
    "kid-in-both-buckets": (sign1(PAYLOAD, KEY, kid=b"k", unprotected={4: b"k"}), "in both buckets"),
    "alg-in-both-buckets": (sign1(PAYLOAD, KEY, unprotected={1: -8}), "in both buckets"),
    "crit-protected": (sign1(PAYLOAD, KEY, protected={2: [99], 99: 1}), "crit"),
    "crit-unprotected": (sign1(PAYLOAD, KEY, unprotected={2: [99]}), "crit"),
    "trailing-garbage": (VALID + b"\x00", "trailing"),
    "truncated": (VALID[:-1], "truncated"),
    "empty-input": (b"", "truncated"),
    "indefinite-array": (b"\xd2\x9f" + VALID[2:] + b"\xff", "indefinite"),
    "non-shortest-tag": (b"\xd8\x12" + VALID[1:], "non-shortest"),
    "nested-unknown-tag": (sign1(PAYLOAD, KEY, unprotected={5: Tag(1, 0)}), "unexpected tag 1"),
    "too-deep": (sign1(PAYLOAD, KEY, unprotected={5: [[[[[[[[0]]]]]]]]}), "nesting deeper"),
}


@pytest.mark.parametrize(("data", "pattern"), list(DECODE_FAILURES.values()), ids=list(DECODE_FAILURES))
def test_decode_refuses(data: bytes, pattern: str) -> None:
    with pytest.raises(DecodeError, match=pattern):
        UnverifiedSign1.decode(data)


UNSORTED_UNPROTECTED = _message({1: -8}, {"b": 1, 4: b"k"}).replace(b"\xa2\x04\x41k\x61b\x01",
                                                                     b"\xa2\x61b\x01\x04\x41k")


def test_unprotected_header_key_order_is_free() -> None:
    """Spec 2.3.3: the unprotected map is not signed and never re-encoded; its labels may come in any order."""
    data = UNSORTED_UNPROTECTED
    assert b"\xa2\x61b\x01\x04\x41k" in data  # "b" (61 62) before 4 (04): not bytewise order
    u = UnverifiedSign1.decode(data)
    assert list(u.unprotected) == ["b", 4]  # wire order kept (spec 1.4.4)
    assert u.verify(PUB).kid == b"k"
    assert u.raw == data
    # A format that wants sorted unprotected headers passes deterministic limits.
    strict = cbor.CborLimits(max_size=1 << 20, max_depth=8, max_items=4096, allowed_tags=frozenset({18}))
    with pytest.raises(DecodeError, match="bytewise order"):
        UnverifiedSign1.decode(data, strict)


def test_only_the_unprotected_header_is_relaxed() -> None:
    """Every other element of the envelope is a byte string or nil, so nothing else loses a check."""
    assert SIGN1_LIMITS.deterministic is False
    # The protected header's bytes are what the signature covers, whatever order they hold.
    unsorted_protected = b"\xa2\x04\x41k\x01\x27"  # {4: h'6b', 1: -8}
    u = UnverifiedSign1.decode(_message(unsorted_protected))
    assert list(u.headers) == [4, 1] and u.protected == unsorted_protected
    u.verify(PUB)
    # A map in any other position is refused for its position, as before.
    with pytest.raises(DecodeError, match="protected header must be a byte string"):
        UnverifiedSign1.decode(cbor.encode(Tag(18, [{4: b"k", 1: -8}, {}, PAYLOAD, SIG])).replace(
            b"\xa2\x01\x27\x04\x41k", b"\xa2\x04\x41k\x01\x27"))


def test_pycose_message_with_two_unprotected_labels_verifies_with_us() -> None:
    """pycose writes header maps in insertion order; here the unprotected map is {4: kid, 3: 60}."""
    m = Sign1Message(phdr={Algorithm: EdDSA}, uhdr={KID: b"kid-1", ContentType: 60}, payload=PAYLOAD)
    m.key = _pycose_key(PUB, SEED)
    data = m.encode()
    assert b"\xa2\x04\x45kid-1\x03\x18\x3c" in data  # 4 before 3: not bytewise order
    u = UnverifiedSign1.decode(data)
    assert list(u.unprotected) == [4, 3]
    verified = u.verify(PUB)
    assert (verified.payload, verified.kid, verified.raw) == (PAYLOAD, b"kid-1", data)
    assert verified.content_type is None  # read from the protected map only (spec 2.3.5)
    with pytest.raises(VerificationError):
        u.verify(OTHER_PUB)


@pytest.mark.parametrize("data", [
    pytest.param("d28443a10127a0f6", id="str"), pytest.param(None, id="none"), pytest.param(18, id="int"),
])
def test_decode_refuses_non_bytes(data: Any) -> None:
    with pytest.raises(DecodeError):
        UnverifiedSign1.decode(data)


def test_kid_in_unprotected_is_not_covered_by_signature() -> None:
    """A kid in the unprotected bucket is only a hint: changing it keeps the signature valid."""
    a = sign1(PAYLOAD, KEY, unprotected={4: b"one"})
    b = cbor.encode(Tag(18, [_parts(a)[0], {4: b"two"}, PAYLOAD, _parts(a)[3]]))
    assert UnverifiedSign1.decode(b).verify(PUB).kid == b"two"


# --------------------------------------------------------------------------- hypothesis


@given(payload=st.binary(max_size=200), kid=st.one_of(st.none(), st.binary(max_size=32)),
       ctype=st.one_of(st.none(), st.integers(0, 65535), st.text(max_size=30)),
       aad=st.binary(max_size=20), tagged=st.booleans(), detached=st.booleans())
def test_sign_decode_verify_round_trip(payload: bytes, kid: bytes | None, ctype: Any, aad: bytes,
                                       tagged: bool, detached: bool) -> None:
    msg = sign1(payload, KEY, kid=kid, content_type=ctype, external_aad=aad, tagged=tagged, detached=detached)
    u = UnverifiedSign1.decode(msg)
    assert (u.alg, u.kid, u.content_type) == (-8, kid, ctype)
    verified = u.verify(PUB, external_aad=aad, detached_payload=payload if detached else None)
    assert verified.payload == payload
    assert verified.raw == msg
    with pytest.raises(VerificationError):
        u.verify(OTHER_PUB, external_aad=aad, detached_payload=payload if detached else None)


BASES = [
    VALID,
    sign1(PAYLOAD, KEY, tagged=False),
    sign1(b"", KEY, kid=b"k", detached=True),
    sign1(b"x" * 300, KEY, kid=b"kid", content_type="application/cwt", unprotected={5: b"iv", -1: [1, {"a": 2}]}),
]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@given(mutated_messages(), st.sampled_from([None, PAYLOAD, b""]))
def test_mutated_messages_fail_only_with_our_errors(data: bytes, detached: bytes | None) -> None:
    try:
        u = UnverifiedSign1.decode(data)
        u.verify(PUB, detached_payload=detached)
    except (DecodeError, VerificationError):
        pass


@given(st.binary(max_size=120))
def test_random_bytes_fail_only_with_our_errors(data: bytes) -> None:
    try:
        UnverifiedSign1.decode(data).verify(PUB)
    except (DecodeError, VerificationError):
        pass


@settings(max_examples=200)
@given(st.binary(max_size=300), st.binary(max_size=70_000), st.binary(max_size=40))
def test_sig_structure_equals_the_canonical_encoding(protected: bytes, payload: bytes, aad: bytes) -> None:
    # spec 2.1: the hot-path builder must give exactly cbor.encode(["Signature1", ...]).
    assert cose.sig_structure(protected, payload, aad) == cbor.encode(["Signature1", protected, aad, payload])
