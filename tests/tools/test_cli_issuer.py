"""``mekong issuer``, ``policy``, credential status and ``governance submit/show --node`` against real nodes in-process."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import PASSPHRASE, Invoke, NodeHandle, Scenario, make_key
from netfixture import Network

from credentials.cwt import UnverifiedCredential
from ledger.bodies import CredentialAnchor
from ledger.entries import make_entry
from ledger.keys import key_id
from node import keystore

T = TypeVar("T")


def _some(value: T | None) -> T:
    assert value is not None
    return value


def test_scenario_entries_are_on_the_ledger(scenario: Scenario) -> None:
    state = scenario.net.state_of("VN")
    issuer = state.issuer("VN/customs-coo")
    assert issuer is not None and issuer.document_types == ("certificate-of-origin",)
    kid = key_id(keystore.read_public_key(scenario.issuer_key))
    key = state.key(kid)
    assert key is not None and key.issuer == "VN/customs-coo"
    policy = scenario.net.state_of("TH").policy("TH")
    assert policy is not None and any(r.covers("VN", "certificate-of-origin", "high") for r in policy.rules)
    cred = UnverifiedCredential.decode(scenario.credential.read_bytes())
    assert [a.log for a in state.anchors(cred.digest)] == ["VN"]


def test_entry_json_output(scenario: Scenario) -> None:
    r = scenario.ok("issuer", "update", "VN/customs-coo", "--loa", "substantial", "--reason", "audit",
                    *scenario.entry_args(scenario.vn_admin), "--json")
    doc = json.loads(r.stdout)
    assert doc["type"] == "issuer.update" and doc["log"] == "VN" and doc["index"] == 3
    assert doc["final"] is True and doc["root_version"] == 1
    assert doc["signer_key_id"] == key_id(keystore.read_public_key(scenario.vn_admin)).hex()
    assert _some(scenario.net.state_of("VN").issuer("VN/customs-coo")).loa == "substantial"


def test_the_node_refusal_names_the_rule(scenario: Scenario) -> None:
    r = scenario.invoke("issuer", "register", "VN/customs-coo", "--name", "Again", "--document-type", "e-invoice",
                        "--jurisdiction", "VN", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 4
    assert "spec 6.3.7" in r.stderr and "already registered" in r.stderr
    # Another member's admin key may not write VN's log.
    r = scenario.invoke("issuer", "register", "VN/other", "--name", "Other", "--document-type", "e-invoice",
                        "--jurisdiction", "VN", *scenario.entry_args(scenario.th_admin))
    assert r.exit_code == 4 and "spec 6.3.5" in r.stderr


def test_unknown_member(scenario: Scenario) -> None:
    r = scenario.invoke("issuer", "register", "ZZ/customs", "--name", "Nobody", "--document-type", "e-invoice",
                        "--jurisdiction", "ZZ", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 4
    assert "refused" in r.stderr and "ZZ" in r.stderr
    r = scenario.invoke("issuer", "register", "VN/x", "--member", "TH", "--name", "X", "--document-type", "e-invoice",
                        "--jurisdiction", "VN", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 3 and "belongs to member VN" in r.stderr


def test_key_rotation_and_revocation(scenario: Scenario) -> None:
    old = key_id(keystore.read_public_key(scenario.issuer_key))
    new = key_id(keystore.read_public_key(scenario.next_key))
    # Signed by a key that was not committed to: refused.
    stranger = make_key(scenario.dir / "stranger.key")
    r = scenario.invoke("issuer", "rotate-key", "VN/customs-coo", "--old-kid", old.hex(),
                        *scenario.entry_args(stranger))
    assert r.exit_code == 4 and "spec 6.3.10" in r.stderr
    r = scenario.ok("issuer", "rotate-key", "VN/customs-coo", "--old-key", scenario.issuer_key,
                    *scenario.entry_args(scenario.next_key), "--json")
    assert json.loads(r.stdout)["kid"] == new.hex()
    assert _some(scenario.net.state_of("VN").key(new)).issuer == "VN/customs-coo"
    scenario.ok("issuer", "revoke-key", "VN/customs-coo", "--kid", old.hex(), "--reason", "compromised",
                "--effective", "2021-01-01", *scenario.entry_args(scenario.vn_admin))
    assert _some(scenario.net.state_of("VN").key(old)).history[-1].status == "revoked"
    r = scenario.invoke("issuer", "revoke-key", "VN/customs-coo", "--reason", "ceased",
                        *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 3 and "--kid HEX or --issuer-key FILE" in r.stderr


def test_policy_from_file_and_bad_rules(scenario: Scenario) -> None:
    rules = scenario.dir / "rules.json"
    rules.write_text(json.dumps([{"member": "*", "document_types": ["*"], "min_loa": "high"}]))
    scenario.ok("policy", "set", "--member", "TH", "--rules", rules, *scenario.entry_args(scenario.th_admin, "TH"))
    assert any(r.covers("LA", "e-invoice", "high") for r in _some(scenario.net.state_of("TH").policy("TH")).rules)
    r = scenario.invoke("policy", "set", "--member", "TH", "--recognise", "VN-certificate",
                        *scenario.entry_args(scenario.th_admin, "TH"))
    assert r.exit_code == 3 and "MEMBER:TYPES:MIN_LOA" in r.stderr
    r = scenario.invoke("policy", "set", "--member", "TH", "--recognise", "VN:coo:excellent",
                        *scenario.entry_args(scenario.th_admin, "TH"))
    assert r.exit_code == 3 and "min_loa" in r.stderr


def test_status_by_credential_id(scenario: Scenario) -> None:
    cti = UnverifiedCredential.decode(scenario.credential.read_bytes()).claims.cti
    scenario.ok("credential", "suspend", "--cti", cti.hex(), "--issuer", "VN/customs-coo",
                *scenario.entry_args(scenario.issuer_key))
    assert _some(scenario.net.state_of("VN").credential("VN/customs-coo", cti)).history[-1].status == "suspended"
    # Another suspension (other bytes: a replay of the same bytes is refused as a duplicate, spec 6.3.18).
    r = scenario.invoke("credential", "suspend", scenario.credential, "--reason", "again",
                        *scenario.entry_args(scenario.issuer_key))
    assert r.exit_code == 4 and "already suspended" in r.stderr
    scenario.ok("credential", "reinstate", scenario.credential, *scenario.entry_args(scenario.issuer_key))


def test_node_unreachable(invoke: Invoke, tmp_path: Path, closed_port_url: str) -> None:
    key = make_key(tmp_path / "admin.key")
    r = invoke("issuer", "register", "VN/customs-coo", "--name", "X", "--document-type", "e-invoice",
               "--jurisdiction", "VN", "--node", closed_port_url, "--key", key, "--passphrase-env", "PP")
    assert r.exit_code == 4
    assert r.stderr.startswith(f"mekong: error: node {closed_port_url} unreachable:")
    r = invoke("issuer", "register", "VN/customs-coo", "--name", "X", "--document-type", "e-invoice",
               "--jurisdiction", "VN", "--node", "localhost:7101", "--key", key, "--passphrase-env", "PP")
    assert r.exit_code == 4 and "not a node URL" in r.stderr


def test_governance_submit_and_show_from_a_node(invoke: Invoke, tmp_path: Path, net: Network,
                                                node: NodeHandle) -> None:
    pin = net.genesis.root_hash.hex()
    r = invoke("governance", "show", "--node", node.url, "--pin", pin, "--save", tmp_path / "roots")
    assert r.exit_code == 0, r.output
    draft = tmp_path / "v2.cbor"
    r = invoke("governance", "propose", "--from", tmp_path / "roots" / "root-v1.cbor", "--set-endpoints", "VN",
               "https://vn.example:7101,https://vn2.example:7101", "--out", draft)
    assert r.exit_code == 0, r.output
    signed = []
    for m in ("KH", "LA", "VN"):
        signed.append(tmp_path / f"v2-{m}.cbor")
        r = invoke("governance", "sign", draft, "--key", tmp_path / "keys" / f"{m}-admin.key", "--out", signed[-1],
                   "--passphrase-env", "PP")
        assert r.exit_code == 0, r.output
    r = invoke("governance", "submit", draft, *signed[:2], "--node", node.url)
    assert r.exit_code == 4 and "threshold is 3" in r.stderr
    r = invoke("governance", "submit", draft, *signed, "--node", node.url, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"] == 2
    assert net.host("VN").chain.current.member("VN").endpoints == ("https://vn.example:7101",
                                                                   "https://vn2.example:7101")
    r = invoke("governance", "show", "--node", node.url, "--pin", pin, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["current"] == 2


def _set_pragma(scenario: Scenario, pragma: str) -> None:
    storage = scenario.net.host("VN").storage
    with storage._lock:  # the test reaches into the node's own connection to break its disk
        pages = storage._conn.execute("PRAGMA page_count").fetchone()[0]
        storage._conn.execute("PRAGMA " + pragma.format(pages=pages))


def test_a_read_only_database_refuses_writes_and_serves_reads(scenario: Scenario) -> None:
    # Trust II item 7: a real SQLite condition (SQLITE_READONLY), not a mock.
    _set_pragma(scenario, "query_only = ON")
    try:
        r = scenario.invoke("issuer", "update", "VN/customs-coo", "--loa", "substantial",
                            *scenario.entry_args(scenario.vn_admin))
        assert r.exit_code == 4 and "(503 read_only)" in r.stderr and "read-only" in r.stderr, r.output
        r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH")
        assert r.exit_code == 0, r.output  # reads go on
    finally:
        _set_pragma(scenario, "query_only = OFF")
    scenario.ok("issuer", "update", "VN/customs-coo", "--loa", "substantial", *scenario.entry_args(scenario.vn_admin))


def test_a_full_disk_refuses_writes_and_serves_reads(scenario: Scenario) -> None:
    # Trust II item 7: a real SQLITE_FULL (the database may not grow by a page), not a mock.
    net = scenario.net
    _set_pragma(scenario, "max_page_count = {pages}")
    key = keystore.load_signing_key(scenario.issuer_key, PASSPHRASE.encode())
    batch = [make_entry("VN", "credential.anchor", int(time.time()), CredentialAnchor(
        "VN/customs-coo", hashlib.sha256(b"full %d" % i).digest()), key) for i in range(500)]
    before = net.host("VN").own.size
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            net.submit("VN", batch)
        body = json.loads(info.value.read())
        assert info.value.code == 507 and body["error"] == "storage_full" and "disk is full" in body["message"]
        assert net.host("VN").own.size == before  # nothing of the batch was stored
        r = scenario.verify("--node", scenario.node.url, "--pin", scenario.pin, "--as-member", "TH")
        assert r.exit_code == 0, r.output  # reads go on
    finally:
        _set_pragma(scenario, "max_page_count = 1073741823")
    assert net.submit("VN", batch)["size"] == before + 500


def test_names_are_checked_before_anything_is_signed(scenario: Scenario) -> None:
    # A misspelt document type, or a member that does not exist, is refused at once, naming what is wrong.
    r = scenario.invoke("issuer", "register", "VN/typo", "--name", "Typo", "--document-type", "certificate-of-orign",
                        "--jurisdiction", "VN", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 3 and "did you mean certificate-of-origin" in r.stderr, r.output
    r = scenario.invoke("issuer", "register", "VN/custom", "--name", "Custom", "--document-type", "rice-grading",
                        "--custom-document-type", "--jurisdiction", "VN", "--json", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 0, r.output  # an agreed custom type goes through when said so
    r = scenario.invoke("policy", "set", "--member", "th", "--recognise", "VM:certificate-of-origin:substantial",
                        *scenario.entry_args(scenario.th_admin, "TH"))
    assert r.exit_code == 3 and "VM is not a member" in r.stderr and "VN" in r.stderr, r.output
    doc = scenario.dir / "invoice.xml"
    doc.write_text("<Invoice/>")
    r = scenario.invoke("sign", doc, "--key", scenario.issuer_key, "--passphrase-env", "PP", "--out",
                        scenario.dir / "sig", "--document-type", "e-invoce")
    assert r.exit_code == 3 and "did you mean e-invoice" in r.stderr, r.output
    r = scenario.invoke("sign", doc, "--key", scenario.issuer_key, "--passphrase-env", "PP", "--out",
                        scenario.dir / "sig", "--document-type", "e-invoice", "--issuer", "VN/customs-coo")
    assert r.exit_code == 0 and "--issuer VN/customs-coo" in r.stdout, r.output


def test_a_submission_that_is_not_final_in_time_says_so_with_exit_status_2(scenario: Scenario) -> None:
    # Two of four witnesses down (quorum 3): the entry is stored, but no checkpoint can become final.
    scenario.net.stop("KH")
    scenario.net.stop("LA")
    r = scenario.invoke("issuer", "register", "VN/slow", "--name", "Slow", "--document-type", "e-invoice",
                        "--jurisdiction", "VN", "--wait-timeout", "3", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 2, r.output
    assert "STORED, NOT FINAL YET" in r.stdout and "exit status 2" in r.stdout
    assert "waiting for a final checkpoint covering entry" in r.stderr
    r = scenario.invoke("issuer", "register", "VN/slow2", "--name", "Slow", "--document-type", "e-invoice",
                        "--jurisdiction", "VN", "--no-wait-final", *scenario.entry_args(scenario.vn_admin))
    assert r.exit_code == 0, r.output  # not waiting: stored is success
    scenario.net.start("KH")
    scenario.net.start("LA")
