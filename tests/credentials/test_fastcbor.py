"""The verifier's fast decoder agrees with ledger.cbor.decode and ledger.cose on every input."""

from __future__ import annotations

from typing import Any

import cbor2
import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from credentials import _fastcbor
from ledger import cbor, cose
from ledger.errors import DecodeError

LIMITS = [
    cbor.DEFAULT_LIMITS,
    cbor.CborLimits(deterministic=False),
    cbor.CborLimits(max_depth=3, deterministic=False),
    cbor.CborLimits(max_items=20),
    cbor.CborLimits(allowed_tags=frozenset({18, 61})),
]

keys = st.one_of(st.integers(-(2 ** 64), 2 ** 64 - 1), st.text(max_size=30))
scalars = st.one_of(st.integers(-(2 ** 64), 2 ** 64 - 1), st.binary(max_size=40), st.text(max_size=40),
                    st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)), max_leaves=30)


def outcome(fn: Any, data: bytes, limits: cbor.CborLimits) -> tuple[str, Any]:
    try:
        return "ok", fn(data, limits)
    except DecodeError as e:
        return "error", str(e)


def same(data: bytes) -> None:
    for limits in LIMITS:
        assert outcome(_fastcbor.decode, data, limits) == outcome(cbor.decode, data, limits)


@settings(max_examples=500, deadline=None)
@given(values)
def test_deterministic_encodings(value: Any) -> None:
    same(cbor.encode(value))


@settings(max_examples=300, deadline=None)
@given(values)
def test_cbor2_encodings_in_insertion_order(value: Any) -> None:
    same(cbor2.dumps(value))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    same(data)


@settings(max_examples=500, deadline=None)
@given(values, st.data())
def test_mutated_encodings(value: Any, draw: Any) -> None:
    b = bytearray(cbor.encode(value))
    for _ in range(draw.draw(st.integers(1, 3))):
        pos = draw.draw(st.integers(0, len(b)))
        op = draw.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set" and pos < len(b):
            b[pos] = draw.draw(st.integers(0, 255))
        elif op == "insert":
            b[pos:pos] = draw.draw(st.binary(min_size=1, max_size=4))
        elif pos < len(b):
            del b[pos]
    same(bytes(b))


NAMED = {
    "duplicate-key": b"\xa2\x01\x01\x01\x02",
    "duplicate-text-key": b"\xa2\x61a\x01\x61a\x02",
    "unsorted-keys": b"\xa2\x02\x01\x01\x02",
    "float": b"\xf9\x3c\x00",
    "undefined": b"\xf7",
    "simple-24": b"\xf8\x20",
    "tag-18": b"\xd2\x80",
    "tag-61": b"\xd8\x3d\x80",
    "indefinite-array": b"\x9f\xff",
    "non-shortest": b"\x18\x05",
    "bad-utf8": b"\x62\xc3\x28",
    "bytes-key": b"\xa1\x41\x00\x00",
    "array-key": b"\xa1\x80\x00",
    "deep": b"\x81" * 20 + b"\x00",
    "huge-length": b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    "trailing": b"\x00\x00",
    "empty": b"",
}


def test_named_cases() -> None:
    for name, data in NAMED.items():
        for limits in LIMITS:
            assert outcome(_fastcbor.decode, data, limits) == outcome(cbor.decode, data, limits), name


def test_long_inputs_take_the_general_path() -> None:
    data = cbor.encode([0] * 100)
    assert outcome(_fastcbor.decode, data, cbor.CborLimits(max_items=50)) == outcome(
        cbor.decode, data, cbor.CborLimits(max_items=50))


KEY = nacl.signing.SigningKey(b"f" * 32)


def sign1_outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        s = fn(data)
        return "ok", (s.protected, s.unprotected, s.payload, s.signature, s.headers, s.raw)
    except DecodeError as e:
        return "error", str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(min_size=16, max_size=16), st.binary(max_size=5)),
       st.booleans(), st.booleans(), st.data())
def test_sign1_agrees(payload: bytes, kid: bytes | None, tagged: bool, detached: bool, draw: Any) -> None:
    msg = cose.sign1(payload, KEY, kid=kid, tagged=tagged, detached=detached)
    variants = [msg, msg[:-1], msg + b"\x00"]
    b = bytearray(msg)
    pos = draw.draw(st.integers(0, len(b) - 1))
    b[pos] = draw.draw(st.integers(0, 255))
    variants.append(bytes(b))
    for data in variants:
        assert sign1_outcome(_fastcbor.decode_sign1, data) == sign1_outcome(cose.UnverifiedSign1.decode, data)


def test_sign1_with_unprotected_headers_and_content_type() -> None:
    for kw in ({"unprotected": {4: b"k" * 16}}, {"content_type": "application/cwt", "kid": b"k" * 16},
               {"content_type": 61, "kid": b"k" * 16}, {"protected": {2: [1]}, "kid": b"k"},
               {"unprotected": {1: -8}}, {"kid": b"k" * 16, "unprotected": {-65537: b"cred"}}):
        msg = cose.sign1(b"payload", KEY, **kw)  # type: ignore[arg-type]
        assert sign1_outcome(_fastcbor.decode_sign1, msg) == sign1_outcome(cose.UnverifiedSign1.decode, msg)
