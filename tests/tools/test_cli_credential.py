"""``mekong credential`` and ``mekong sign``: issuing, decoding and signing offline, with the errors users make."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import Result
from conftest import COO_CLAIMS, Invoke, Scenario, check_no_secret, make_key

from credentials.cwt import UnverifiedCredential, credential_digest
from credentials.docsig import UnverifiedDocumentSignature
from credentials.profiles import PROFILES, CertificateOfOrigin
from ledger.keys import key_id
from node import keystore
from tools.cli.credential import profile_from_json


@pytest.fixture
def issuer_key(tmp_path: Path) -> Path:
    return make_key(tmp_path / "coo.key")


def _issue(invoke: Invoke, key: Path, out: Path, claims: Path = COO_CLAIMS, *extra: object) -> Result:
    return invoke("credential", "issue", "--claims", claims, "--issuer", "VN/customs-coo", "--key", key,
                  "--passphrase-env", "PP", "--out", out, *extra)


def test_issue_and_show(invoke: Invoke, tmp_path: Path, issuer_key: Path) -> None:
    out = tmp_path / "coo.cbor"
    r = invoke("credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
               "VN/customs-coo", "--key", issuer_key, "--passphrase-env", "PP", "--out", out, "--exp", "2030-01-01",
               "--iat", "1700000000", "--sub", "exporter:0312345678", "--cti", "ab" * 16, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cred = UnverifiedCredential.decode(out.read_bytes())
    c = cred.claims
    assert (c.iss, c.iat, c.exp, c.sub, c.cti) == ("VN/customs-coo", 1700000000, 1893456000, "exporter:0312345678",
                                                   bytes.fromhex("ab" * 16))
    assert isinstance(c.attestation, CertificateOfOrigin) and c.attestation.items[0].hs_code == "100630"
    assert c.attestation.document_digest.value.hex().startswith("2f0c9bd6")
    assert cred.kid == key_id(keystore.read_public_key(issuer_key))
    assert doc["digest"] == credential_digest(out.read_bytes()).hex() and doc["cti"] == "ab" * 16
    check_no_secret(r.output, issuer_key)
    shown = invoke("credential", "show", out, "--json")
    assert shown.exit_code == 0
    claims = json.loads(shown.stdout)
    assert claims["type"] == "certificate-of-origin" and claims["kid"] == cred.kid.hex()
    text = invoke("credential", "show", out).stdout  # for people: lines, not JSON, and it says nothing was verified
    assert text != shown.stdout and "NOT verified" in text and "  hs_code: 100630" in text
    assert f"  kid: {cred.kid.hex()}" in text
    # The claims as a report prints them are a valid claims file again.
    (tmp_path / "again.json").write_text(shown.stdout)
    r = _issue(invoke, issuer_key, tmp_path / "again.cbor", tmp_path / "again.json")
    assert r.exit_code == 0, r.output
    again = UnverifiedCredential.decode((tmp_path / "again.cbor").read_bytes()).claims
    assert again.attestation == c.attestation and again.sub == c.sub and again.exp == c.exp


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("exporter"), "missing required field(s) exporter"),
    (lambda d: d["document_digest"].update(value="zz"), "is not hex"),
    (lambda d: d["items"][0].update(hs_code="rice"), "HS code"),
    (lambda d: d.update(colour="blue"), "unknown field 'colour'"),
    (lambda d: d.update(type="e-invoice"), "not certificate-of-origin"),
], ids=["missing-field", "bad-hex", "bad-hs-code", "unknown-field", "other-profile"])
def test_issue_refuses_bad_claims(invoke: Invoke, tmp_path: Path, issuer_key: Path, change: object,
                                  message: str) -> None:
    doc = json.loads(COO_CLAIMS.read_text())
    change(doc)  # type: ignore[operator]
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(doc))
    out = tmp_path / "c.cbor"
    r = invoke("credential", "issue", "--profile", "certificate-of-origin", "--claims", claims, "--issuer",
               "VN/customs-coo", "--key", issuer_key, "--passphrase-env", "PP", "--out", out)
    assert r.exit_code == 4, r.output
    assert message in r.stderr
    assert not out.exists()


def test_issue_usage_errors(invoke: Invoke, tmp_path: Path, issuer_key: Path) -> None:
    doc = json.loads(COO_CLAIMS.read_text())
    del doc["type"]
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(doc))
    r = _issue(invoke, issuer_key, tmp_path / "c.cbor", claims)
    assert r.exit_code == 3 and "--profile" in r.stderr
    r = _issue(invoke, issuer_key, tmp_path / "c.cbor", COO_CLAIMS, "--iat", "2030-01-01", "--exp", "2029-01-01")
    assert r.exit_code == 3 and "exp" in r.stderr
    r = invoke("credential", "issue", "--claims", COO_CLAIMS, "--issuer", "customs", "--key", issuer_key,
               "--out", tmp_path / "c.cbor")
    assert r.exit_code == 3 and "not an issuer id" in r.stderr


def test_issue_with_the_wrong_passphrase(invoke: Invoke, tmp_path: Path, issuer_key: Path) -> None:
    r = invoke("credential", "issue", "--claims", COO_CLAIMS, "--issuer", "VN/customs-coo", "--key", issuer_key,
               "--out", tmp_path / "c.cbor", input="guess\n")
    assert r.exit_code == 4
    assert "wrong passphrase" in r.stderr and "guess" not in r.output


def test_malformed_credential_is_refused_before_any_node_is_asked(invoke: Invoke, tmp_path: Path, issuer_key: Path,
                                                                  closed_port_url: str) -> None:
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(b"\xd2\x84\x43\xa1\x01\x27\xa0")
    for args in (["credential", "anchor", bad], ["credential", "revoke", bad], ["credential", "show", bad]):
        r = invoke(*args, *(["--node", closed_port_url, "--key", issuer_key] if args[1] != "show" else []))
        assert r.exit_code == 4, r.output
        assert "not a credential" in r.stderr or "neither a credential" in r.stderr
        assert "unreachable" not in r.stderr


def test_status_commands_need_a_credential(invoke: Invoke, tmp_path: Path, issuer_key: Path) -> None:
    r = invoke("credential", "revoke", "--cti", "ab" * 16, "--node", "http://127.0.0.1:1", "--key", issuer_key)
    assert r.exit_code == 3 and "--issuer" in r.stderr
    r = invoke("credential", "suspend", "--node", "http://127.0.0.1:1", "--key", issuer_key)
    assert r.exit_code == 3


def test_sign_a_document(invoke: Invoke, tmp_path: Path, issuer_key: Path) -> None:
    doc = tmp_path / "invoice.xml"
    doc.write_bytes(b"<Invoice>rice</Invoice>")
    sig = tmp_path / "invoice.sig"
    r = invoke("sign", doc, "--key", issuer_key, "--passphrase-env", "PP", "--out", sig, "--document-type",
               "e-invoice", "--signed-at", "1700000000", "--json")
    assert r.exit_code == 0, r.output
    decoded = UnverifiedDocumentSignature.decode(sig.read_bytes())
    env = decoded.envelope
    assert env.digest == hashlib.sha256(doc.read_bytes()).digest()
    assert (env.media_type, env.file_name, env.document_type, env.signed_at) == (
        "application/xml", "invoice.xml", "e-invoice", 1700000000)
    assert json.loads(r.stdout)["digest"] == decoded.digest.hex()
    assert invoke("sign", tmp_path / "missing.pdf", "--key", issuer_key, "--passphrase-env", "PP", "--out", sig,
                  "--document-type", "e-invoice").exit_code == 4


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_template_validates_and_issues(invoke: Invoke, tmp_path: Path, profile: str) -> None:
    r = invoke("credential", "template", "--profile", profile)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["type"] == profile
    profile_from_json(profile, doc)  # the same validation issue applies
    out = tmp_path / "claims.json"
    assert invoke("credential", "template", "--profile", profile, "--out", out).exit_code == 0
    assert json.loads(out.read_text()) == doc
    key = make_key(tmp_path / "issuer.key")
    cred = tmp_path / "cred.cbor"
    r = invoke("credential", "issue", "--claims", out, "--issuer", "VN/x", "--key", key, "--passphrase-env", "PP",
               "--out", cred)
    assert r.exit_code == 0, r.output
    assert UnverifiedCredential.decode(cred.read_bytes()).claims.attestation.TYPE == profile


def test_template_names_the_profiles(invoke: Invoke) -> None:
    r = invoke("credential", "template", "--profile", "certificate-of-orign")
    assert r.exit_code == 3 and "certificate-of-origin" in r.output


def test_revoking_twice_says_nothing_was_written(scenario: Scenario) -> None:
    scenario.ok("credential", "revoke", scenario.credential, "--reason", "superseded",
                *scenario.entry_args(scenario.issuer_key))
    r = scenario.invoke("credential", "revoke", scenario.credential, "--reason", "issued in error",
                        *scenario.entry_args(scenario.issuer_key))
    assert r.exit_code == 4, r.output
    assert "credential.status refused by node" in r.stderr and "nothing was written" in r.stderr
    assert "is revoked" in r.stderr and " entry " not in r.stderr.split("written:")[1], r.stderr
