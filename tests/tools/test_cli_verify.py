"""``mekong verify`` and ``verify-signature``: a replica synced from an untrusted node, verdicts as exit codes."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Invoke, Scenario
from netfixture import Liar, Network

from ledger.bodies import IssuerRegister
from ledger.checkpoint import Checkpoint
from ledger.entries import make_entry
from ledger.note import Note
from ledger.roots import Root, SignedRoot
from tools.client.replica import Replica


def test_verify_syncs_a_replica_and_passes(scenario: Scenario) -> None:
    r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["indication"] == "TOTAL-PASSED" and doc["exit_code"] == 0
    assert doc["issuer"] == "VN/customs-coo" and doc["proof_of_existence"]["log"] == "VN"
    assert doc["sync"]["answered"] == [scenario.node.url] and doc["sync"]["evidence"] == []
    assert doc["sync"]["logs"]["VN"]["after"] == 3 and doc["replica"]["logs"]["VN"]["final_size"] == 3
    with Replica.open(scenario.replica) as rep:  # what the replica holds replays cleanly and is final
        fin = rep.logs["VN"].finality(3)
        assert rep.logs["VN"].size == 3 and fin is not None and fin.final
        assert rep.nodes == [scenario.node.url]
    # Later runs reuse the nodes and pin of the replica.
    r = scenario.verify("--as-member", "TH")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("TOTAL-PASSED") and "synced now from" in r.stdout


def test_verify_as_a_member_without_policy_is_indeterminate(scenario: Scenario) -> None:
    r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "KH")
    assert r.exit_code == 2
    assert r.stdout.startswith("INDETERMINATE / CHAIN_CONSTRAINTS_FAILURE")


def test_revoked_credential_fails(scenario: Scenario) -> None:
    scenario.ok("credential", "suspend", scenario.credential, "--reason", "inquiry",
                *scenario.entry_args(scenario.issuer_key))
    r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH")
    assert r.exit_code == 2 and "SUSPENDED" in r.stdout.splitlines()[0]
    scenario.ok("credential", "revoke", scenario.credential, *scenario.entry_args(scenario.issuer_key))
    r = scenario.verify("--as-member", "TH")
    assert r.exit_code == 1
    assert r.stdout.startswith("TOTAL-FAILED / REVOKED")


def test_offline_with_a_stale_replica_shows_its_age(scenario: Scenario) -> None:
    assert scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH").exit_code == 0
    scenario.node.stop()  # no node needed from here on
    later = int(time.time()) + 3 * 86400
    r = scenario.verify("--offline", "--as-member", "TH", "--now", later)
    assert r.exit_code == 2, r.output
    assert r.stdout.startswith("INDETERMINATE / TRY_LATER")
    assert "OFFLINE: last synced" in r.stdout and "(3 d ago)" in r.stdout
    fresh = scenario.verify("--offline", "--as-member", "TH", "--json")
    assert fresh.exit_code == 0 and json.loads(fresh.stdout)["offline"] is True
    scenario.node.start()


def test_offline_without_replica_is_a_tool_error(invoke: Invoke, tmp_path: Path) -> None:
    cred = tmp_path / "c.cbor"
    cred.write_bytes(b"\xd2\x84")
    r = invoke("verify", "--full", cred, "--offline", "--as-member", "TH", "--replica", tmp_path / "none")
    assert r.exit_code == 4
    assert "no replica" in r.stderr and "without --offline" in r.stderr


def test_malformed_credential_is_total_failed(scenario: Scenario) -> None:
    assert scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH").exit_code == 0
    bad = scenario.dir / "bad.cbor"
    bad.write_bytes(scenario.credential.read_bytes()[:-7])
    r = scenario.verify("--offline", "--as-member", "TH", "--json", subject=bad)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert (doc["indication"], doc["sub_indication"]) == ("TOTAL-FAILED", "FORMAT_FAILURE")


def test_first_sync_needs_a_pin(scenario: Scenario) -> None:
    r = scenario.verify("--node", scenario.node.url, "--as-member", "TH")
    assert r.exit_code == 4 and "--pin HASH" in r.stderr
    r = scenario.verify("--node", scenario.node.url, "--as-member", "TH", "--pin", "ab" * 32)
    assert r.exit_code == 4 and "not the pinned" in r.stderr
    assert not Replica.exists(scenario.replica)


def test_usage_errors(scenario: Scenario) -> None:
    assert scenario.verify("--node", scenario.node.url, "--pin", scenario.pin).exit_code == 3  # no --as-member
    assert scenario.verify("--as-member", "Thailand").exit_code == 3
    r = scenario.verify("--as-member", "TH")  # no node and no replica yet
    assert r.exit_code == 3 and "--node URL" in r.stderr


def test_node_unreachable(scenario: Scenario, closed_port_url: str) -> None:
    r = scenario.verify("--node", closed_port_url, "--pin", scenario.pin, "--as-member", "TH")
    assert r.exit_code == 4
    assert f"node {closed_port_url} unreachable" in r.stderr
    assert scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH").exit_code == 0
    r = scenario.verify("--node", closed_port_url, "--as-member", "TH")
    assert r.exit_code == 4 and "add --offline" in r.stderr


def test_one_unreachable_node_of_two_is_a_warning(scenario: Scenario, closed_port_url: str) -> None:
    r = scenario.verify("--node", closed_port_url, "--node", scenario.node.url, "--pin", scenario.pin,
                        "--as-member", "TH")
    assert r.exit_code == 0, r.output
    assert f"unreachable: {closed_port_url}" in r.stdout


def test_replica_ignores_what_is_not_final(scenario: Scenario) -> None:
    net = scenario.net
    # An entry the quorum has not cosigned: with KH and LA down only the owner and TH witness (quorum is 3).
    net.wait_replicated()
    net.stop("KH")
    net.stop("LA")
    raw = make_entry("VN", "issuer.register", int(time.time()),
                     IssuerRegister("VN/late", "Late", ("certificate-of-origin",), "high", "VN"), net.admin["VN"])
    assert net.submit("VN", [raw], wait_final=False)["size"] == 4
    net.wait_until("VN's newest checkpoint carries TH's cosignature", lambda: len(
        net.host("VN").storage.cosignatures("VN", 4)) == 2)
    liar = Liar(net, "VN", "VN")  # serves that checkpoint as if it were final
    try:
        r = scenario.verify("--node", liar.url, "--node", scenario.node.url, "--pin", scenario.pin,
                            "--as-member", "TH", "--json")
    finally:
        liar.stop()
        net.start("KH")
        net.start("LA")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["sync"]["logs"]["VN"]["after"] == 3  # the fourth entry was not fetched
    assert doc["sync"]["logs"]["VN"]["source"] == scenario.node.url
    assert any("2 valid cosignatures; quorum is 3" in p for p in doc["sync"]["problems"])


@pytest.mark.parametrize("forged_first", [False, True], ids=["honest-node-first", "forged-node-first"])
def test_split_view_is_evidence_and_never_passes(scenario: Scenario, tmp_path: Path, forged_first: bool) -> None:
    # A second network with the same keys whose VN log holds other entries, finalised by a quorum: more than f
    # members colluded. Whatever the order of --node, the verdict is INDETERMINATE/EQUIVOCATION, the same in
    # the text, the JSON and the exit code (Trust II item 2).
    (tmp_path / "fork").mkdir()
    fork = Network(tmp_path / "fork")
    try:
        t = int(time.time())
        fork.submit("VN", [make_entry("VN", "issuer.register", t, IssuerRegister(
            f"VN/{name}", "Forged", ("certificate-of-origin",), "high", "VN"), fork.admin["VN"])
            for name in ("customs-coo", "a", "b")])
        nodes = [scenario.node.url, fork.urls["TH"]]
        if forged_first:
            nodes.reverse()
        r = scenario.verify(*(a for u in nodes for a in ("--node", u)), "--pin", scenario.pin, "--as-member", "TH")
        assert r.exit_code == 2, r.output
        assert r.stdout.startswith("INDETERMINATE / EQUIVOCATION")
        assert "SPLIT VIEW" in r.stdout and "NOT TRUSTED" in r.stdout
        with Replica.open(scenario.replica) as rep:
            assert [e.kind for e in rep.storage.evidence("VN")] == ["split-view"]
        again = scenario.verify("--offline", "--as-member", "TH", "--json")  # the evidence stays with the replica
        doc = json.loads(again.stdout)
        assert again.exit_code == 2 and doc["exit_code"] == 2
        assert (doc["indication"], doc["sub_indication"]) == ("INDETERMINATE", "EQUIVOCATION")
        # One file anyone checks offline against the pinned genesis (spec 7.6); a changed byte proves nothing.
        ev = scenario.dir / "split-view.cbor"
        scenario.ok("audit", "evidence", "export", "--replica", scenario.replica, "--out", ev)
        r = scenario.invoke("audit", "evidence", "verify", ev, "--genesis", scenario.net.genesis_file, "--pin",
                            scenario.pin)
        assert r.exit_code == 0 and r.stdout.startswith("PROVEN: log VN: two final checkpoints"), r.output
        data = bytearray(ev.read_bytes())
        data[-40] ^= 1
        ev.write_bytes(bytes(data))
        r = scenario.invoke("audit", "evidence", "verify", ev, "--genesis", scenario.net.genesis_file, "--pin",
                            scenario.pin)
        assert r.exit_code == 1 and r.stdout.startswith("NOT PROVEN"), r.output
    finally:
        fork.close()


def test_a_node_serving_entries_out_of_order_is_passed_over_page_by_page(scenario: Scenario) -> None:
    # The liar serves the genuine final checkpoint but every page of entries with two swapped: each keeps
    # every rule. The replica stores no page that does not lead to the checkpoint's root (spec 7.3 step 3)
    # and takes the page from the next node.
    liar = Liar(scenario.net, "VN", reorder=True)
    try:
        r = scenario.verify("--node", liar.url, "--node", scenario.node.url, "--pin", scenario.pin,
                            "--as-member", "TH", "--json")
    finally:
        liar.stop()
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["indication"] == "TOTAL-PASSED", doc
    assert liar.served, "the liar was never asked for entries"
    assert any(liar.url in p and "not those of the checkpoint" in p for p in doc["sync"]["problems"]), doc["sync"]
    host = scenario.net.host("VN")
    with Replica.open(scenario.replica) as rep:
        for log, lg in rep.logs.items():
            assert lg.root_hash() == host.logs[log].root_hash(lg.size), log
        assert rep.logs["VN"].size == 3


def test_a_node_withholding_a_newer_root_is_noticed(scenario: Scenario) -> None:
    # Root version 2 is adopted by every node; a node that serves only version 1 cannot make the verifier
    # judge under version 1 as if it were the newest: the checkpoints it relays name version 2 (spec 4.3.5),
    # vouched for by a quorum of the members of version 1 (Trust II item 3).
    net = scenario.net
    g = net.genesis.root
    v2 = Root(g.network, 2, g.root_hash, g.members, g.quorum, g.threshold, g.faulty, int(time.time()))
    signed = SignedRoot.create(v2, [net.admin[m] for m in ("KH", "LA", "TH")])
    req = urllib.request.Request(scenario.node.url + "/governance/roots", data=signed.to_cbor(),
                                 headers={"Content-Type": "application/cbor"})
    urllib.request.urlopen(req, timeout=10).close()
    net.wait_until("every log is final under version 2", lambda: all(
        Checkpoint.parse(Note.parse(net.host(m).final[m][1]).text).extensions[0].startswith("governance 2 ")
        for m in ("VN", "TH")))
    liar = Liar(net, "VN", hide_roots_above=1)
    try:
        r = scenario.verify("--node", liar.url, "--pin", scenario.pin, "--as-member", "TH", "--json")
    finally:
        liar.stop()
    doc = json.loads(r.stdout)
    assert r.exit_code == 2 and (doc["indication"], doc["sub_indication"]) == ("INDETERMINATE", "TRY_LATER"), doc
    check = next(c for c in doc["checks"] if c["name"] == "governance-current")
    assert "root v2, which no node served; judged under v1" in check["detail"]
    assert doc["sync"]["withheld_root"] == 2
    # An honest node serves version 2: the verifier catches up and passes, judged under version 2.
    r = scenario.verify("--node", scenario.node.url, "--as-member", "TH", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["governance"]["version"] == 2, doc


def test_a_frozen_node_is_named_and_the_newest_checkpoint_wins(scenario: Scenario, invoke: Invoke) -> None:
    # A node that keeps serving an old final checkpoint (to hide what came later) is outvoted by any node
    # serving a newer verified one, and named, by verify and by audit compare (Trust II items 1 and 6).
    net = scenario.net
    frozen = Liar(net, "VN", freeze=True)
    try:
        scenario.ok("credential", "suspend", scenario.credential, "--reason", "after the freeze",
                    *scenario.entry_args(scenario.issuer_key))
        r = scenario.verify("--node", frozen.url, "--node", scenario.node.url, "--pin", scenario.pin,
                            "--as-member", "TH", "--json")
        doc = json.loads(r.stdout)
        assert r.exit_code == 2 and doc["sub_indication"] == "SUSPENDED", doc  # the newest checkpoint won
        assert any(x.startswith(f"node {frozen.url} serves log VN final at size 3, behind size 4")
                   for x in doc["sync"]["lagging"]), doc["sync"]
        r = invoke("audit", "compare", "--node", frozen.url, "--node", scenario.node.url, "--pin", scenario.pin)
        assert f"lagging: node {frozen.url} serves log VN final at size 3, behind size 4" in r.stdout, r.output
    finally:
        frozen.stop()


def test_a_frozen_node_is_caught_by_age_while_heartbeats_keep_the_honest_answer_fresh(scenario: Scenario) -> None:
    # Spec 7.4.4 (Trust II item 1): a node that keeps serving the checkpoint from before a suspension hides it
    # only for as long as the freshest cosignatures on that checkpoint are younger than the verifier's max
    # age; an idle log's newest checkpoint is re-cosigned by heartbeats (400 ms here), so the honest network
    # always answers fresh.
    frozen = Liar(scenario.net, "VN", freeze=True)
    try:
        scenario.ok("credential", "suspend", scenario.credential, "--reason", "hidden by a frozen node",
                    *scenario.entry_args(scenario.issuer_key))
        time.sleep(3.0)  # nothing is appended meanwhile: only heartbeats
        r = scenario.invoke("verify", "--full", scenario.credential, "--replica", scenario.dir / "frozen-replica", "--node",
                            frozen.url, "--pin", scenario.pin, "--as-member", "TH", "--max-age", "2", "--json")
        doc = json.loads(r.stdout)
        assert r.exit_code == 2 and doc["sub_indication"] == "TRY_LATER", doc
        state = next(s for s in doc["ledger_state"] if s["log"] == "VN")
        assert state["size"] == 3 and state["age_seconds"] >= 2, state
        r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH", "--max-age",
                            "2", "--json")
        doc = json.loads(r.stdout)
        assert r.exit_code == 2 and doc["sub_indication"] == "SUSPENDED", doc
        assert all(s["age_seconds"] <= 2 for s in doc["ledger_state"]), doc["ledger_state"]
    finally:
        frozen.stop()


def test_verify_signature(scenario: Scenario) -> None:
    doc = scenario.dir / "invoice.xml"
    doc.write_bytes(b"<Invoice>rice, 20 t</Invoice>")
    sig = scenario.dir / "invoice.sig"
    scenario.ok("sign", doc, "--key", scenario.issuer_key, "--passphrase-env", "PP", "--out", sig,
                "--document-type", "certificate-of-origin")
    scenario.ok("credential", "anchor", sig, "--issuer", "VN/customs-coo", *scenario.entry_args(scenario.issuer_key))
    r = scenario.invoke("verify-signature", doc, sig, "--full", "--replica", scenario.replica, "--node",
                        scenario.node.url, "--pin", scenario.pin, "--as-member", "TH", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["subject"] == "document-signature" and report["proof_of_existence"] is not None
    doc.write_bytes(b"<Invoice>rice, 200 t</Invoice>")
    r = scenario.invoke("verify-signature", doc, sig, "--replica", scenario.replica, "--offline", "--as-member", "TH")
    assert r.exit_code == 1
    assert r.stdout.startswith("TOTAL-FAILED / HASH_FAILURE")


def test_policy_file(scenario: Scenario) -> None:
    policy = scenario.dir / "policy.json"
    policy.write_text(json.dumps({"as_member": "TH", "min_loa": "high", "document_types": ["e-invoice"]}))
    r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--policy", policy)
    assert r.exit_code == 2
    assert "CHAIN_CONSTRAINTS_FAILURE" in r.stdout.splitlines()[0]
    policy.write_text(json.dumps({"as_member": "TH", "colour": "blue"}))
    assert scenario.verify("--offline", "--policy", policy).exit_code == 4
