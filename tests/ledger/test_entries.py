"""Entries (spec 6.1, 6.2): body round trips, field checks, strict decoding of untrusted bytes."""

from __future__ import annotations

import hashlib
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import cbor
from ledger import entries as E
from ledger.bodies import LOAS, WILDCARD, GovernanceAdopt
from ledger.cose import UnverifiedSign1, sign1
from ledger.entries import (
    ENTRY_CONTENT_TYPE,
    ENTRY_TYPES,
    MAX_ENTRY_SIZE,
    PAYLOAD_LIMITS,
    CredentialAnchor,
    CredentialStatus,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    PolicyRule,
    UnverifiedEntry,
    encode_payload,
    make_entry,
)
from ledger.errors import DecodeError
from ledger.keys import key_id, next_key_digest, public_key_of

KEY = nacl.signing.SigningKey(hashlib.sha256(b"test entries key").digest())
PUB = public_key_of(KEY)
KID = key_id(PUB)
T0 = 1_764_000_000

# --------------------------------------------------------------------------- strategies

member_ids = st.sampled_from(["VN", "TH", "KH", "LA", "MM", "CN"])
names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
issuer_ids = st.builds(lambda m, n: f"{m}/{n}", member_ids, names)
doc_types = st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True), min_size=1, max_size=5,
                     unique=True).map(tuple)
loas = st.sampled_from(LOAS)
times = st.integers(0, (1 << 63) - 1)
text = st.text(max_size=40)
keys = st.binary(min_size=32, max_size=32)
kids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)
ctis = st.binary(min_size=1, max_size=64)


@st.composite
def key_adds(draw: st.DrawFn) -> IssuerKeyAdd:
    start = draw(times)
    until = draw(st.none() | st.integers(start + 1, (1 << 63) - 1)) if start < (1 << 63) - 1 else None
    return IssuerKeyAdd(draw(issuer_ids), draw(keys), start, until, draw(st.none() | digests))


@st.composite
def updates(draw: st.DrawFn) -> IssuerUpdate:
    dt, loa, status = draw(st.none() | doc_types), draw(st.none() | loas), draw(st.sampled_from(
        [None, "active", "suspended"]))
    if dt is None and loa is None and status is None:
        status = "suspended"
    return IssuerUpdate(draw(issuer_ids), dt, loa, status, draw(text))


policy_rules = st.builds(PolicyRule, st.sampled_from(["*", "VN", "TH"]),
                         st.just((WILDCARD,)) | doc_types, loas)

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "issuer.register": st.builds(IssuerRegister, issuer_ids, st.text(min_size=1, max_size=40), doc_types, loas,
                                 st.text(min_size=1, max_size=10)),
    "issuer.update": updates(),
    "issuer.key.add": key_adds(),
    "issuer.key.rotate": st.builds(IssuerKeyRotate, issuer_ids, kids, keys, st.none() | times,
                                   st.none() | digests),
    "issuer.key.revoke": st.builds(IssuerKeyRevoke, issuer_ids, kids,
                                   st.sampled_from(["superseded", "compromised", "ceased"]), times),
    "credential.anchor": st.builds(CredentialAnchor, issuer_ids, digests, st.just("sha-256"), st.none() | ctis),
    "credential.status": st.builds(CredentialStatus, issuer_ids, ctis,
                                   st.sampled_from(["active", "suspended", "revoked"]), text),
    "member.policy": st.builds(MemberPolicy, st.lists(policy_rules, max_size=4).map(tuple)),
    "governance.adopt": st.builds(GovernanceAdopt, st.integers(2, (1 << 63) - 1), digests),
}


def test_table_covers_every_type() -> None:
    assert set(BODIES) == set(ENTRY_TYPES)
    for name, cls in ENTRY_TYPES.items():
        assert cls.TYPE == name


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("type_name", sorted(ENTRY_TYPES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(type_name: str, data: st.DataObject) -> None:
    body = data.draw(BODIES[type_name])
    log, time, root = data.draw(member_ids), data.draw(times), data.draw(st.integers(1, 1000))
    raw = make_entry(log, type_name, time, body, KEY, root=root)
    e = UnverifiedEntry.decode(raw)
    assert (e.log, e.type, e.time, e.root, e.body) == (log, type_name, time, root, body)
    assert e.raw is raw and e.kid == KID
    # The payload is the one deterministic encoding, and the body map round-trips on its own.
    assert e.sign1.payload == encode_payload(log, type_name, time, body, root=root)
    assert cbor.encode(cbor.decode(e.sign1.payload)) == e.sign1.payload
    assert type(body).from_map(cbor.decode(cbor.encode(body.to_map()))) == body
    # The envelope's layout match reads what the general COSE decoder reads, field by field.
    general = UnverifiedSign1.decode(raw)
    assert e.sign1 == general
    assert e.to_be_signed() == general.to_be_signed()
    general.verify(PUB)


def test_entry_layout() -> None:
    raw = make_entry("VN", "credential.anchor", T0, CredentialAnchor("VN/customs", bytes(32)), KEY)
    s1 = UnverifiedSign1.decode(raw)
    assert raw[0] == 0xD2  # tag 18
    assert s1.headers == {1: -8, 3: ENTRY_CONTENT_TYPE, 4: KID}
    assert s1.unprotected == {}
    payload = cbor.decode(s1.payload or b"")
    assert list(payload) == ["v", "log", "body", "root", "time", "type"]  # bytewise order of the keys
    assert payload["v"] == 1 and payload["root"] == 1


# --------------------------------------------------------------------------- field checks

BAD_BODIES = {
    "issuer-no-member": lambda: IssuerRegister("customs", "C", ("coo",), "high", "VN"),
    "issuer-lowercase-member": lambda: IssuerRegister("vn/customs", "C", ("coo",), "high", "VN"),
    "issuer-upper-name": lambda: IssuerRegister("VN/Customs", "C", ("coo",), "high", "VN"),
    "empty-name": lambda: IssuerRegister("VN/c", "", ("coo",), "high", "VN"),
    "no-document-types": lambda: IssuerRegister("VN/c", "C", (), "high", "VN"),
    "document-types-list": lambda: IssuerRegister("VN/c", "C", ["coo"], "high", "VN"),  # type: ignore[arg-type]
    "repeated-document-type": lambda: IssuerRegister("VN/c", "C", ("coo", "coo"), "high", "VN"),
    "wildcard-document-type": lambda: IssuerRegister("VN/c", "C", ("*",), "high", "VN"),
    "bad-loa": lambda: IssuerRegister("VN/c", "C", ("coo",), "medium", "VN"),
    "update-changes-nothing": lambda: IssuerUpdate("VN/c"),
    "update-bad-status": lambda: IssuerUpdate("VN/c", status="revoked"),
    "key-31-bytes": lambda: IssuerKeyAdd("VN/c", bytes(31), 0),
    "key-empty-window": lambda: IssuerKeyAdd("VN/c", bytes(32), 10, 10),
    "key-negative-time": lambda: IssuerKeyAdd("VN/c", bytes(32), -1),
    "key-bool-time": lambda: IssuerKeyAdd("VN/c", bytes(32), True),
    "key-huge-time": lambda: IssuerKeyAdd("VN/c", bytes(32), 1 << 63),
    "key-short-digest": lambda: IssuerKeyAdd("VN/c", bytes(32), 0, None, bytes(31)),
    "rotate-kid-32": lambda: IssuerKeyRotate("VN/c", bytes(32), bytes(32)),
    "revoke-bad-reason": lambda: IssuerKeyRevoke("VN/c", bytes(16), "lost", 0),
    "anchor-sha1": lambda: CredentialAnchor("VN/c", bytes(20), "sha-1"),
    "anchor-short-digest": lambda: CredentialAnchor("VN/c", bytes(31)),
    "anchor-empty-cti": lambda: CredentialAnchor("VN/c", bytes(32), "sha-256", b""),
    "status-bad": lambda: CredentialStatus("VN/c", b"1", "expired"),
    "status-long-cti": lambda: CredentialStatus("VN/c", bytes(65), "revoked"),
    "policy-rules-list": lambda: MemberPolicy([]),  # type: ignore[arg-type]
    "policy-rule-not-rule": lambda: MemberPolicy(({"member": "*"},)),  # type: ignore[arg-type]
    "rule-bad-member": lambda: PolicyRule("Viet Nam", ("*",), "low"),
    "rule-wildcard-mixed": lambda: PolicyRule("*", ("*", "coo"), "low"),
    "rule-bad-loa": lambda: PolicyRule("*", ("*",), "none"),
}


@pytest.mark.parametrize("make", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_refused(make: Any) -> None:
    with pytest.raises(DecodeError):
        make()


def test_policy_recognises() -> None:
    policy = MemberPolicy((PolicyRule("TH", ("coo",), "substantial"), PolicyRule("*", ("*",), "high")))
    def recognises(member: str, document_type: str, loa: str) -> bool:
        return any(r.covers(member, document_type, loa) for r in policy.rules)

    assert recognises("TH", "coo", "substantial")
    assert recognises("TH", "coo", "high")
    assert not recognises("TH", "coo", "low")
    assert not recognises("KH", "coo", "substantial")
    assert recognises("KH", "invoice", "high")


@pytest.mark.parametrize("args", [("vn", "credential.anchor", T0, 1), ("VN", "credential.nope", T0, 1),
                                  ("VN", "credential.anchor", -1, 1), ("VN", "credential.anchor", T0, 0),
                                  ("VN", "credential.status", T0, 1)],
                         ids=["bad-log", "unknown-type", "negative-time", "root-0", "body-of-other-type"])
def test_make_entry_refuses(args: tuple[Any, ...]) -> None:
    with pytest.raises(DecodeError):
        make_entry(*args[:3], CredentialAnchor("VN/c", bytes(32)), KEY, root=args[3])


# --------------------------------------------------------------------------- malformed entries

GOOD_PAYLOAD = {"v": 1, "log": "VN", "type": "credential.anchor", "time": T0, "root": 1,
                "body": {"issuer": "VN/c", "digest": bytes(32), "hash_alg": "sha-256", "credential_id": None}}
PROTECTED = {1: -8, 3: ENTRY_CONTENT_TYPE, 4: KID}


def _signed(payload: Any = None, **kw: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else cbor.encode(GOOD_PAYLOAD if payload is None else payload)
    kw.setdefault("protected", PROTECTED)
    return sign1(data, KEY, **kw)


def _with(**changes: Any) -> dict[str, Any]:
    p = dict(GOOD_PAYLOAD)
    for k, v in changes.items():
        if v is _DROP:
            del p[k]
        else:
            p[k] = v
    return p


def _body(**changes: Any) -> dict[str, Any]:
    b = dict(GOOD_PAYLOAD["body"])  # type: ignore[call-overload]
    b.update(changes)
    return _with(body=b)


_DROP = object()
_TIME0 = cbor.encode(_with(time=0))
_unsorted = b"\xa6" + b"".join(cbor.encode(k) + cbor.encode(GOOD_PAYLOAD[k])
                                for k in ("log", "v", "body", "root", "time", "type"))

MALFORMED = {
    "not-bytes": lambda: bytearray(_signed()),
    "empty": lambda: b"",
    "untagged": lambda: _signed(tagged=False),
    "wrong-tag": lambda: b"\xd1" + _signed()[1:],
    "trailing-garbage": lambda: _signed() + b"\x00",
    "truncated": lambda: _signed()[:-1],
    "too-large": lambda: _signed(_body(issuer="VN/" + "a" * 60)) + bytes(MAX_ENTRY_SIZE),
    "unprotected-header": lambda: _signed(unprotected={33: b"x"}),
    "extra-protected-header": lambda: _signed(protected={**PROTECTED, 33: 1}),
    "no-content-type": lambda: _signed(protected={1: -8, 4: KID}),
    "wrong-content-type": lambda: _signed(protected={**PROTECTED, 3: "application/cbor"}),
    "kid-17-bytes": lambda: _signed(protected={**PROTECTED, 4: KID + b"\x00"}),
    "kid-unprotected": lambda: _signed(protected={1: -8, 3: ENTRY_CONTENT_TYPE}, unprotected={4: KID}),
    "alg-es256": lambda: _signed(protected={**PROTECTED, 1: -7}),
    "detached": lambda: _signed(detached=True),
    "payload-not-map": lambda: _signed([1, 2]),
    "payload-not-cbor": lambda: _signed(b"\xff\x00"),
    "payload-unsorted-keys": lambda: _signed(_unsorted),
    "payload-non-shortest-int": lambda: _signed(_TIME0.replace(b"\x64time\x00", b"\x64time\x18\x05")),
    "payload-float": lambda: _signed(_TIME0.replace(b"\x64time\x00", b"\x64time\xfb" + bytes(8))),
    "payload-extra-key": lambda: _signed(_with(extra=1)),
    "payload-missing-root": lambda: _signed(_with(root=_DROP)),
    "version-2": lambda: _signed(_with(v=2)),
    "version-true": lambda: _signed(_with(v=True)),
    "unknown-type": lambda: _signed(_with(type="credential.burn")),
    "type-not-text": lambda: _signed(_with(type=7)),
    "log-lowercase": lambda: _signed(_with(log="vn")),
    "time-negative": lambda: _signed(_with(time=-5)),
    "time-text": lambda: _signed(_with(time="now")),
    "root-zero": lambda: _signed(_with(root=0)),
    "body-not-map": lambda: _signed(_with(body=[1])),
    "body-extra-key": lambda: _signed(_body(extra=1)),
    "body-missing-key": lambda: _signed(_with(body={"issuer": "VN/c", "digest": bytes(32), "hash_alg": "sha-256"})),
    "body-bad-digest": lambda: _signed(_body(digest=b"short")),
    "body-type-mismatch": lambda: _signed(_with(type="member.policy")),
    "policy-rules-not-list": lambda: _signed(_with(type="member.policy", body={"rules": {}})),
    "policy-rule-extra-key": lambda: _signed(_with(type="member.policy", body={"rules": [
        {"member": "*", "document_types": ["*"], "min_loa": "low", "x": 1}]})),
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_refused(make: Any) -> None:
    with pytest.raises(DecodeError):
        UnverifiedEntry.decode(make())


def test_malformed_message_names_problem() -> None:
    with pytest.raises(DecodeError, match="content type"):
        UnverifiedEntry.decode(_signed(protected={**PROTECTED, 3: "application/cbor"}))
    with pytest.raises(DecodeError, match="unprotected"):
        UnverifiedEntry.decode(_signed(unprotected={33: b"x"}))


def test_good_hand_made_entry_decodes() -> None:
    e = UnverifiedEntry.decode(_signed())
    assert e.body == CredentialAnchor("VN/c", bytes(32))


# --------------------------------------------------------------------------- fuzzing: only DecodeError escapes


_FIXED_BODIES: dict[str, Any] = {
    "issuer.register": IssuerRegister("VN/customs-coo", "Viet Nam Customs", ("certificate-of-origin",), "high", "VN"),
    "issuer.update": IssuerUpdate("VN/customs-coo", None, "substantial", "suspended", "audit"),
    "issuer.key.add": IssuerKeyAdd("VN/customs-coo", PUB, T0, T0 + 10**8, next_key_digest(PUB)),
    "issuer.key.rotate": IssuerKeyRotate("VN/customs-coo", KID, PUB, None, bytes(32)),
    "issuer.key.revoke": IssuerKeyRevoke("VN/customs-coo", KID, "compromised", T0 - 100),
    "credential.anchor": CredentialAnchor("VN/customs-coo", bytes(range(32)), "sha-256", b"cti-1"),
    "credential.status": CredentialStatus("VN/customs-coo", b"cti-1", "revoked", "withdrawn"),
    "member.policy": MemberPolicy((PolicyRule("*", ("*",), "high"), PolicyRule("TH", ("a", "b"), "low"))),
}
VALID = [make_entry("VN", n, T0 + i, b, KEY) for i, (n, b) in enumerate(_FIXED_BODIES.items())]


def _decode_or_refuse(data: bytes) -> UnverifiedEntry | None:
    try:
        return UnverifiedEntry.decode(data)
    except DecodeError:
        return None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    _decode_or_refuse(data)
    _decode_or_refuse(b"\xd2\x84" + data)
    _decode_or_refuse(VALID[5][:60] + data)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_entries_only_decode_error(raw: bytes, data: st.DataObject) -> None:
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and buf:
            del buf[at]
        elif op == "truncate":
            del buf[at:]
    e = _decode_or_refuse(bytes(buf))
    if e is not None:
        # Whatever decodes is exactly what the general decoders read from the same bytes.
        assert e.sign1 == UnverifiedSign1.decode(bytes(buf))
        assert repr(e.sign1.payload and cbor.decode(e.sign1.payload, PAYLOAD_LIMITS)) is not None


def test_large_payload_decodes() -> None:
    rules = tuple(PolicyRule("*", tuple(f"type-{i}-{j}" for j in range(8)), "low") for i in range(60))
    raw = make_entry("VN", "member.policy", T0, MemberPolicy(rules), KEY)
    assert len(UnverifiedSign1.decode(raw).payload or b"") > 4096
    assert UnverifiedEntry.decode(raw).body == MemberPolicy(rules)


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 4000])
def test_envelope_layout_at_every_head_width(size: int) -> None:
    """The layout match takes exactly the encoder's envelope, whatever the payload's head width."""
    raw = _signed(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))
    general = UnverifiedSign1.decode(raw)
    assert E._split_envelope(raw) == (general.protected, general.payload, general.signature)
    # The same fields with a non-shortest payload head, or one byte more or less, do not match.
    head = cbor.bstr_head(size)
    at = raw.index(head + (general.payload or b""), E._PAYLOAD_HEAD_AT)
    longer = b"\x59" + size.to_bytes(2, "big") if size < 0x100 else b"\x5a" + size.to_bytes(4, "big")
    for bad in (raw[:at] + longer + raw[at + len(head):], raw + b"\x00", raw[:-1], raw[:at] + raw[at + 1:]):
        assert E._split_envelope(bad) is None
        with pytest.raises(DecodeError):
            UnverifiedEntry.decode(bad)
