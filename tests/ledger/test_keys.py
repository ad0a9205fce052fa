"""Tests for ledger.keys: RFC 8032 Ed25519 vectors, key ids and pre-rotation digests (spec 2.4)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import DecodeError, VerificationError
from ledger.keys import (
    DIGEST_SIZE,
    KEY_ID_SIZE,
    check_public_key,
    key_id,
    next_key_digest,
    public_key_of,
    verify_ed25519,
)

RFC8032 = json.loads((Path(__file__).parents[1] / "vectors" / "ed25519_rfc8032.json").read_text("utf-8"))["vectors"]
TEST1_PK = bytes.fromhex(RFC8032[0]["public_key"])


def _flip(b: bytes, i: int, bit: int = 0) -> bytes:
    out = bytearray(b)
    out[i] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("v", RFC8032, ids=lambda v: v["name"])
def test_rfc8032_vector(v: dict[str, str]) -> None:
    seed, pk = bytes.fromhex(v["secret_key"]), bytes.fromhex(v["public_key"])
    msg, sig = bytes.fromhex(v["message"]), bytes.fromhex(v["signature"])
    sk = nacl.signing.SigningKey(seed)
    assert public_key_of(sk) == pk
    assert sk.sign(msg).signature == sig
    verify_ed25519(pk, msg, sig)  # raises on failure


FLIPS = [(v, where) for v in RFC8032
         for where in ("sig-R-first", "sig-R-last", "sig-S-first", "sig-S-last", "sig-S-high-bit",
                       "msg-first", "msg-last", "msg-appended", "pk-first", "pk-last")
         if v["message"] or not where.startswith(("msg-first", "msg-last"))]


@pytest.mark.parametrize(("v", "where"), FLIPS, ids=[f"{v['name']}-{w}" for v, w in FLIPS])
def test_rfc8032_flipped_bits_fail(v: dict[str, str], where: str) -> None:
    pk, msg, sig = (bytes.fromhex(v[k]) for k in ("public_key", "message", "signature"))
    if where.startswith("sig"):
        i, bit = {"sig-R-first": (0, 0), "sig-R-last": (31, 7), "sig-S-first": (32, 0),
                  "sig-S-last": (63, 0), "sig-S-high-bit": (63, 7)}[where]
        sig = _flip(sig, i, bit)
    elif where == "msg-appended":
        msg += b"\x00"
    elif where.startswith("msg"):
        msg = _flip(msg, 0 if where == "msg-first" else len(msg) - 1)
    else:
        pk = _flip(pk, 0 if where == "pk-first" else 31)
    with pytest.raises(VerificationError):
        verify_ed25519(pk, msg, sig)


@pytest.mark.parametrize(("pk", "sig"), [
    pytest.param(TEST1_PK, b"\x00" * 63, id="sig-63"),
    pytest.param(TEST1_PK, b"\x00" * 65, id="sig-65"),
    pytest.param(TEST1_PK, b"", id="sig-empty"),
    pytest.param(TEST1_PK[:31], bytes.fromhex(RFC8032[0]["signature"]), id="pk-31"),
    pytest.param(TEST1_PK + b"\x00", bytes.fromhex(RFC8032[0]["signature"]), id="pk-33"),
    pytest.param(TEST1_PK.hex(), bytes.fromhex(RFC8032[0]["signature"]), id="pk-hex-text"),
    pytest.param(b"\x00" * 32, bytes.fromhex(RFC8032[0]["signature"]), id="pk-zero"),
    pytest.param(b"\x01" + b"\x00" * 31, bytes.fromhex(RFC8032[0]["signature"]), id="pk-identity-small-order"),
    pytest.param(TEST1_PK, b"\x00" * 64, id="sig-zero"),
])
def test_verify_ed25519_refusals(pk: Any, sig: bytes) -> None:
    with pytest.raises(VerificationError):
        verify_ed25519(pk, b"", sig)


def test_key_id_matches_spec_formula() -> None:
    expected = hashlib.sha256(b"mekong/key-id/v1\x00" + TEST1_PK).digest()[:16]
    assert key_id(TEST1_PK) == expected
    assert len(key_id(TEST1_PK)) == KEY_ID_SIZE == 16
    # Example value printed in specs/02-cose.md section 2.4.1.
    assert key_id(TEST1_PK).hex() == "2de3b67f1f75bcca6e96363fcdf3592f"


def test_next_key_digest_matches_spec_formula() -> None:
    expected = hashlib.sha256(b"mekong/next-key/v1\x00" + TEST1_PK).digest()
    assert next_key_digest(TEST1_PK) == expected
    assert len(next_key_digest(TEST1_PK)) == DIGEST_SIZE == 32
    # Example value printed in specs/02-cose.md section 2.4.2.
    assert next_key_digest(TEST1_PK).hex() == "4e9ae78ec71215c0843c50118d26f09f88ce5ead59b384343a26c02ef67ea826"


@given(st.binary(min_size=32, max_size=32))
def test_key_id_and_digest_are_deterministic_and_domain_separated(pk: bytes) -> None:
    kid, nxt, plain = key_id(pk), next_key_digest(pk), hashlib.sha256(pk).digest()
    assert key_id(pk) == kid and next_key_digest(pk) == nxt
    assert kid != nxt[:KEY_ID_SIZE]
    assert kid != plain[:KEY_ID_SIZE]
    assert nxt != plain


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_different_keys_different_ids(a: bytes, b: bytes) -> None:
    if a != b:
        assert key_id(a) != key_id(b)
        assert next_key_digest(a) != next_key_digest(b)


@pytest.mark.parametrize("fn", [key_id, next_key_digest, check_public_key], ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [
    pytest.param(b"", id="empty"), pytest.param(b"\x00" * 31, id="31-bytes"),
    pytest.param(b"\x00" * 33, id="33-bytes"), pytest.param(b"\x00" * 64, id="64-bytes"),
    pytest.param(bytearray(32), id="bytearray"), pytest.param("a" * 32, id="text"),
    pytest.param(None, id="none"), pytest.param(32, id="int"),
])
def test_wrong_size_or_type_keys_are_decode_errors(fn: Any, bad: Any) -> None:
    with pytest.raises(DecodeError, match="32 bytes"):
        fn(bad)


def test_check_public_key_returns_the_key() -> None:
    assert check_public_key(TEST1_PK) is TEST1_PK
