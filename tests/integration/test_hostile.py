"""Hostile input never crashes a node: every refusal is a 4xx naming the problem (specs/api.md A.1).

Garbage, truncated and oversized bodies to every POST endpoint, CBOR that
declares impossible lengths or nests too deep, bad tile paths and query
parameters, entries signed by keys the rules do not authorise. Each must be
answered with a 4xx and the JSON error body ``{"error": kind, "message":
text}`` (the C2SP witness protocol's own statuses answer in text, as C2SP
says); afterwards every node still answers ``/healthz`` and has answered no
request with a 5xx.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import TYPE_CHECKING, Any

import nacl.signing
import pytest

from ledger import cbor
from ledger.bodies import CredentialAnchor, IssuerRegister
from ledger.checkpoint import Checkpoint, log_origin, sign_checkpoint
from ledger.entries import make_entry
from ledger.finality import checkpoint_extensions
from ledger.note import NoteSigner
from node.peerauth import sign_request

if TYPE_CHECKING:
    from tests.integration.conftest import Net, Response

pytestmark = pytest.mark.integration

CBOR = "application/cbor"
TEXT = "text/plain; charset=utf-8"


@pytest.fixture(scope="module")
def issuer(net: Net) -> dict[str, Any]:
    name, key, reg = net.register_issuer("VN", "customs")
    net.submit("VN", reg + net.anchors("VN", name, key, 3))
    net.wait_final("VN", 5)
    return {"issuer": name, "key": key}


def _json_refusal(resp: Response, what: str, statuses: tuple[int, ...] = ()) -> None:
    assert 400 <= resp.status < 500, f"{what}: {resp}"
    if statuses:
        assert resp.status in statuses, f"{what}: {resp}"
    assert resp.content_type == "application/json", f"{what}: {resp}"
    doc = resp.json()
    assert isinstance(doc.get("error"), str) and doc["error"], f"{what}: {doc}"
    assert isinstance(doc.get("message"), str) and doc["message"], f"{what}: {doc}"


def _signed_post(net: Net, node: str, path: str, body: bytes, as_member: str) -> Response:
    auth = sign_request(as_member, net.node_key(as_member), "POST", path, body, int(time.time()))
    return net.post(node, path, body, TEXT, {"Authorization": auth})


def _raw(net: Net, node: str, data: bytes) -> bytes:
    """Send raw bytes to a node's port and return whatever comes back before it closes (or 2 s pass)."""
    host, port = net.url(node).removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        s.settimeout(2)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


BAD_CBOR = {
    "empty": b"",
    "random bytes": bytes(range(256)) * 4,
    "a map": cbor.encode({"entries": []}),
    "an empty array": cbor.encode([]),
    "an array of integers": cbor.encode([1, 2, 3]),
    "an array of text": cbor.encode(["entry"]),
    "truncated": cbor.encode([b"x" * 100])[:50],
    "trailing garbage": cbor.encode([b"x"]) + b"\x00",
    "nested 10000 deep": b"\x81" * 10_000 + b"\x40",
    "bstr declaring 2^62 bytes": b"\x81\x5b" + (1 << 62).to_bytes(8, "big") + b"abc",
    "array declaring 2^40 items": b"\x9b" + (1 << 40).to_bytes(8, "big") + b"\x40",
    "indefinite-length array": b"\x9f\x41a\xff",
    "non-canonical length": b"\x98\x01\x41a",
    "bstrs that are not COSE": cbor.encode([b"not an entry", b"\xd2\x84"]),
    "a tag 18 with nothing inside": cbor.encode([b"\xd2\x80"]),
}


def test_garbage_submissions_are_400(net: Net, issuer: dict[str, Any]) -> None:
    for what, body in BAD_CBOR.items():
        _json_refusal(net.post("VN", "/logs/VN/entries", body), f"entries: {what}", (400, 413, 422))


def test_unauthorised_entries_are_refused(net: Net, issuer: dict[str, Any]) -> None:
    now = net.now("VN")
    stranger = nacl.signing.SigningKey.generate()
    digest = hashlib.sha256(b"hostile").digest()
    cases = {
        "issuer.register by a stranger's key": make_entry(
            "VN", "issuer.register", now, IssuerRegister("VN/fake", "Fake", ("certificate-of-origin",), "high",
                                                         "VN"), stranger),
        "issuer.register by another member's admin key": make_entry(
            "VN", "issuer.register", now, IssuerRegister("VN/fake", "Fake", ("certificate-of-origin",), "high",
                                                         "VN"), net.admin_key("TH")),
        # a stolen node key signs checkpoints and cosignatures, never entries (README: it cannot forge them)
        "issuer.register by the log owner's own node key": make_entry(
            "VN", "issuer.register", now, IssuerRegister("VN/fake", "Fake", ("certificate-of-origin",), "high",
                                                         "VN"), net.node_key("VN")),
        "anchor by the log owner's own node key": make_entry(
            "VN", "credential.anchor", now, CredentialAnchor(issuer["issuer"], digest), net.node_key("VN")),
        "anchor by a key the issuer does not hold": make_entry(
            "VN", "credential.anchor", now, CredentialAnchor(issuer["issuer"], digest), stranger),
        "anchor for an unknown issuer": make_entry(
            "VN", "credential.anchor", now, CredentialAnchor("VN/nobody", digest), issuer["key"]),
        "an entry naming another log": make_entry(
            "TH", "credential.anchor", now, CredentialAnchor(issuer["issuer"], digest), issuer["key"]),
        "an author time before the previous entry's": make_entry(
            "VN", "credential.anchor", now - 3600, CredentialAnchor(issuer["issuer"], digest), issuer["key"]),
        "a root version no one has": make_entry(
            "VN", "credential.anchor", now, CredentialAnchor(issuer["issuer"], digest), issuer["key"], root=7),
    }
    good = make_entry("VN", "credential.anchor", now, CredentialAnchor(issuer["issuer"], digest), issuer["key"])
    size = net.status("VN")["logs"]["VN"]["size"]
    for what, entry in cases.items():
        _json_refusal(net.post("VN", "/logs/VN/entries", cbor.encode([entry])), what, (400, 403, 409, 422))
        # One bad entry refuses its whole batch, the good one with it.
        _json_refusal(net.post("VN", "/logs/VN/entries", cbor.encode([good, entry])), f"{what} after a good one")
    tampered = bytearray(good)
    tampered[-1] ^= 1
    _json_refusal(net.post("VN", "/logs/VN/entries", cbor.encode([bytes(tampered)])), "bad signature", (403, 422))
    assert net.status("VN")["logs"]["VN"]["size"] == size, "a refused entry was stored"


def test_oversized_and_misdirected_submissions(net: Net, issuer: dict[str, Any]) -> None:
    _json_refusal(net.post("VN", "/logs/VN/entries", cbor.encode([b"x"] * 1001)), "1001 entries", (413,))
    _json_refusal(net.post("VN", "/logs/VN/entries", cbor.encode([b"x" * 20_000])), "a 20 kB entry", (413,))
    _json_refusal(net.post("VN", "/logs/VN/entries", b"\x81\x5a\x00\x20\x00\x00" + b"x" * (2 << 20)),
                  "a 2 MiB body", (413,))
    _json_refusal(net.post("VN", "/logs/TH/entries", cbor.encode([b"x"])), "another member's log", (421,))
    _json_refusal(net.post("VN", "/logs/ZZZZ/entries", cbor.encode([b"x"])), "no such log", (404, 421))
    # A declared length far beyond the limit is refused before the body is read.
    answer = _raw(net, "VN", b"POST /logs/VN/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
                             b"Content-Length: 1000000000000\r\n\r\n" + b"\x81")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"error"' in answer


def test_garbage_to_peer_endpoints(net: Net, issuer: dict[str, Any]) -> None:
    for what, body in {"empty": b"", "random": bytes(range(256)), "cbor": cbor.encode([1])}.items():
        # Unsigned pushes are refused before anything is parsed.
        _json_refusal(net.post("KH", "/logs/VN/checkpoint", body, TEXT), f"unsigned push: {what}", (401, 403))
        # Signed by a member, but garbage.
        _json_refusal(_signed_post(net, "KH", "/logs/VN/checkpoint", body, "LA"), f"signed push: {what}", (400,))
        _json_refusal(net.post("KH", "/witness/add-checkpoint", body, TEXT), f"add-checkpoint: {what}", (400,))
        _json_refusal(net.post("KH", "/governance/roots", body, CBOR), f"roots: {what}", (400,))
    bad_auth = {"Authorization": "Mekong-Node member=LA, time=1, sig=" + "A" * 86 + "=="}
    _json_refusal(net.post("KH", "/logs/VN/checkpoint", b"x", TEXT, bad_auth), "stale Authorization")
    _json_refusal(net.post("KH", "/logs/VN/checkpoint", b"x", TEXT, {"Authorization": "Bearer x"}),
                  "malformed Authorization", (400,))
    note = net.get("VN", "/logs/VN/checkpoint").body
    for what, body in {
        "old with a leading zero": b"old 05\n\n" + note,
        "old beyond the size": b"old 99999999999999999999\n\n" + note,
        "a proof line that is not base64": b"old 5\n!!!\n\n" + note,
        "64 proof lines": b"old 5\n" + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64 + b"\n" + note,
        "no blank line": b"old 5\n" + note.replace(b"\n\n", b"\n"),
        "not UTF-8": b"old 5\n\n\xff\xfe" + note,
    }.items():
        resp = net.post("KH", "/witness/add-checkpoint", body, TEXT)
        assert 400 <= resp.status < 500, f"add-checkpoint: {what}: {resp}"


def test_huge_sizes_in_signed_checkpoints(net: Net, issuer: dict[str, Any]) -> None:
    origin = log_origin(net.network, "VN")
    for size in (1 << 40, (1 << 64) - 1):
        forged = sign_checkpoint(Checkpoint(origin, size, bytes(32), checkpoint_extensions(net.genesis.root, bytes(32))),
                                 NoteSigner(origin, net.node_key("VN")))
        # Pushed as "final" by a peer: it carries no cosignatures, so it proves nothing.
        resp = _signed_post(net, "KH", "/logs/VN/checkpoint", forged.to_bytes(), "LA")
        assert 400 <= resp.status < 500, resp
        # Sent to a witness by the owner: there are no such entries to verify.
        resp = _signed_post(net, "KH", "/witness/add-checkpoint", b"old 5\n\n" + forged.to_bytes(), "VN")
        assert 400 <= resp.status < 500, resp


BAD_GETS = [
    *(f"/logs/VN/tile/{p}" for p in (
        "0/1", "0/x001", "0/x000/001", "64/000", "00/000", "-1/000", "0/000.p/256", "0/000.p/0", "0/000.p/007",
        "entries/000.p/abc", "entries", "0/000.p/", "0/" + "x999/" * 10 + "999", "0/000" + "/000" * 500,
        "0/x999/999", "1/000", "entries/x001/000", "..%2F..%2Fetc%2Fpasswd", "0/000.p/1.p/1")),
    "/logs/ZZ/checkpoint", "/logs/vn/checkpoint", "/logs/ZZ/tile/0/000", "/logs/" + "A" * 5000 + "/checkpoint",
    "/logs/VN/entries", "/logs/VN/entries?start=abc", "/logs/VN/entries?start=-1", "/logs/VN/entries?start=" + "9" * 30,
    "/logs/VN/entries?start=1000000", "/logs/VN/entries?start=3&end=1",
    "/logs/VN/proof/inclusion?index=100&size=5", "/logs/VN/proof/inclusion?index=0&size=0",
    "/logs/VN/proof/inclusion?index=0&size=" + "9" * 20, "/logs/VN/proof/inclusion?index=0&size=100000",
    "/logs/VN/proof/inclusion", "/logs/VN/proof/consistency?from=5&to=2", "/logs/VN/proof/consistency?from=0&to=5",
    "/logs/VN/proof/consistency?from=1&to=" + "9" * 20, "/logs/VN/proof/consistency?from=1&to=100000",
    "/governance/roots/0", "/governance/roots/abc", "/governance/roots/" + "9" * 30,
    "/registry/issuers/%00", "/registry/issuers/ZZ%2Fx",
    "/registry/keys/zz", "/registry/keys/" + "ab" * 65, "/registry/keys/" + "ab" * 16,
    "/registry/credentials/VN%2Fcustoms/zz", "/registry/credentials/ZZ%2Fx/00", "/registry/anchors/XYZ",
    "/registry/policies/ZZ", "/no/such/route",
]


@pytest.mark.parametrize("path", BAD_GETS, ids=lambda p: p[:60])
def test_bad_reads_are_4xx_json(net: Net, issuer: dict[str, Any], path: str) -> None:
    _json_refusal(net.get("LA", path), path)


def test_wrong_methods_and_malformed_http(net: Net, issuer: dict[str, Any]) -> None:
    _json_refusal(net.get("VN", "/witness/add-checkpoint"), "GET add-checkpoint", (405,))
    _json_refusal(net.request("VN", "DELETE", "/logs/VN/entries"), "DELETE entries", (405,))
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /logs/VN/entries HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /logs/VN/entries HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        answer = _raw(net, "VN", junk)  # aiohttp's parser answers these itself, in plain text (api.md)
        assert answer == b"" or answer.split(b" ")[1].startswith(b"4"), answer[:200]
    # Each is counted in /metrics, though the log shows one line per kind and minute (api A.5).
    before = _client_errors(net, "VN")
    for _ in range(20):
        _raw(net, "VN", b"POST /logs/VN/entries HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
    after = _client_errors(net, "VN")
    assert sum(after.values()) - sum(before.values()) >= 20, (before, after)
    assert len([line for line in net.node_log("VN").splitlines() if "client error" in line]) <= 2 * len(after)
    # An issuer id no member could have registered is refused as malformed, naming the expected form.
    resp = net.get("VN", "/registry/issuers/VN%2F" + "a" * 5000)
    assert resp.status == 400 and "VN/customs-coo" in resp.json()["message"], resp


def _client_errors(net: Net, node: str) -> dict[str, float]:
    out = {}
    for line in net.get(node, "/metrics").body.decode().splitlines():
        if line.startswith("mekong_client_errors_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_every_node_still_healthy_and_never_answered_5xx(net: Net, issuer: dict[str, Any]) -> None:
    for node in net.ids:
        assert net.get(node, "/healthz").status == 200
        metrics = net.get(node, "/metrics").body.decode()
        five = [line for line in metrics.splitlines()
                if line.startswith("mekong_http_requests_total{") and 'status="5' in line]
        assert not five, f"{node} answered 5xx: {five}"
        # aiohttp's own parser logs malformed HTTP at ERROR (with a traceback); nothing else may.
        errors = [line for line in net.node_log(node).splitlines()
                  if " ERROR " in line and " aiohttp.server " not in line]
        assert not errors, errors
    # And the ledger still works end to end.
    size = net.submit("VN", net.anchors("VN", issuer["issuer"], issuer["key"], 3, tag="after"))["size"]
    net.wait_final("VN", size)
