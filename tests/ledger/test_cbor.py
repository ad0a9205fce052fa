"""Tests for ledger.cbor: the deterministic encoder and the strict decoder (specs/01-encoding.md).

Vectors come from tests/vectors/cbor_deterministic.json (RFC 8949 section 4.2, the CBOR WG
CDE table, cbor2's canonical tests) and RFC 8949 Appendix A; negative cases are named.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import cbor
from ledger.cbor import CborLimits, Tag, decode, encode
from ledger.errors import DecodeError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "cbor_deterministic.json").read_text("utf-8"))
CDE_CASES = VECTORS["cde_examples"]["cases"]
UINT64_MAX = (1 << 64) - 1
RELAXED = CborLimits(deterministic=False)


def _id(case: dict[str, str]) -> str:
    return f"{case['kind']}-{case['encoding']}"


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types, so True never passes for 1 or a tuple for a list."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        # Keys are ints or text only, and an int never equals a str.
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Tag):
        return a.tag == b.tag and same(a.value, b.value)
    return bool(a == b)


# --------------------------------------------------------------------------- RFC 8949 4.2.1 key order


def _diag_key(diag: str) -> Any:
    """The eight keys of the RFC 8949 section 4.2.1 example, as Python values."""
    return {"10": 10, "100": 100, "-1": -1, '"z"': "z", '"aa"': "aa", "[100]": [100], "[-1]": [-1],
            "false": False}[diag]


ORDER = VECTORS["rfc8949_map_key_order"]
LENGTH_FIRST = VECTORS["rfc8949_length_first_order"]
EXAMPLE_MAP = bytes.fromhex(ORDER["example_map"]["encoding"])


@pytest.mark.parametrize("key", ORDER["sorted_keys"], ids=lambda k: k["key_diag"])
def test_rfc8949_example_key_encodings(key: dict[str, str]) -> None:
    assert encode(_diag_key(key["key_diag"])).hex() == key["encoding"]


def test_rfc8949_example_order_is_bytewise_order_of_encodings() -> None:
    encodings = [bytes.fromhex(k["encoding"]) for k in ORDER["sorted_keys"]]
    assert sorted(encodings) == encodings
    # The example map is those keys in that order, each mapped to 0.
    assert b"\xa8" + b"".join(e + b"\x00" for e in encodings) == EXAMPLE_MAP
    # The length-first order of section 4.2.3 is a different order of the same keys.
    lf = [bytes.fromhex(k["encoding"]) for k in LENGTH_FIRST["sorted_keys"]]
    assert sorted(lf, key=lambda e: (len(e), e)) == lf
    assert lf != encodings and set(lf) == set(encodings)


def test_rfc8949_example_map_encodes_byte_exact_within_data_model() -> None:
    """encode() sorts the example's integer and text keys exactly as the vector does.

    The array and false keys are outside our data model (spec 1.1), so the full map is
    checked through its key encodings above and refused as a whole below.
    """
    value = {"aa": 0, "z": 0, -1: 0, 100: 0, 10: 0}  # inserted in reverse order
    expected = bytes.fromhex("a5" + "".join(
        k["encoding"] + "00" for k in ORDER["sorted_keys"] if not k["key_diag"].startswith(("[", "f"))))
    assert encode(value) == expected == bytes.fromhex("a50a001864002000617a0062616100")
    assert same(decode(expected), {10: 0, 100: 0, -1: 0, "z": 0, "aa": 0})


def test_rfc8949_full_example_map_is_outside_the_data_model() -> None:
    with pytest.raises(ValueError, match="map keys"):
        encode({10: 0, 100: 0, -1: 0, "z": 0, "aa": 0, (100,): 0, (-1,): 0, False: 0})
    for limits in (cbor.DEFAULT_LIMITS, RELAXED):
        with pytest.raises(DecodeError, match="map key is not an integer or text"):
            decode(EXAMPLE_MAP, limits)


def test_cbor2_canonical_is_length_first_not_bytewise() -> None:
    """Why we keep our own encoder (GUIDE rule 2): cbor2 canonical=True sorts length-first."""
    full = {10: 0, 100: 0, -1: 0, "z": 0, "aa": 0, (100,): 0, (-1,): 0, False: 0}
    theirs = cbor2.dumps(full, canonical=True)
    assert theirs != EXAMPLE_MAP
    assert theirs == b"\xa8" + b"".join(bytes.fromhex(k["encoding"]) + b"\x00" for k in LENGTH_FIRST["sorted_keys"])
    small = {10: 0, 100: 0, -1: 0, "z": 0, "aa": 0}
    assert cbor2.dumps(small, canonical=True) != encode(small)
    # ... and our strict decoder refuses cbor2's ordering of the same map.
    with pytest.raises(DecodeError, match="not in bytewise order"):
        decode(cbor2.dumps(small, canonical=True))
    assert same(decode(cbor2.dumps(small, canonical=True), RELAXED), small)


@pytest.mark.parametrize("case", VECTORS["cbor2_canonical"]["maps"], ids=lambda c: c["id"])
def test_cbor2_canonical_map_cases(case: dict[str, Any]) -> None:
    value = {cbor2.loads(bytes.fromhex(k)): cbor2.loads(bytes.fromhex(v)) for k, v in case["input_order"]}
    if all(isinstance(k, (int, str)) for k in value) and all(isinstance(v, (int, str)) for v in value.values()):
        assert encode(value).hex() == case["expected"]
        assert same(decode(bytes.fromhex(case["expected"])), value)
    else:  # byte-string keys are outside the data model
        with pytest.raises(ValueError):
            encode(value)
        with pytest.raises(DecodeError):
            decode(bytes.fromhex(case["expected"]))


# --------------------------------------------------------------------------- CDE table


INT_ROWS = [c for c in CDE_CASES if c["kind"] == "int" and -(1 << 64) <= int(c["value"]) <= UINT64_MAX]
BIGNUM_ROWS = [c for c in CDE_CASES if c["kind"] == "int" and c not in INT_ROWS]
FLOAT_ROWS = [c for c in CDE_CASES if c["kind"] == "flt"]
BAD_ROWS = [c for c in CDE_CASES if c["kind"] == "bad"]


def test_cde_table_partition() -> None:
    assert len(INT_ROWS) == 20 and len(BIGNUM_ROWS) == 2 and len(FLOAT_ROWS) == 44 and len(BAD_ROWS) == 10


@pytest.mark.parametrize("case", INT_ROWS, ids=lambda c: f"{c['value']}")
def test_cde_int_rows_encode_and_decode(case: dict[str, str]) -> None:
    value, enc = int(case["value"]), bytes.fromhex(case["encoding"])
    assert encode(value) == enc
    assert same(decode(enc), value)


@pytest.mark.parametrize("case", BIGNUM_ROWS, ids=lambda c: f"{c['value']}")
def test_cde_bignum_rows_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        encode(int(case["value"]))
    with pytest.raises(DecodeError, match="unexpected tag"):
        decode(bytes.fromhex(case["encoding"]))


def _floats() -> list[tuple[str, float, str]]:
    rows = [(c["description"] + "-" + c["encoding"], float(c["value"]), c["encoding"]) for c in FLOAT_ROWS]
    rows += [(f"rfc8949-{f['value']}", float(f["value"]), f["encoding"]) for f in VECTORS["rfc8949_float_examples"]]
    for f in VECTORS["cbor2_canonical"]["floats"]:
        v = f["value"]
        rows.append((f"cbor2-{v}", float.fromhex(v) if v.startswith("0x") else float(v), f["encoding"]))
    return rows


@pytest.mark.parametrize(("value", "enc"), [r[1:] for r in _floats()], ids=[r[0] for r in _floats()])
def test_float_rows_are_refused_both_ways(value: float, enc: str) -> None:
    with pytest.raises(ValueError, match="floats"):
        encode(value)
    with pytest.raises(ValueError, match="floats"):
        encode({"nested": [1, value]})
    with pytest.raises(DecodeError, match="floating-point|simple value"):
        decode(bytes.fromhex(enc))
    with pytest.raises(DecodeError):
        decode(bytes.fromhex("81" + enc), RELAXED)


@pytest.mark.parametrize("case", BAD_ROWS, ids=lambda c: c["description"] + "-" + c["encoding"])
def test_cde_bad_rows_are_rejected(case: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(case["encoding"]))


# --------------------------------------------------------------------------- RFC 8949 Appendix A

# Appendix A examples that fall inside the data model (all already deterministic).
APPENDIX_A = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
    (Tag(0, "2013-03-21T20:04:00Z"), "c074323031332d30332d32315432303a30343a30305a"),
    (Tag(1, 1363896240), "c11a514b67b0"), (Tag(23, b"\x01\x02\x03\x04"), "d74401020304"),
    (Tag(24, b"dIETF"), "d818456449455446"),
    (Tag(32, "http://www.example.com"), "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
]
ALL_TAGS = CborLimits(allowed_tags=frozenset({0, 1, 23, 24, 32}))


@pytest.mark.parametrize(("value", "enc"), APPENDIX_A, ids=[e for _, e in APPENDIX_A])
def test_rfc8949_appendix_a(value: Any, enc: str) -> None:
    assert encode(value).hex() == enc
    assert same(decode(bytes.fromhex(enc), ALL_TAGS), value)


def test_encoder_input_forms() -> None:
    assert encode((1, (2,))) == encode([1, [2]])
    assert encode(bytearray(b"ab")) == encode(memoryview(b"ab")) == encode(b"ab")
    assert encode({"b": 1, "a": 2}) == encode({"a": 2, "b": 1})


@pytest.mark.parametrize("value", [
    pytest.param(1.0, id="float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param([0, [0.5]], id="nested-float"),
    pytest.param({1: -0.0}, id="float-map-value"),
    pytest.param(1 << 64, id="int-2^64"),
    pytest.param(-(1 << 64) - 1, id="int-below--2^64"),
    pytest.param({True: 0}, id="bool-key"),
    pytest.param({None: 0}, id="null-key"),
    pytest.param({b"k": 0}, id="bytes-key"),
    pytest.param({1.5: 0}, id="float-key"),
    pytest.param({(1,): 0}, id="array-key"),
    pytest.param({1, 2}, id="set"),
    pytest.param(object(), id="object"),
    pytest.param(complex(1, 1), id="complex"),
    pytest.param("\ud800", id="lone-surrogate"),
])
def test_encoder_refuses(value: Any) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("tag", [-1, 1 << 64, "18"], ids=["negative", "2^64", "text"])
def test_tag_number_range(tag: Any) -> None:
    with pytest.raises(ValueError):
        Tag(tag, 0)


# --------------------------------------------------------------------------- decoder negatives

T18 = CborLimits(allowed_tags=frozenset({18}))

NEGATIVE: list[tuple[str, str, CborLimits, str]] = [
    # (id, hex, limits, message pattern)
    # non-shortest arguments, each width, each major type that has one
    ("uint-1byte-for-23", "1817", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("uint-1byte-for-0", "1800", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("uint-2byte-for-255", "1900ff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("uint-4byte-for-65535", "1a0000ffff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("uint-8byte-for-2^32-1", "1b00000000ffffffff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("uint-8byte-for-0", "1b0000000000000000", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("nint-1byte-for--24", "3817", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("nint-2byte-for--256", "3900ff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("nint-4byte-for--65536", "3a0000ffff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("nint-8byte-for--2^32", "3b00000000ffffffff", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("bytes-len-1byte", "580100", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("bytes-len-2byte", "590001" + "00", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("text-len-1byte", "780161", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("text-len-4byte", "7a0000000161", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("array-len-1byte", "98020405", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("array-len-8byte", "9b000000000000000100", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("map-len-1byte", "b8010100", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("map-len-2byte", "b900010100", cbor.DEFAULT_LIMITS, "non-shortest"),
    ("tag-1byte-for-18", "d81280", T18, "non-shortest"),
    ("tag-2byte-for-18", "d9001280", T18, "non-shortest"),
    # indefinite lengths and the break code
    ("indefinite-bytes", "5f4101420203ff", cbor.DEFAULT_LIMITS, "indefinite"),
    ("indefinite-bytes-empty", "5fff", cbor.DEFAULT_LIMITS, "indefinite"),
    ("indefinite-text", "7f616161626cff", cbor.DEFAULT_LIMITS, "indefinite"),
    ("indefinite-array", "9f0102ff", cbor.DEFAULT_LIMITS, "indefinite"),
    ("indefinite-map", "bf616101ff", cbor.DEFAULT_LIMITS, "indefinite"),
    ("break-alone", "ff", cbor.DEFAULT_LIMITS, "indefinite-length item or break"),
    ("break-in-array", "8201ff", cbor.DEFAULT_LIMITS, "break"),
    ("uint-ai-31", "1f", cbor.DEFAULT_LIMITS, "indefinite"),
    ("tag-ai-31", "df00", cbor.DEFAULT_LIMITS, "indefinite"),
    # reserved additional information 28..30
    ("uint-ai-28", "1c", cbor.DEFAULT_LIMITS, "reserved"),
    ("nint-ai-29", "3d", cbor.DEFAULT_LIMITS, "reserved"),
    ("bytes-ai-30", "5e", cbor.DEFAULT_LIMITS, "reserved"),
    ("simple-ai-28", "fc", cbor.DEFAULT_LIMITS, "reserved"),
    ("simple-ai-30", "fe", cbor.DEFAULT_LIMITS, "reserved"),
    # map keys
    ("unsorted-int-keys", "a2020001 00".replace(" ", ""), cbor.DEFAULT_LIMITS, "not in bytewise order"),
    ("unsorted-text-keys", "a2616200616101", cbor.DEFAULT_LIMITS, "not in bytewise order"),
    ("length-first-key-order", "a220001864 00".replace(" ", ""), cbor.DEFAULT_LIMITS, "not in bytewise order"),
    ("unsorted-nested", "81a2020001 00".replace(" ", ""), cbor.DEFAULT_LIMITS, "not in bytewise order"),
    ("duplicate-int-key", "a201000101", cbor.DEFAULT_LIMITS, "duplicate map key"),
    ("duplicate-text-key", "a2616100616101", cbor.DEFAULT_LIMITS, "duplicate map key"),
    ("bool-key", "a1f400", cbor.DEFAULT_LIMITS, "map key is not"),
    ("null-key", "a1f600", cbor.DEFAULT_LIMITS, "map key is not"),
    ("bytes-key", "a1416100", cbor.DEFAULT_LIMITS, "map key is not"),
    ("array-key", "a18000", cbor.DEFAULT_LIMITS, "map key is not"),
    ("map-key", "a1a000", cbor.DEFAULT_LIMITS, "map key is not"),
    ("tag-key", "a1d2 0000".replace(" ", ""), T18, "map key is not"),
    # floats
    ("float16", "f93c00", cbor.DEFAULT_LIMITS, "floating-point"),
    ("float32", "fa3f800000", cbor.DEFAULT_LIMITS, "floating-point"),
    ("float64", "fb3ff0000000000000", cbor.DEFAULT_LIMITS, "floating-point"),
    ("float16-in-map", "a16161f97c00", cbor.DEFAULT_LIMITS, "floating-point"),
    # simple values other than false, true, null
    ("undefined", "f7", cbor.DEFAULT_LIMITS, "simple value 23"),
    ("simple-0", "e0", cbor.DEFAULT_LIMITS, "simple value 0"),
    ("simple-16", "f0", cbor.DEFAULT_LIMITS, "simple value 16"),
    ("simple-19", "f3", cbor.DEFAULT_LIMITS, "simple value 19"),
    ("simple-24-two-byte", "f818", cbor.DEFAULT_LIMITS, "simple value 24"),
    ("false-two-byte", "f814", cbor.DEFAULT_LIMITS, "simple value 20"),
    ("simple-32", "f820", cbor.DEFAULT_LIMITS, "simple value 32"),
    ("simple-255", "f8ff", cbor.DEFAULT_LIMITS, "simple value 255"),
    # tags
    ("tag-0-datetime", "c074323031332d30332d32315432303a30343a30305a", cbor.DEFAULT_LIMITS, "unexpected tag 0"),
    ("tag-1-epoch", "c11a514b67b0", cbor.DEFAULT_LIMITS, "unexpected tag 1"),
    ("tag-2-bignum", "c249010000000000000000", cbor.DEFAULT_LIMITS, "unexpected tag 2"),
    ("tag-18-not-allowed", "d28440a0f640", cbor.DEFAULT_LIMITS, "unexpected tag 18"),
    ("tag-55799-self-describe", "d9d9f700", cbor.DEFAULT_LIMITS, "unexpected tag 55799"),
    ("tag-98-when-18-allowed", "d86280", T18, "unexpected tag 98"),
    ("tag-nested-not-allowed", "81c100", T18, "unexpected tag 1"),
    # text
    ("utf8-invalid-byte", "61ff", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-bad-continuation", "62c328", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-overlong", "62c0af", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-surrogate", "63eda080", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-truncated-sequence", "61c3", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-above-u10ffff", "64f4908080", cbor.DEFAULT_LIMITS, "UTF-8"),
    ("utf8-in-map-key", "a161ff00", cbor.DEFAULT_LIMITS, "UTF-8"),
    # framing
    ("empty-input", "", cbor.DEFAULT_LIMITS, "truncated"),
    ("trailing-garbage", "0000", cbor.DEFAULT_LIMITS, "trailing"),
    ("trailing-break", "a0ff", cbor.DEFAULT_LIMITS, "trailing"),
    ("two-items", "8001", cbor.DEFAULT_LIMITS, "trailing"),
    ("truncated-uint8", "1b00000001", cbor.DEFAULT_LIMITS, "truncated"),
    ("truncated-bytes", "4501", cbor.DEFAULT_LIMITS, "truncated"),
    ("truncated-array", "8301", cbor.DEFAULT_LIMITS, "truncated|cannot fit"),
    ("truncated-map-value", "a101", cbor.DEFAULT_LIMITS, "truncated|cannot fit"),
]


@pytest.mark.parametrize(("hexdata", "limits", "pattern"), [n[1:] for n in NEGATIVE], ids=[n[0] for n in NEGATIVE])
def test_decoder_negative(hexdata: str, limits: CborLimits, pattern: str) -> None:
    with pytest.raises(DecodeError, match=pattern):
        decode(bytes.fromhex(hexdata), limits)


@pytest.mark.parametrize("data", [
    pytest.param("00", id="str"), pytest.param(None, id="none"), pytest.param(0, id="int"),
    pytest.param([0], id="list"), pytest.param(object(), id="object"),
])
def test_decoder_refuses_non_bytes(data: Any) -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(data)


def test_decoder_accepts_bytes_like() -> None:
    assert decode(bytearray(b"\x82\x01\x02")) == [1, 2]  # type: ignore[arg-type]
    assert decode(memoryview(b"\x82\x01\x02")) == [1, 2]  # type: ignore[arg-type]


RICH = {
    1: -(1 << 64),
    2: UINT64_MAX,
    3: b"\x00" * 300,
    4: "caf\u00e9 \u6c34 \U00010151" * 3,
    "k": [True, False, None, [], {}, [[-24, -25, 255, 256, 65536]]],
    "long": "x" * 24,
}
SAMPLES = {"rich": RICH, "nested": [[[[1]]], {"a": {"b": {"c": b"d"}}}], "bigint": UINT64_MAX,
           "long-bytes": b"\xab" * 70000}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_truncated_at_every_prefix(name: str) -> None:
    enc = encode(SAMPLES[name])
    assert same(decode(enc), SAMPLES[name])
    step = 1 if len(enc) < 2000 else 997
    for n in list(range(0, len(enc), step)) + [len(enc) - 1]:
        with pytest.raises(DecodeError):
            decode(enc[:n])


def test_trailing_garbage_after_every_sample() -> None:
    for value in SAMPLES.values():
        enc = encode(value)
        for extra in (b"\x00", b"\xff", enc):
            with pytest.raises(DecodeError, match="trailing"):
                decode(enc + extra)


# --------------------------------------------------------------------------- limits


def test_default_limits() -> None:
    assert cbor.DEFAULT_LIMITS == CborLimits(max_size=1 << 20, max_depth=16, max_items=65536,
                                             allowed_tags=frozenset(), deterministic=True)


def test_max_size() -> None:
    enc = encode(b"\x00" * 20)  # 21 bytes
    assert decode(enc, CborLimits(max_size=21)) == b"\x00" * 20
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(enc, CborLimits(max_size=20))
    big = encode(b"\x00" * (1 << 20))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(big)


def _nest(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"\x81" * depth + b"\x00"
    if kind == "map":
        return b"\xa1\x00" * depth + b"\x00"
    return b"\xd2" * depth + b"\x00"  # tag 18


@pytest.mark.parametrize("kind", ["array", "map", "tag"])
def test_max_depth(kind: str) -> None:
    limits = CborLimits(allowed_tags=frozenset({18}))
    decode(_nest(16, kind), limits)
    with pytest.raises(DecodeError, match="nesting deeper than 16"):
        decode(_nest(17, kind), limits)
    with pytest.raises(DecodeError, match="nesting deeper than 3"):
        decode(_nest(4, kind), CborLimits(max_depth=3, allowed_tags=frozenset({18})))


@pytest.mark.parametrize("kind", ["array", "map", "tag"])
def test_deep_nesting_is_a_decode_error_not_recursion_error(kind: str) -> None:
    data = _nest(200_000, kind)
    with pytest.raises(DecodeError):
        decode(data, CborLimits(allowed_tags=frozenset({18})))
    # Even a caller that sets an absurd depth limit gets a DecodeError.
    with pytest.raises(DecodeError):
        decode(data, CborLimits(max_depth=10**9, allowed_tags=frozenset({18})))


def test_max_items() -> None:
    limits = CborLimits(max_items=3)
    assert decode(bytes.fromhex("820102"), limits) == [1, 2]  # array + 2 items
    with pytest.raises(DecodeError, match="more than 3 data items"):
        decode(bytes.fromhex("83010203"), limits)
    with pytest.raises(DecodeError, match="more than 3 data items"):
        decode(bytes.fromhex("a201020304"), limits)  # map + 2 keys + 2 values
    assert len(decode(encode([0] * 65535))) == 65535
    with pytest.raises(DecodeError, match="more than 65536 data items"):
        decode(encode([0] * 65536))


HUGE = [
    ("bytes-2^64-1", "5bffffffffffffffff"),
    ("text-2^64-1", "7bffffffffffffffff"),
    ("array-2^64-1", "9bffffffffffffffff"),
    ("map-2^64-1", "bbffffffffffffffff"),
    ("bytes-2^32-1", "5affffffff00"),
    ("array-2^32-1", "9affffffff00"),
    ("map-2^31", "ba8000000000"),
    ("array-of-huge-arrays", "83" + "9bffffffffffffffff" * 3),
    ("map-of-huge-bytes", "a1005b7fffffffffffffff"),
]


@pytest.mark.parametrize("hexdata", [h for _, h in HUGE], ids=[i for i, _ in HUGE])
def test_huge_declared_lengths_fail_fast(hexdata: str) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DecodeError, match="truncated|cannot fit"):
            decode(bytes.fromhex(hexdata))
        with pytest.raises(DecodeError, match="truncated|cannot fit"):
            decode(bytes.fromhex(hexdata), CborLimits(max_items=1 << 62, max_size=1 << 62, deterministic=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 0.5
    assert peak < 1 << 20


# --------------------------------------------------------------------------- relaxed key order


@pytest.mark.parametrize(("hexdata", "value"), [
    pytest.param("a202000100", {2: 0, 1: 0}, id="unsorted-int-keys"),
    pytest.param("a2616200616101", {"b": 0, "a": 1}, id="unsorted-text-keys"),
    pytest.param("a220001864 00".replace(" ", ""), {-1: 0, 100: 0}, id="length-first-order"),
    pytest.param("81a1 01a2020001 00".replace(" ", ""), [{1: {2: 0, 1: 0}}], id="nested"),
])
def test_relaxed_accepts_unsorted_keys(hexdata: str, value: Any) -> None:
    data = bytes.fromhex(hexdata)
    with pytest.raises(DecodeError, match="bytewise order"):
        decode(data)
    got = decode(data, RELAXED)
    assert same(got, value)
    assert list(got) == list(value)  # insertion order is the wire order
    assert encode(got) != data  # which is why foreign payloads are never re-encoded


@pytest.mark.parametrize("hexdata", [
    pytest.param("a201000101", id="duplicate-int"),
    pytest.param("a2616100616101", id="duplicate-text"),
    pytest.param("a3010002000100", id="duplicate-after-unsorted"),
    pytest.param("81a2616100616101", id="duplicate-nested"),
])
def test_relaxed_still_refuses_duplicates(hexdata: str) -> None:
    with pytest.raises(DecodeError, match="duplicate map key"):
        decode(bytes.fromhex(hexdata), RELAXED)


@pytest.mark.parametrize("name", ["uint-1byte-for-23", "indefinite-map", "float16", "undefined", "bool-key",
                                  "tag-1-epoch", "utf8-surrogate", "trailing-garbage", "simple-24-two-byte"])
def test_relaxed_keeps_every_other_rule(name: str) -> None:
    hexdata = next(n[1] for n in NEGATIVE if n[0] == name)
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(hexdata), RELAXED)


# --------------------------------------------------------------------------- hypothesis

ints64 = st.integers(min_value=-(1 << 64), max_value=UINT64_MAX)
scalars = st.one_of(ints64, st.binary(max_size=80), st.text(max_size=40), st.booleans(), st.none())
keys = st.one_of(ints64, st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=40,
)
TAGS = frozenset({0, 1, 18, 24, 32, 55799})
tagged_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4),
                            st.builds(Tag, st.sampled_from(sorted(TAGS)), inner)),
    max_leaves=20,
)
TAG_LIMITS = CborLimits(allowed_tags=TAGS)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((max(_depth(k), _depth(x)) for k, x in v.items()), default=0)
    if isinstance(v, Tag):
        return 1 + _depth(v.value)
    return 0


@given(values)
def test_round_trip(value: Any) -> None:
    enc = encode(value)
    back = decode(enc)
    assert same(back, value)
    assert encode(back) == enc
    assert same(decode(enc, RELAXED), value)


@given(tagged_values)
def test_round_trip_with_tags(value: Any) -> None:
    enc = encode(value)
    if _depth(value) > 16:
        with pytest.raises(DecodeError):
            decode(enc, TAG_LIMITS)
        return
    back = decode(enc, TAG_LIMITS)
    assert same(back, value)
    assert encode(back) == enc


@given(st.dictionaries(keys, st.integers(0, 3), min_size=2, max_size=8), st.randoms())
def test_insertion_order_never_matters(d: dict[Any, int], rnd: Any) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(d)


def _decode_strict_or_refuse(data: bytes, limits: CborLimits = TAG_LIMITS) -> None:
    try:
        value = decode(data, limits)
    except DecodeError:
        return
    assert encode(value) == data


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_decode_canonically_or_fail(data: bytes) -> None:
    _decode_strict_or_refuse(data)
    try:
        decode(data, CborLimits(allowed_tags=TAGS, deterministic=False))
    except DecodeError:
        pass


@given(st.binary(min_size=1, max_size=6).map(lambda b: bytes([b[0] & 0xE0 | 0x18]) + b[1:]))
def test_random_heads_with_arguments(data: bytes) -> None:
    _decode_strict_or_refuse(data)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes]:
    enc = encode(draw(tagged_values.filter(lambda v: _depth(v) <= 16)))
    data = bytearray(enc)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
    return enc, bytes(data)


@given(mutated())
def test_mutated_encodings_decode_canonically_or_fail(pair: tuple[bytes, bytes]) -> None:
    _, data = pair
    _decode_strict_or_refuse(data)
    try:
        decode(data, CborLimits(allowed_tags=TAGS, deterministic=False))
    except DecodeError:
        pass
