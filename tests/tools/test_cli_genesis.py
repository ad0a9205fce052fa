"""``mekong genesis`` and the offline half of ``mekong governance``: ceremonies with real keys and signatures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Invoke, make_key

from ledger.governance import GovernanceChain, verify_genesis
from ledger.keys import key_id
from ledger.roots import SignedRoot, root_hash
from node import keystore

MEMBERS = ("KH", "TH", "VN")


@pytest.fixture
def founders(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """member -> (admin key file, node key file)."""
    return {m: (make_key(tmp_path / f"{m}-admin.key"), make_key(tmp_path / f"{m}-node.key")) for m in MEMBERS}


def _draft(invoke: Invoke, founders: dict[str, tuple[Path, Path]], out: Path, *extra: str) -> str:
    args: list[object] = ["genesis", "draft", "--network", "gms", "--faulty", "0", "--out", out]
    for i, (m, (admin, node)) in enumerate(founders.items()):
        args += ["--member", m, "--name", f"Member {m}", "--admin-key", admin, "--node-key", node,
                 "--endpoint", f"http://127.0.0.1:{7301 + i}"]
    r = invoke(*args, *extra)
    assert r.exit_code == 0, r.output
    found = re.search(r"ROOT HASH ([0-9a-f]{64})", r.stdout)
    assert found
    return found[1]


def _sign(invoke: Invoke, draft: Path, key: Path, out: Path, *extra: object) -> None:
    r = invoke("genesis", "sign", draft, "--key", key, "--out", out, "--passphrase-env", "PP", *extra)
    assert r.exit_code == 0, r.output


def test_ceremony_draft_sign_assemble(invoke: Invoke, tmp_path: Path, founders: dict[str, tuple[Path, Path]]) -> None:
    draft = tmp_path / "draft.cbor"
    digest = _draft(invoke, founders, draft)
    unsigned = SignedRoot.from_cbor(draft.read_bytes())
    assert unsigned.signatures == () and unsigned.root_hash.hex() == digest
    assert unsigned.root.member_ids == MEMBERS and unsigned.root.quorum == 2
    assert unsigned.root.member("VN").node_key == keystore.read_public_key(founders["VN"][1])
    signed_files = []
    for m, (admin, _) in founders.items():
        out = tmp_path / f"signed-{m}.cbor"
        _sign(invoke, draft, admin, out, "--expect-hash", digest)
        signed_files.append(out)
    r = invoke("genesis", "assemble", draft, *signed_files, "--out", tmp_path / "genesis.cbor", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    genesis = SignedRoot.from_cbor((tmp_path / "genesis.cbor").read_bytes())
    assert verify_genesis(genesis, bytes.fromhex(digest)) == genesis.root
    assert doc["hash"] == digest and doc["signatures"]["valid"] == list(MEMBERS)


def test_assemble_names_missing_founders_and_writes_nothing(invoke: Invoke, tmp_path: Path,
                                                            founders: dict[str, tuple[Path, Path]]) -> None:
    draft = tmp_path / "draft.cbor"
    _draft(invoke, founders, draft)
    _sign(invoke, draft, founders["VN"][0], tmp_path / "signed-VN.cbor")
    out = tmp_path / "genesis.cbor"
    r = invoke("genesis", "assemble", draft, tmp_path / "signed-VN.cbor", "--out", out)
    assert r.exit_code == 4
    assert "KH, TH" in r.stderr and "signed so far: VN" in r.stderr
    assert not out.exists()


def test_assemble_refuses_a_signature_of_another_draft(invoke: Invoke, tmp_path: Path,
                                                       founders: dict[str, tuple[Path, Path]]) -> None:
    draft, other = tmp_path / "draft.cbor", tmp_path / "other.cbor"
    _draft(invoke, founders, draft)
    _draft(invoke, founders, other, "--issued-at", "2024-01-01")
    _sign(invoke, other, founders["TH"][0], tmp_path / "signed-TH.cbor")
    r = invoke("genesis", "assemble", draft, tmp_path / "signed-TH.cbor", "--out", tmp_path / "g.cbor")
    assert r.exit_code == 4
    assert "signed-TH.cbor signs a different root" in r.stderr


def test_sign_checks_hash_key_and_passphrase(invoke: Invoke, tmp_path: Path,
                                             founders: dict[str, tuple[Path, Path]]) -> None:
    draft = tmp_path / "draft.cbor"
    _draft(invoke, founders, draft)
    out = tmp_path / "s.cbor"
    r = invoke("genesis", "sign", draft, "--key", founders["VN"][0], "--out", out, "--passphrase-env", "PP",
               "--expect-hash", "00" * 32)
    assert r.exit_code == 4 and "do not sign it" in r.stderr
    r = invoke("genesis", "sign", draft, "--key", founders["VN"][1], "--out", out, "--passphrase-env", "PP")
    assert r.exit_code == 4 and "not an admin key" in r.stderr
    r = invoke("genesis", "sign", draft, "--key", founders["VN"][0], "--out", out, "--passphrase-env", "WRONG",
               env_extra={"WRONG": "not the passphrase"})
    assert r.exit_code == 4 and "wrong passphrase" in r.stderr
    assert not out.exists()


def test_draft_from_members_file(invoke: Invoke, tmp_path: Path, founders: dict[str, tuple[Path, Path]]) -> None:
    pub = tmp_path / "VN-admin.key.pub"
    pub.write_text(keystore.read_public_key(founders["VN"][0]).hex() + "\n")
    members = [{"id": m, "name": f"Member {m}", "admin_keys": [f"{m}-admin.key" if m != "VN" else "VN-admin.key.pub"],
                "node_key": f"{m}-node.key", "endpoints": [f"https://{m.lower()}.example"]} for m in MEMBERS]
    (tmp_path / "members.json").write_text(json.dumps({"members": members}))
    r = invoke("genesis", "draft", "--network", "gms", "--faulty", "0", "--members", tmp_path / "members.json",
               "--out", tmp_path / "draft.cbor", "--json")
    assert r.exit_code == 0, r.output
    root = SignedRoot.from_cbor((tmp_path / "draft.cbor").read_bytes()).root
    assert root.member("VN").admin_keys == (keystore.read_public_key(founders["VN"][0]),)
    assert json.loads(r.stdout)["members"][2]["endpoints"] == ["https://vn.example"]


@pytest.mark.parametrize("extra, message", [
    (["--quorum", "1"], "unsafe"),
    (["--faulty", "1"], "none allowed"),
], ids=["unsafe-quorum", "too-few-members-for-f"])
def test_draft_refuses_unsafe_thresholds(invoke: Invoke, tmp_path: Path, founders: dict[str, tuple[Path, Path]],
                                         extra: list[str], message: str) -> None:
    args: list[object] = ["genesis", "draft", "--network", "gms", "--out", tmp_path / "d.cbor"]
    for m, (admin, node) in founders.items():
        args += ["--member", m, "--name", m, "--admin-key", admin, "--node-key", node, "--endpoint", "http://x.example"]
    r = invoke(*[a for a in args if a != "--faulty"], *(["--faulty", "0"] if "--faulty" not in extra else []), *extra)
    assert r.exit_code == 3
    assert message in r.stderr


def test_draft_needs_aligned_member_options(invoke: Invoke, tmp_path: Path,
                                            founders: dict[str, tuple[Path, Path]]) -> None:
    admin, node = founders["VN"]
    r = invoke("genesis", "draft", "--network", "gms", "--member", "VN", "--member", "TH", "--name", "Viet Nam",
               "--admin-key", admin, "--node-key", node, "--endpoint", "http://x.example", "--out", tmp_path / "d")
    assert r.exit_code == 3
    assert "once per member" in r.stderr


@pytest.fixture
def genesis(invoke: Invoke, tmp_path: Path, founders: dict[str, tuple[Path, Path]]) -> Path:
    draft = tmp_path / "draft.cbor"
    _draft(invoke, founders, draft)
    files = []
    for m, (admin, _) in founders.items():
        files.append(tmp_path / f"signed-{m}.cbor")
        _sign(invoke, draft, admin, files[-1])
    assert invoke("genesis", "assemble", draft, *files, "--out", tmp_path / "genesis.cbor").exit_code == 0
    return tmp_path / "genesis.cbor"


def test_governance_rotation_proposed_signed_and_shown(invoke: Invoke, tmp_path: Path, genesis: Path,
                                                       founders: dict[str, tuple[Path, Path]]) -> None:
    new_admin = make_key(tmp_path / "VN-admin-2.key")
    nxt = tmp_path / "next.cbor"
    r = invoke("governance", "propose", "--from", genesis, "--rotate-admin-key", "VN", founders["VN"][0], new_admin,
               "--set-name", "TH", "Thai Customs", "--out", nxt, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["version"] == 2 and doc["needs"]["from_current_members"] == 2
    draft = SignedRoot.from_cbor(nxt.read_bytes())
    assert draft.root.previous == root_hash(SignedRoot.from_cbor(genesis.read_bytes()).payload)
    assert draft.root.member("VN").admin_keys == (keystore.read_public_key(new_admin),)
    # Not valid yet: shown as pending, with nobody's signature.
    r = invoke("governance", "show", "--chain", genesis, "--chain", nxt, "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["current"] == 1 and "threshold is 2" in shown["pending"][0]["not_valid"]
    # The rotated-out key signs with --previous; a second member makes the threshold.
    r = invoke("governance", "sign", nxt, "--key", founders["VN"][0], "--out", tmp_path / "s-VN.cbor",
               "--passphrase-env", "PP")
    assert r.exit_code == 4 and "--previous" not in r.stderr and "not an admin key" in r.stderr
    for m, extra in (("VN", ["--previous", genesis]), ("KH", [])):
        r = invoke("governance", "sign", nxt, "--key", founders[m][0], "--out", tmp_path / f"s-{m}.cbor",
                   "--passphrase-env", "PP", *extra)
        assert r.exit_code == 0, r.output
    r = invoke("governance", "show", "--chain", genesis, "--chain", nxt, "--chain", tmp_path / "s-VN.cbor",
               "--chain", tmp_path / "s-KH.cbor", "--pin", root_hash(SignedRoot.from_cbor(genesis.read_bytes())
                                                                      .payload).hex(),
               "--save", tmp_path / "saved", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["current"] == 2 and shown["pending"] == [] and shown["pinned"]
    assert shown["roots"][1]["signatures"]["valid"] == ["KH", "VN"]
    chain = GovernanceChain(SignedRoot.from_cbor((tmp_path / "saved" / "root-v1.cbor").read_bytes()))
    chain.add(SignedRoot.from_cbor((tmp_path / "saved" / "root-v2.cbor").read_bytes()))
    assert key_id(chain.current.member("VN").admin_keys[0]) == key_id(keystore.read_public_key(new_admin))


def test_propose_errors_are_usage_errors(invoke: Invoke, tmp_path: Path, genesis: Path) -> None:
    out = tmp_path / "n.cbor"
    assert invoke("governance", "propose", "--from", genesis, "--out", out).exit_code == 3
    r = invoke("governance", "propose", "--from", genesis, "--remove-member", "ZZ", "--out", out)
    assert r.exit_code == 3 and "ZZ is not a member" in r.stderr
    r = invoke("governance", "propose", "--from", genesis, "--set-quorum", "4", "--out", out)
    assert r.exit_code == 3 and "quorum 4 is not live" in r.stderr
    assert not out.exists()


def test_governance_show_of_a_bad_pin(invoke: Invoke, genesis: Path) -> None:
    r = invoke("governance", "show", "--chain", genesis, "--pin", "ab" * 32)
    assert r.exit_code == 4
    assert "not the pinned" in r.stderr
