"""Joining and leaving, on real node processes and the real CLI (specs 5.4.2, 6.2.9, 7.4.2).

Four founders (quorum 3) are joined by Myanmar through governance root version 2 (five members, quorum
4): Myanmar's operator runs ``mekong node init --roots-from`` (the chain verified from the pinned genesis),
starts the node empty; it catches up, writes its own log and witnesses the others. Then root version 3
removes Laos: its node takes no more entries, its log is frozen at its last final checkpoint everywhere,
and a credential its issuer anchored before still verifies, the report saying when Laos left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing
import pytest

from ledger import cbor
from ledger.bodies import IssuerRegister
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entries import make_entry
from ledger.finality import checkpoint_extensions, open_signed, state_reference
from ledger.governance import GovernanceChain
from ledger.note import NoteSigner
from ledger.roots import Member, Root, SignedRoot
from tests.integration.conftest import request
from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = REPO / "tests" / "tools" / "coo.json"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEKONG_")}
    env[dn.PASSPHRASE_ENV] = dn.passphrase().decode()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _chain(net: Net, url: str) -> GovernanceChain:
    current = request(url, "GET", "/governance/roots").json()["current"]
    chain = GovernanceChain(net.genesis, net.genesis.root_hash)
    for v in range(2, current + 1):
        chain.add(SignedRoot.from_cbor(request(url, "GET", f"/governance/roots/{v}").body))
    return chain


def _adopt(net: Net, signed: SignedRoot, urls: list[str]) -> None:
    assert net.post("KH", "/governance/roots", signed.to_cbor()).status == 200
    net.wait_until(f"every node adopts root version {signed.root.version}", lambda: all(
        request(u, "GET", "/governance/roots").json()["current"] == signed.root.version for u in urls), timeout=30)


def _final_size(url: str, log: str) -> int:
    return request(url, "GET", "/status").json()["logs"][log]["final_size"] or 0


@pytest.fixture(scope="module")
def joined(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Myanmar added by root version 2, its node set up with the real CLI and running."""
    work = tmp_path_factory.mktemp("membership")
    issuer, key, entries = net.register_issuer("LA", "coo")
    net.wait_final("LA", net.submit("LA", entries)["size"])
    admin, node_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    net.write_keys(work, {"mm-admin.key": admin, "mm-node.key": node_key, "la-issuer.key": key,
                          "th-admin.key": net.admin_key("TH")})
    port = dn.free_base_port(1)
    url = f"http://127.0.0.1:{port}"
    g = net.genesis.root
    mm = Member("MM", "Myanmar customs", (bytes(admin.verify_key),), bytes(node_key.verify_key), (url,))
    v2 = Root(g.network, 2, g.root_hash, tuple(sorted((*g.members, mm), key=lambda m: m.id)), 4, 4, 1,
              int(time.time()))
    # The threshold (3) of version 1's members, and the member it adds.
    _adopt(net, SignedRoot.create(v2, [net.admin_key(m) for m in ("KH", "TH", "VN")] + [admin]),
           [net.url(m) for m in net.ids])
    net.mekong_ok(work, "node", "init", "--member", "MM", "--network", g.network, "--data-dir", work / "mm-data", "--listen",
        f"127.0.0.1:{port}", "--node-key", "mm-node.key", "--passphrase-env", dn.PASSPHRASE_ENV, "--genesis",
        net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--roots-from", net.url("KH"), "--out", "mm.toml")
    log = open(work / "mm.log", "wb")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "node", "start", "--config", "mm.toml"], cwd=work,
                            env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        net.wait_until("MM's node answers", lambda: request(url, "GET", "/healthz", timeout=2).status == 200,
                       timeout=30)
        yield {"url": url, "admin": admin, "work": work, "issuer": issuer, "issuer_key": key, "log": work / "mm.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_member_added_by_governance_joins_catches_up_and_witnesses(net: Net, joined: dict[str, Any]) -> None:
    url = joined["url"]
    # It catches up with every founder's log from its peers...
    want = {m: _final_size(net.url("KH"), m) for m in net.ids}
    net.wait_until("MM holds every log as final", lambda: all(_final_size(url, m) >= want[m] for m in net.ids),
                   timeout=30)
    # ... writes its own log under version 2, final with quorum 4 ...
    entry = make_entry("MM", "issuer.register", int(time.time()), IssuerRegister(
        "MM/customs", "Myanmar customs", ("certificate-of-origin",), "high", "MM"), joined["admin"], root=2)
    resp = request(url, "POST", "/logs/MM/entries?wait=final", cbor.encode([entry]), {"Content-Type":
                                                                                       "application/cbor"})
    assert resp.status == 200 and resp.json()["final_size"], (resp, joined["log"].read_text()[-2000:])
    net.wait_final("MM", resp.json()["size"])
    # ... and witnesses the founders' logs: its cosignature counts on a new checkpoint of VN's log.
    answer = net.submit("VN", [make_entry("VN", "issuer.register", net.now("VN"), IssuerRegister(
        "VN/joined", "after MM joined", ("certificate-of-origin",), "high", "VN"), net.admin_key("VN"), root=2)])

    def mm_cosigned() -> bool:
        body = request(url, "GET", "/logs/VN/checkpoint").body
        _, cp, fin = open_signed(body, _chain(net, url), "VN")
        return cp.size >= answer["size"] and fin.final and "MM" in fin.cosigners

    net.wait_until("a final checkpoint of VN carries MM's cosignature", mm_cosigned, timeout=30)


def test_a_removed_members_log_is_frozen_and_its_credentials_keep_their_proof(
        net: Net, joined: dict[str, Any]) -> None:
    work, pp = joined["work"], ("--passphrase-env", dn.PASSPHRASE_ENV)
    net.mekong_ok(work, "policy", "set", "--member", "TH", "--recognise", "LA:certificate-of-origin:substantial", "--node",
        net.url("TH"), "--key", "th-admin.key", *pp)
    net.mekong_ok(work, "credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
        joined["issuer"], "--key", "la-issuer.key", "--out", "la-coo.cbor", "--exp", "2100-01-01", *pp)
    net.mekong_ok(work, "credential", "anchor", "la-coo.cbor", "--node", net.url("LA"), "--key", "la-issuer.key", *pp)
    urls = [net.url(m) for m in net.ids] + [joined["url"]]
    net.wait_until("every node holds LA's anchor as final", lambda: len({_final_size(u, "LA") for u in urls}) == 1,
                   timeout=30)
    frozen = _final_size(net.url("KH"), "LA")
    time.sleep(1.1)  # the removal is issued after the anchor's proof of existence
    v2 = _chain(net, net.url("KH")).current
    v3 = dataclasses.replace(v2, version=3, previous=v2.root_hash, members=tuple(
        m for m in v2.members if m.id != "LA"), quorum=3, threshold=3, issued_at=int(time.time()))
    _adopt(net, SignedRoot.create(v3, [net.admin_key(m) for m in ("KH", "TH", "VN")] + [joined["admin"]]), urls)
    # Laos's node takes no more entries ...
    late = net.anchors("LA", joined["issuer"], joined["issuer_key"], 1, tag="after leaving")
    resp = net.post("LA", "/logs/LA/entries", cbor.encode(late))
    assert resp.status == 422 and "frozen" in resp.json()["message"], resp
    # ... and its log stays readable, final at the same size, on every node.
    time.sleep(1.0)
    assert {_final_size(u, "LA") for u in urls} == {frozen}
    # A credential anchored before Laos left still verifies; the report says when it left.
    r = net.mekong(work, "verify", "la-coo.cbor", "--node", net.url("TH"), "--as-member", "TH", "--genesis",
                net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["name"]: c["detail"] for c in json.loads(r.stdout)["checks"]}
    assert "LA left the network at governance root v3" in checks["member-current"], checks


def test_witnesses_cosign_nothing_for_a_removed_members_node(net: Net, joined: dict[str, Any]) -> None:
    # Attack: Laos's operator, removed by version 3, keeps its node key and asks the witnesses to cosign its
    # log's checkpoint again, naming version 2 (where the key is Laos's) or version 3 (which lists no Laos),
    # as a C2SP client would (no peer authorisation). No witness cosigns; the log stays frozen everywhere.
    urls = {m: net.url(m) for m in net.ids if m != "LA"} | {"MM": joined["url"]}
    chain = _chain(net, urls["KH"])
    assert chain.current.version == 3 and "LA" not in chain.current.member_ids
    frozen = _final_size(urls["KH"], "LA")
    _, cp, fin = open_signed(request(urls["KH"], "GET", "/logs/LA/checkpoint").body, chain, "LA")
    assert fin.final and cp.size == frozen
    for version in (2, 3):
        forged = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root_hash, checkpoint_extensions(
            chain.root_at(version), state_reference(cp))), NoteSigner(cp.origin, net.node_key("LA"))).to_bytes()
        for witness, url in urls.items():
            old = 0
            for _ in range(2):  # a 409 tells the size the witness last cosigned: ask again with it
                resp = request(url, "POST", "/witness/add-checkpoint", f"old {old}\n\n".encode() + forged,
                               {"Content-Type": "text/plain; charset=utf-8"})
                if resp.status != 409:
                    break
                old = int(resp.body)
            assert resp.status in (403, 404), (witness, version, old, resp.status, resp.body[:200])
    assert {_final_size(u, "LA") for u in urls.values()} == {frozen}
