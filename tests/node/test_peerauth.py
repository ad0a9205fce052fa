"""Signed requests between member nodes (node/peerauth.py, specs/api.md A.2)."""

from __future__ import annotations

import nacl.signing
import pytest

from ledger.errors import AuthorizationError, DecodeError, VerificationError
from node.peerauth import sign_request, verify_request

VN = nacl.signing.SigningKey(b"\x01" * 32)
TH = nacl.signing.SigningKey(b"\x02" * 32)
KEYS = {"VN": bytes(VN.verify_key), "TH": bytes(TH.verify_key)}
NOW = 1_764_370_000


def check(header: str | None, *, method: str = "POST", path: str = "/witness/add-checkpoint",
          body: bytes = b"old 0\n", now: int = NOW) -> str:
    return verify_request(header, method, path, body, now, KEYS.get)


def test_signed_request_names_its_member() -> None:
    header = sign_request("VN", VN, "POST", "/witness/add-checkpoint", b"old 0\n", NOW)
    assert check(header) == "VN"
    assert check(header, now=NOW + 300) == "VN"


@pytest.mark.parametrize(("field", "value"), [
    ("method", "PUT"), ("path", "/witness/other"), ("body", b"old 1\n"),
], ids=["other-method", "other-path", "other-body"])
def test_any_change_to_the_request_breaks_the_signature(field: str, value: object) -> None:
    header = sign_request("VN", VN, "POST", "/witness/add-checkpoint", b"old 0\n", NOW)
    with pytest.raises(VerificationError):
        check(header, **{field: value})  # type: ignore[arg-type]


def test_member_claiming_another_members_key_is_refused() -> None:
    header = sign_request("VN", TH, "POST", "/witness/add-checkpoint", b"old 0\n", NOW)
    with pytest.raises(VerificationError, match="member VN"):
        check(header)


def test_unknown_member_and_stale_time_are_refused() -> None:
    stranger = sign_request("LA", TH, "POST", "/witness/add-checkpoint", b"old 0\n", NOW)
    with pytest.raises(AuthorizationError, match="LA is not in"):
        check(stranger)
    old = sign_request("VN", VN, "POST", "/witness/add-checkpoint", b"old 0\n", NOW - 301)
    with pytest.raises(AuthorizationError, match="more than 300 s"):
        check(old)


@pytest.mark.parametrize("header", [
    None, "", "Bearer abc", "Mekong-Node member=vn, time=1, sig=" + "A" * 86 + "==",
    "Mekong-Node member=VN, time=01, sig=" + "A" * 86 + "==", "Mekong-Node member=VN, time=1, sig=short",
], ids=["absent", "empty", "other-scheme", "lowercase-member", "leading-zero-time", "short-sig"])
def test_malformed_headers_are_refused_with_a_reason(header: str | None) -> None:
    with pytest.raises((DecodeError, AuthorizationError)):
        check(header)
