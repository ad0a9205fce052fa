"""Entries written to one node are final and provable on every node; an outside reader checks the tiles.

One four-member devnet: VN registers ``VN/customs-coo`` and anchors 600
credentials (so its tree has a level-1 hash tile), TH registers an issuer of
its own. Every node must then serve, for every log, a checkpoint signed by the
log's node key with a quorum of cosignatures by the genesis root's node keys,
and entries with inclusion proofs under it.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest

from credentials.bundle import open_answer
from ledger import cbor, merkle
from ledger.checkpoint import Checkpoint
from node.tiles import encode_index

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration

ANCHORS = 600


@pytest.fixture(scope="module")
def written(net: Net) -> dict[str, Any]:
    """Write to VN and TH through their own nodes; every node ends up holding both logs final."""
    issuer, key, reg = net.register_issuer("VN", "customs-coo")
    first = net.submit("VN", reg)
    assert first["indices"] == [0, 1]
    anchors = net.anchors("VN", issuer, key, ANCHORS)
    for i in range(0, ANCHORS, 200):  # several batches, so several checkpoints
        net.submit("VN", anchors[i:i + 200])
    _th_issuer, _, th_reg = net.register_issuer("TH", "fda")
    net.submit("TH", th_reg)
    sizes = {"VN": 2 + ANCHORS, "TH": 2}
    for log, size in sizes.items():
        net.wait_final(log, size)
    return {"issuer": issuer, "entries": {"VN": reg + anchors, "TH": th_reg}, "sizes": sizes}


def test_every_node_serves_final_checkpoints_and_proofs(net: Net, written: dict[str, Any]) -> None:
    for node in net.ids:
        for log, raws in written["entries"].items():
            cp, _cosigs = net.verified_checkpoint(node, log)
            assert cp.size == len(raws), f"{node} serves {log} at {cp.size}"
            # The entries as stored are the entries as submitted, byte for byte.
            got: list[bytes] = []
            while len(got) < cp.size:
                resp = net.get(node, f"/logs/{log}/entries?start={len(got)}&end={cp.size}")
                assert resp.status == 200 and resp.content_type == "application/cbor", resp
                got += cbor.decode(resp.body)
            assert got == raws
            # Inclusion proofs against the checkpoint root, for a spread of indices.
            for index in sorted({0, 1, cp.size // 2, cp.size - 1}):
                resp = net.get(node, f"/logs/{log}/proof/inclusion?index={index}&size={cp.size}")
                assert resp.status == 200, resp
                proof = [base64.b64decode(h) for h in resp.json()["proof"]]
                merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(raws[index]), proof, cp.root_hash)
            # Consistency between two sizes every node holds.
            resp = net.get(node, f"/logs/{log}/proof/consistency?from=1&to={cp.size}")
            assert resp.status == 200, resp
            proof = [base64.b64decode(h) for h in resp.json()["proof"]]
            merkle.verify_consistency(1, cp.size, proof, merkle.leaf_hash(raws[0]), cp.root_hash)


def test_registry_query_answers_with_proofs_from_every_node(net: Net, written: dict[str, Any]) -> None:
    issuer = written["issuer"]
    raws = written["entries"]["VN"]
    for node in net.ids:
        resp = net.get(node, f"/registry/issuers/{urllib.parse.quote(issuer, safe='')}")
        assert resp.status == 200, f"{node}: {resp}"
        doc = resp.json()
        assert doc["log"] == "VN" and doc["final_size"] == len(raws)
        answer = doc["answer"]
        assert answer["issuer"] == issuer and answer["status"] == "active" and len(answer["keys"]) == 1, answer
        # The checkpoint in the answer verifies like the one served on its own.
        cp, _cosigs = net.verified_checkpoint(node, "VN")
        assert Checkpoint.parse(doc["checkpoint"].split("\n\n")[0] + "\n") == cp
        indices = [e["index"] for e in doc["entries"]]
        assert 0 in indices, f"the answer does not rest on the issuer.register entry: {indices}"
        for e in doc["entries"]:
            entry = base64.b64decode(e["entry"])
            assert entry == raws[e["index"]]
            proof = [base64.b64decode(h) for h in e["proof"]]
            merkle.verify_inclusion(e["index"], cp.size, merkle.leaf_hash(entry), proof, cp.root_hash)
        # The state proof: the issuer's whole list of entries under a final checkpoint's state root, so no later
        # entry (a suspension) is hidden.
        opened = open_answer(base64.b64decode(doc["state"]), net.chain(), "VN")
        (value,) = opened.values.values()
        assert value is not None and [i for i, _ in value.entries] == [0]
    # An anchor lookup also answers with a proof of the anchor entry.
    digest = hashlib.sha256(f"{issuer}  credential 7".encode()).hexdigest()
    resp = net.get("KH", f"/registry/anchors/{digest}")
    assert resp.status == 200, resp
    doc = resp.json()
    assert [e["index"] for e in doc["entries"]] == [2 + 7], doc
    # and a credential that never had a status change answers with a proof of absence
    resp = net.get("LA", f"/registry/credentials/{urllib.parse.quote(issuer, safe='')}/{'00' * 16}")
    assert resp.status == 200, resp
    opened = open_answer(base64.b64decode(resp.json()["state"]), net.chain(), "VN")
    assert list(opened.values.values()) == [None]


# --------------------------------------------------------------------------- an independent reader


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 Merkle tree hash over leaf hashes, with hashlib only."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    assert pos == len(data), "entry bundle ends inside an entry"
    return out


def _tile_paths(level: str, count: int) -> list[tuple[str, int]]:
    """C2SP tlog-tiles paths of the tiles covering ``count`` items of one level, with their widths."""
    out = [(f"tile/{level}/{encode_index(n)}", 256) for n in range(count // 256)]
    if count % 256:
        out.append((f"tile/{level}/{encode_index(count // 256)}.p/{count % 256}", count % 256))
    return out


def test_reader_recomputes_roots_from_tiles(net: Net, written: dict[str, Any]) -> None:
    for node in ("KH", "LA"):  # a replica, as any outside reader would use
        for log in net.ids:
            resp = net.get(node, f"/logs/{log}/checkpoint")
            if log not in written["sizes"]:
                assert resp.status == 404  # nothing written, nothing final
                continue
            cp, _ = net.verified_checkpoint(node, log)
            # Entry bundles -> leaf hashes.
            leaves: list[bytes] = []
            for path, width in _tile_paths("entries", cp.size):
                r = net.get(node, f"/logs/{log}/{path}")
                assert r.status == 200, f"{node} {path}: {r}"
                entries = _bundle(r.body)
                assert len(entries) == width
                leaves += [hashlib.sha256(b"\x00" + e).digest() for e in entries]
            assert hashlib.sha256(b"\x00" + written["entries"][log][-1]).digest() == leaves[-1]
            # Level-0 hash tiles hold exactly those leaf hashes.
            tiled: list[bytes] = []
            for path, width in _tile_paths("0", cp.size):
                r = net.get(node, f"/logs/{log}/{path}")
                assert r.status == 200 and len(r.body) == 32 * width, f"{node} {path}: {r}"
                tiled += [r.body[i:i + 32] for i in range(0, len(r.body), 32)]
            assert tiled == leaves
            # Level-1 tiles hold the roots of each complete run of 256 leaves.
            for path, width in _tile_paths("1", cp.size // 256):
                r = net.get(node, f"/logs/{log}/{path}")
                assert r.status == 200 and len(r.body) == 32 * width, f"{node} {path}: {r}"
                for i in range(width):
                    assert r.body[32 * i:32 * i + 32] == _mth(leaves[256 * i:256 * (i + 1)])
            assert _mth(leaves) == cp.root_hash, f"{node}: the tiles of {log} do not hash to the checkpoint root"
    # VN's log is big enough for a level-1 tile; the reader checked it.
    assert written["sizes"]["VN"] >= 512
