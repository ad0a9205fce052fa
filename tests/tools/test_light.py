"""Light verification and proof bundles (specs/state.md S.7) against real nodes, and nodes that lie."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Scenario, make_key
from netfixture import Network, start_proxy

from credentials.bundle import ProofBundle, open_bundle, required_keys
from credentials.cwt import UnverifiedCredential, credential_digest
from ledger import cbor
from ledger.bodies import IssuerRegister, MemberPolicy, PolicyRule
from ledger.entries import make_entry
from ledger.errors import MekongError
from ledger.governance import GovernanceChain
from tools.client import light
from tools.client.http import NodeClient
from tools.client.light import LightError, fetch_bundle


def _light(scenario: Scenario, *args: object) -> Any:
    return scenario.invoke("verify", scenario.credential, "--replica", scenario.replica, "--pin", scenario.pin,
                           "--as-member", "TH", *args)


def _chain(net: Network) -> GovernanceChain:
    return GovernanceChain.from_genesis(net.genesis, net.genesis.root_hash)


def test_light_verify_bundle_and_offline(scenario: Scenario, tmp_path: Path) -> None:
    scenario.net.wait_replicated()
    r = _light(scenario, "--node", scenario.net.urls["KH"], "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["indication"] == "TOTAL-PASSED" and doc["mode"] == "light", doc
    assert set(doc["logs"]) == {"VN", "TH"} and doc["logs"]["VN"]["final_size"] >= 3
    assert not (scenario.replica / "replica.sqlite").exists()  # no replica: only the roots are cached
    assert (scenario.replica / "roots.cbor").exists()
    out = tmp_path / "coo.bundle"
    r = scenario.invoke("credential", "bundle", scenario.credential, "--node", scenario.net.urls["LA"],
                        "--as-member", "TH", "--pin", scenario.pin, "--replica", scenario.replica, "--out", out)
    assert r.exit_code == 0, r.output
    assert out.stat().st_size < 8192, out.stat().st_size
    # the border post: no network, a fresh machine (no cache), the pin alone
    r = scenario.invoke("verify", scenario.credential, "--bundle", out, "--offline", "--pin", scenario.pin,
                        "--as-member", "TH", "--replica", tmp_path / "empty")
    assert r.exit_code == 0, r.output
    assert "TOTAL-PASSED" in r.output and "verified offline" in r.output and "witnessed" in r.output


def test_an_old_bundle_is_not_believed_offline_past_the_offline_maximum_age(scenario: Scenario,
                                                                            tmp_path: Path) -> None:
    # Attack: a bundle made long ago (before a revocation, say) is attached again. Offline, the verdict rests
    # on the bundle's checkpoints; the offline maximum age (24 h by default) bounds how old they may be.
    scenario.net.wait_replicated()
    out = tmp_path / "old.bundle"
    r = scenario.invoke("credential", "bundle", scenario.credential, "--node", scenario.net.urls["KH"],
                        "--as-member", "TH", "--pin", scenario.pin, "--replica", scenario.replica, "--out", out)
    assert r.exit_code == 0, r.output
    made = int(time.time())

    def offline_at(at: int) -> dict[str, Any]:
        r = scenario.invoke("verify", scenario.credential, "--bundle", out, "--offline", "--pin", scenario.pin,
                            "--as-member", "TH", "--replica", tmp_path / "empty", "--json", "--now", at)
        return dict(json.loads(r.stdout), exit_code=r.exit_code)

    day = 24 * 3600
    fresh = offline_at(made + day - 600)
    assert fresh["indication"] == "TOTAL-PASSED" and fresh["exit_code"] == 0, fresh
    stale = offline_at(made + day + 600)
    assert (stale["indication"], stale["sub_indication"]) == ("INDETERMINATE", "TRY_LATER"), stale
    assert stale["exit_code"] != 0
    assert any(c["name"] == "freshness" and c["indication"] != "PASSED" for c in stale["checks"]), stale["checks"]


def test_a_frozen_node_is_caught_by_age_and_outvoted_in_light_mode(scenario: Scenario,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Attack: a node froze its view of VN's log (it serves one old, once-valid state answer forever), so a
    # later revocation would never show. Alone, it is caught by age (the (f+1)-th newest cosignature stops
    # moving while the honest witnesses' heartbeats go on); beside an honest node, the fresher answer wins,
    # here at the same log size (nothing was written meanwhile), by freshness alone.
    monkeypatch.setattr(light, "FRESHER_BY", 2)  # 30 s by default, for heartbeats every 20 s; here every 0.4 s
    net = scenario.net
    net.wait_replicated()
    raw = scenario.credential.read_bytes()
    keys, _ = required_keys(raw, "TH")
    frozen = cbor.decode(NodeClient(net.urls["KH"]).state("VN", [k.encode() for k in keys["VN"]]))
    time.sleep(6)  # the frozen answer's cosignatures age; heartbeats (every 0.4 s) keep the real ones fresh
    liar = _Tamper(net, "KH", _stale(frozen))
    try:
        r = _light(scenario, "--node", liar.url, "--max-age", "4", "--json")
        alone = json.loads(r.stdout)
        assert (alone["indication"], alone["sub_indication"]) == ("INDETERMINATE", "TRY_LATER"), alone
        assert any(c["name"] == "freshness" and "log VN" in c["detail"] and c["indication"] != "PASSED"
                   for c in alone["checks"]), alone["checks"]
        honest = json.loads(_light(scenario, "--node", net.urls["LA"], "--max-age", "4", "--json").stdout)
        both = json.loads(_light(scenario, "--node", liar.url, "--node", net.urls["LA"], "--max-age", "4",
                                 "--json").stdout)
        assert honest["indication"] != "INDETERMINATE" and both["indication"] == honest["indication"], both
        assert both["logs"]["VN"]["final_size"] == honest["logs"]["VN"]["final_size"]
    finally:
        liar.close()


def test_the_default_max_age_is_120_seconds(scenario: Scenario) -> None:
    # README: "mekong verify accepts 120 s by default after a sync": a node frozen on one answer is believed for
    # 120 s of that answer's age and no longer (verified as of later times with the hidden --now).
    net = scenario.net
    net.wait_replicated()
    keys, _ = required_keys(scenario.credential.read_bytes(), "TH")
    frozen = cbor.decode(NodeClient(net.urls["KH"]).state("VN", [k.encode() for k in keys["VN"]]))
    time.sleep(2)  # so that the other log's live answers are younger than the frozen one
    liar = _Tamper(net, "KH", _stale(frozen))
    try:
        t = int(time.time())
        first = json.loads(_light(scenario, "--node", liar.url, "--now", t, "--json").stdout)
        fresh = t - first["logs"]["VN"]["witnessed_age_seconds"]
        verdicts = {}
        for age in (119, 121):
            doc = json.loads(_light(scenario, "--node", liar.url, "--now", fresh + age, "--json").stdout)
            assert doc["logs"]["VN"]["witnessed_age_seconds"] == age, doc["logs"]
            verdicts[age] = (doc["indication"], doc["sub_indication"])
        assert verdicts[119] == (first["indication"], first["sub_indication"]) != ("INDETERMINATE", "TRY_LATER")
        assert verdicts[121] == ("INDETERMINATE", "TRY_LATER"), verdicts
    finally:
        liar.close()


def test_light_verify_of_a_broken_credential_is_format_failure(scenario: Scenario) -> None:
    bad = scenario.dir / "bad.cbor"
    data = bytearray(scenario.credential.read_bytes())
    bad.write_bytes(bytes(data[:len(data) // 2]))
    r = scenario.invoke("verify", bad, "--replica", scenario.replica, "--pin", scenario.pin, "--as-member", "TH",
                        "--node", scenario.node.url, "--json")
    assert r.exit_code == 1 and json.loads(r.output)["sub_indication"] == "FORMAT_FAILURE", r.output


def test_a_file_that_is_no_credential_is_named_before_any_network(scenario: Scenario, closed_port_url: str) -> None:
    scenario.net.wait_replicated()
    assert _light(scenario, "--node", scenario.node.url).exit_code == 0  # caches the governance chain
    claims = scenario.dir / "claims.json"
    claims.write_text('{"type": "certificate-of-origin"}')
    r = scenario.invoke("verify", claims, "--replica", scenario.replica, "--as-member", "TH", "--node",
                        closed_port_url, "--json")
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["sub_indication"] == "FORMAT_FAILURE"
    assert "not a COSE_Sign1 credential: it looks like JSON" in doc["checks"][0]["detail"]


def test_light_verify_sees_a_revocation(scenario: Scenario) -> None:
    scenario.ok("credential", "revoke", scenario.credential, "--reason", "superseded",
                *scenario.entry_args(scenario.issuer_key))
    scenario.net.wait_replicated()
    r = _light(scenario, "--node", scenario.net.urls["TH"], "--json")
    doc = json.loads(r.output)
    assert r.exit_code == 1 and doc["sub_indication"] == "REVOKED", r.output


def test_a_bundle_with_any_byte_changed_proves_nothing(scenario: Scenario) -> None:
    scenario.net.wait_replicated()
    chain = _chain(scenario.net)
    raw = scenario.credential.read_bytes()
    bundle = fetch_bundle([NodeClient(scenario.net.urls["KH"])], chain, raw, "TH")
    data = bundle.encode()
    open_bundle(ProofBundle.decode(data), scenario.net.genesis.root_hash, raw, "TH")  # the genuine one opens
    step = max(1, len(data) // int(os.environ.get("MEKONG_BUNDLE_FLIPS", "400")))
    for pos in range(0, len(data), step):
        changed = bytearray(data)
        changed[pos] ^= 0x01
        with pytest.raises(MekongError):
            open_bundle(ProofBundle.decode(bytes(changed)), scenario.net.genesis.root_hash, raw, "TH")
    with pytest.raises(MekongError, match="pinned"):  # another network's pin
        open_bundle(bundle, bytes(32), raw, "TH")
    with pytest.raises(MekongError, match="does not answer"):  # another member's policy is not in it
        open_bundle(bundle, scenario.net.genesis.root_hash, raw, "LA")


def _signed_invoice(scenario: Scenario) -> tuple[Path, Path]:
    doc, sig = scenario.dir / "invoice.xml", scenario.dir / "invoice.sig"
    doc.write_bytes(b"<Invoice>rice, 20 t</Invoice>")
    scenario.ok("sign", doc, "--key", scenario.issuer_key, "--passphrase-env", "PP", "--out", sig,
                "--document-type", "certificate-of-origin")
    scenario.ok("credential", "anchor", sig, "--issuer", "VN/customs-coo", *scenario.entry_args(scenario.issuer_key))
    scenario.net.wait_replicated()
    return doc, sig


def _verify_signature(scenario: Scenario, doc: Path, sig: Path, *args: object) -> Any:
    r = scenario.invoke("verify-signature", doc, sig, "--replica", scenario.replica, "--pin", scenario.pin,
                        "--as-member", "TH", "--json", *args)
    return r.exit_code, json.loads(r.stdout) if r.stdout.startswith("{") else r.output


def _verdict(report: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    return [(c["step"], c["name"], c["indication"], c["sub_indication"]) for c in report["checks"]]


def test_light_verify_signature_gives_the_full_replicas_verdict(scenario: Scenario) -> None:
    doc, sig = _signed_invoice(scenario)
    code, light = _verify_signature(scenario, doc, sig, "--node", scenario.net.urls["KH"])
    assert code == 0 and light["mode"] == "light" and light["indication"] == "TOTAL-PASSED", light
    assert light["proof_of_existence"]["log"] == "VN"
    assert not (scenario.replica / "replica.sqlite").exists()  # no replica: every log was asked for proofs
    code, full = _verify_signature(scenario, doc, sig, "--full", "--node", scenario.net.urls["KH"])
    assert code == 0 and _verdict(full) == _verdict(light)
    assert full["proof_of_existence"] == light["proof_of_existence"]
    doc.write_bytes(b"<Invoice>rice, 200 t</Invoice>")
    code, light = _verify_signature(scenario, doc, sig, "--node", scenario.net.urls["TH"])
    assert code == 1 and light["sub_indication"] == "HASH_FAILURE", light
    # a key no log holds: every log's answer proves its absence
    other = scenario.dir / "other.sig"
    scenario.ok("sign", doc, "--key", scenario.next_key, "--passphrase-env", "PP", "--out", other,
                "--document-type", "certificate-of-origin")
    code, light = _verify_signature(scenario, doc, other, "--node", scenario.net.urls["LA"])
    assert code == 2 and light["sub_indication"] == "NO_SIGNING_CERTIFICATE_FOUND", light
    assert _verdict(light) == _verdict(_verify_signature(scenario, doc, other, "--full", "--offline")[1])


def test_light_verify_signature_sees_a_revoked_key(scenario: Scenario) -> None:
    doc, sig = _signed_invoice(scenario)
    scenario.ok("issuer", "revoke-key", "VN/customs-coo", "--issuer-key", scenario.issuer_key, "--reason",
                "compromised", "--effective", "2000-01-01T00:00:00Z", *scenario.entry_args(scenario.vn_admin))
    scenario.net.wait_replicated()
    code, light = _verify_signature(scenario, doc, sig, "--node", scenario.net.urls["KH"])
    code_full, full = _verify_signature(scenario, doc, sig, "--full", "--node", scenario.net.urls["KH"])
    assert code != 0 and light["indication"] != "TOTAL-PASSED", light
    assert (code, _verdict(light)) == (code_full, _verdict(full))


def test_a_node_that_hides_the_signers_key_is_passed_over(scenario: Scenario) -> None:
    doc, sig = _signed_invoice(scenario)
    liar = _Tamper(scenario.net, "KH", _drop_key_values)
    try:
        code, out = _verify_signature(scenario, doc, sig, "--node", liar.url)
        assert code == 4 and "no node gave a verifiable answer" in out, out  # its absence proof does not check
        code, light = _verify_signature(scenario, doc, sig, "--node", liar.url, "--node", scenario.net.urls["LA"])
        assert code == 0 and light["indication"] == "TOTAL-PASSED", light
    finally:
        liar.close()


def _signatory(scenario: Scenario) -> tuple[Path, Path]:
    """A legal-entity credential and an authorised-signatory credential naming it, both anchored in VN's log."""
    d = scenario.dir
    key = make_key(d / "keys" / "registry.key")
    scenario.ok("issuer", "register", "VN/business-registry", "--name", "VN business registry", "--document-type",
                "legal-entity", "--document-type", "authorised-signatory", "--jurisdiction", "VN",
                *scenario.entry_args(scenario.vn_admin))
    scenario.ok("issuer", "add-key", "VN/business-registry", "--issuer-key", key, "--valid-from", "2020-01-01",
                *scenario.entry_args(scenario.vn_admin))
    scenario.ok("policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
                "--recognise", "VN:authorised-signatory:substantial", *scenario.entry_args(scenario.th_admin, "TH"))
    entity_claims, entity = d / "entity.json", d / "entity.cbor"
    entity_claims.write_text(json.dumps({"type": "legal-entity", "registered_id": "0312345678", "id_scheme": "tax-id",
                                         "legal_name": "Mekong Rice Co., Ltd", "jurisdiction": "VN",
                                         "registration_status": "active", "loa": "substantial"}))
    scenario.ok("credential", "issue", "--claims", entity_claims, "--issuer", "VN/business-registry", "--key", key,
                "--passphrase-env", "PP", "--out", entity, "--exp", "2100-01-01")
    scenario.ok("credential", "anchor", entity, *scenario.entry_args(key))
    raw = entity.read_bytes()
    signatory_claims, signatory = d / "signatory.json", d / "signatory.cbor"
    signatory_claims.write_text(json.dumps({
        "type": "authorised-signatory", "person_name": "Nguyen Van An", "role": "Chief Accountant",
        "legal_entity": {"issuer": "VN/business-registry", "cti": UnverifiedCredential.decode(raw).claims.cti.hex(),
                         "digest": credential_digest(raw).hex()},
        "signatory_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "loa": "substantial"}))
    scenario.ok("credential", "issue", "--claims", signatory_claims, "--issuer", "VN/business-registry", "--key", key,
                "--passphrase-env", "PP", "--out", signatory, "--exp", "2100-01-01")
    scenario.ok("credential", "anchor", signatory, *scenario.entry_args(key))
    scenario.net.wait_replicated()
    return entity, signatory


def test_a_signatory_whose_legal_entity_is_revoked_is_not_passed(scenario: Scenario) -> None:
    entity, signatory = _signatory(scenario)
    args = ("--replica", scenario.replica, "--pin", scenario.pin, "--as-member", "TH", "--json")
    r = scenario.invoke("verify", signatory, "--node", scenario.net.urls["KH"], *args)
    assert r.exit_code == 0 and json.loads(r.output)["indication"] == "TOTAL-PASSED", r.output
    key = scenario.dir / "keys" / "registry.key"
    scenario.ok("credential", "revoke", entity, "--reason", "company dissolved", *scenario.entry_args(key))
    scenario.net.wait_replicated()
    light = scenario.invoke("verify", signatory, "--node", scenario.net.urls["KH"], *args)
    full = scenario.invoke("verify", signatory, "--full", "--node", scenario.net.urls["KH"], *args)
    assert json.loads(full.output)["sub_indication"] == "REVOKED", full.output
    assert (light.exit_code, _verdict(json.loads(light.output))) == (full.exit_code, _verdict(json.loads(full.output)))
    bundle = scenario.dir / "signatory.bundle"
    scenario.ok("credential", "bundle", signatory, "--node", scenario.net.urls["LA"], "--as-member", "TH", "--pin",
                scenario.pin, "--replica", scenario.replica, "--out", bundle)
    offline = scenario.invoke("verify", signatory, "--bundle", bundle, "--offline", *args)
    assert json.loads(offline.output)["sub_indication"] == "REVOKED", offline.output


class _Proxy:
    """A lying node: a proxy in front of ``member``'s real node. Subclasses answer some requests themselves
    (:meth:`lie`), or rewrite the real node's 200 answers (:meth:`rewrite`); everything else passes."""

    def __init__(self, net: Network, member: str) -> None:
        self.net, self.target = net, net.urls[member]
        self.url, self._runner = start_proxy(net, self._handle)

    def lie(self, request: web.Request) -> web.Response | None:
        return None

    def upstream_path(self, request: web.Request) -> str:
        return request.path_qs

    def rewrite(self, request: web.Request, body: bytes) -> bytes:
        return body

    async def _handle(self, request: web.Request) -> web.Response:
        own = self.lie(request)
        if own is not None:
            return own
        async with aiohttp.ClientSession() as s, s.request(request.method, self.target + self.upstream_path(request),
                                                           data=await request.read()) as resp:
            body = await resp.read()
            if resp.status == 200:
                body = self.rewrite(request, body)
            return web.Response(body=body, status=resp.status, content_type=resp.content_type)

    def close(self) -> None:
        self.net._loop.run(self._runner.cleanup())


class _HideLog(_Proxy):
    """A node that claims it holds no checkpoint of one log (404), to hide the key and the anchor there."""

    def __init__(self, net: Network, member: str, hidden: str) -> None:
        self.hidden = hidden
        super().__init__(net, member)

    def lie(self, request: web.Request) -> web.Response | None:
        return web.Response(status=404, text="no such checkpoint") if request.path.startswith(
            f"/logs/{self.hidden}/") else None


def test_one_node_cannot_hide_the_log_that_holds_the_key(scenario: Scenario) -> None:
    doc, sig = _signed_invoice(scenario)
    liar = _HideLog(scenario.net, "KH", "VN")
    try:
        code, light = _verify_signature(scenario, doc, sig, "--node", liar.url, "--node", scenario.net.urls["TH"])
        assert code == 0 and light["indication"] == "TOTAL-PASSED", light  # VN's log is asked, the liar ruled out
        assert light["proof_of_existence"]["log"] == "VN"
    finally:
        liar.close()


class _Stall(_Proxy):
    """A node that stalls: each log's state answer is 503 ``not_at_checkpoint`` (as between two checkpoints)
    the first ``times`` it is asked, then the real node's."""

    def __init__(self, net: Network, member: str, times: int) -> None:
        self.times = times
        self.asked: dict[str, int] = {}
        super().__init__(net, member)

    def lie(self, request: web.Request) -> web.Response | None:
        if request.path.endswith("/state"):
            self.asked[request.path] = self.asked.get(request.path, 0) + 1
            if self.asked[request.path] <= self.times:
                return web.json_response({"error": "not_at_checkpoint", "message": "ask again"}, status=503,
                                         headers={"Retry-After": "1"})
        return None


def test_a_node_that_stalls_every_answer_holds_the_verifier_up_once(scenario: Scenario,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Attack: a node answers "between checkpoints" to each state question for most of the verifier's patience,
    # then answers, for each of the logs a document signature's light verification asks about. The verifier
    # gives a node PATIENCE in all, not PATIENCE per log, then asks the next.
    doc, sig = _signed_invoice(scenario)
    patience = 4.0
    monkeypatch.setattr(light, "PATIENCE", patience)
    staller = _Stall(scenario.net, "KH", times=14)  # ~3.5 s of retries (every 0.25 s) per log
    try:
        started = time.monotonic()
        code, out = _verify_signature(scenario, doc, sig, "--node", staller.url, "--node", scenario.net.urls["TH"])
        took = time.monotonic() - started
        assert code == 0 and out["indication"] == "TOTAL-PASSED", out
        assert len(_chain(scenario.net).members_ever) >= 4 and len(staller.asked) >= 2
        assert took < 1.5 * patience, f"{took:.1f} s; state questions to the stalling node: {staller.asked}"
    finally:
        staller.close()


class _LateCovering(_Proxy):
    """A node that answers "the first final checkpoint covering entry i" of VN's log with its newest one."""

    def upstream_path(self, request: web.Request) -> str:
        return request.path if request.path == "/logs/VN/checkpoint" else request.path_qs


def test_a_later_covering_checkpoint_does_not_hide_the_first(scenario: Scenario) -> None:
    # Attack: a node serves a later final checkpoint as the first one covering the credential's anchor, so that
    # the credential looks younger than it is (its proof of existence is what keeps it valid across a later key
    # revocation). Alone, a verifier cannot tell; given another node too, it keeps the earliest that checks out.
    _signed_invoice(scenario)  # one more anchor on VN's log: a final checkpoint after the credential's first
    honest = json.loads(_light(scenario, "--node", scenario.net.urls["TH"], "--json").stdout)["proof_of_existence"]
    liar = _LateCovering(scenario.net, "KH")
    try:
        alone = json.loads(_light(scenario, "--node", liar.url, "--json").stdout)["proof_of_existence"]
        assert alone["checkpoint_size"] > honest["checkpoint_size"], (alone, honest)  # the attack does something
        for nodes in ((liar.url, scenario.net.urls["TH"]), (scenario.net.urls["TH"], liar.url)):
            both = json.loads(_light(scenario, "--node", nodes[0], "--node", nodes[1], "--json").stdout)
            assert both["proof_of_existence"] == honest, (nodes, both["proof_of_existence"], honest)
    finally:
        liar.close()


def test_a_split_view_stops_a_light_verification(scenario: Scenario, tmp_path: Path) -> None:
    # Beyond the trust assumption: more than f members colluded and made another history of VN's log final (a
    # second network of the same founders' keys), of the very size of the real one. A light verifier given a
    # node of each sees two final checkpoints of one size with different roots and answers nothing, whatever
    # the order of --node (verify --full keeps the evidence: test_cli_verify).
    net = scenario.net
    net.wait_replicated()
    size = net.final_size("KH", "VN")
    fork = _fork(tmp_path, size)
    try:
        assert net.final_size("KH", "VN") == size
        for nodes in ((net.urls["KH"], fork.urls["TH"]), (fork.urls["TH"], net.urls["KH"])):
            r = _light(scenario, "--node", nodes[0], "--node", nodes[1], "--json")
            assert r.exit_code == 4 and f"SPLIT VIEW: log VN: two final checkpoints of size {size}" in r.stderr, (
                nodes, r.output)
            r = scenario.invoke("log", "show", "VN", "--node", nodes[0], "--node", nodes[1], "--pin", scenario.pin,
                                "--replica", scenario.replica, "--json")
            assert r.exit_code == 4 and f"SPLIT VIEW: log VN: two final checkpoints of size {size}" in r.stderr, (
                nodes, r.output)
            doc = json.loads(r.stdout)
            assert [n["size"] for n in doc["nodes"]] == [size, size] and len(doc["split_views"]) == 1, doc
            assert all(u in doc["split_views"][0] for u in nodes), doc
    finally:
        fork.close()


def _fork(tmp_path: Path, size: int) -> Network:
    """A second network of the same founders' keys whose VN log is another history of ``size`` entries, final."""
    (tmp_path / "fork").mkdir()
    fork = Network(tmp_path / "fork")
    t = int(time.time())
    fork.submit("VN", [make_entry("VN", "issuer.register", t, IssuerRegister(
        f"VN/forged-{i}", "Forged", ("certificate-of-origin",), "high", "VN"), fork.admin["VN"]) for i in range(size)])
    fork.submit("TH", [make_entry("TH", "member.policy", t, MemberPolicy((PolicyRule("VN", ("*",), "substantial"),)),
                                  fork.admin["TH"])])  # so that the fork answers every log a verifier asks
    fork.wait_until("the fork's TH node holds VN's forged log final", lambda: fork.final_size("TH", "VN") == size)
    return fork


def test_a_longer_other_history_is_not_believed_over_the_one_it_does_not_extend(scenario: Scenario,
                                                                                 tmp_path: Path) -> None:
    # Beyond the trust assumption again, but with the forged history longer than the real one: it looks newer.
    # An answer whose final checkpoint its node cannot show to extend a smaller final checkpoint another node
    # shows is not used, so the verdict is the one the real history gives, whatever the order of --node.
    net = scenario.net
    net.wait_replicated()
    honest = json.loads(_light(scenario, "--node", net.urls["KH"], "--json").stdout)
    fork = _fork(tmp_path, net.final_size("KH", "VN") + 2)
    try:
        for nodes in ((net.urls["KH"], fork.urls["TH"]), (fork.urls["TH"], net.urls["KH"])):
            both = json.loads(_light(scenario, "--node", nodes[0], "--node", nodes[1], "--json").stdout)
            assert both["indication"] == honest["indication"], (nodes, both)
            assert both["logs"]["VN"]["final_size"] == honest["logs"]["VN"]["final_size"], (nodes, both["logs"])
    finally:
        fork.close()


class _Unwitnessed(_Proxy):
    """A node that serves each log's checkpoint without its witnesses' cosignatures, as if it were final."""

    def rewrite(self, request: web.Request, body: bytes) -> bytes:
        return _strip_witnesses(body) if request.path.endswith("/checkpoint") else body


def test_log_show_does_not_take_an_unwitnessed_checkpoint_for_final(scenario: Scenario) -> None:
    # Attack: a node shows the owner's signed checkpoint without the quorum that makes it final. log show
    # names that node's checkpoint as not final, shows the honest one, and alone gives no answer.
    scenario.net.wait_replicated()
    liar = _Unwitnessed(scenario.net, "KH")
    common = ("--pin", scenario.pin, "--replica", scenario.replica)
    try:
        r = scenario.invoke("log", "show", "VN", "--node", liar.url, *common)
        assert r.exit_code == 4 and "no node showed a verifiable final checkpoint" in r.stderr, r.output
        r = scenario.invoke("log", "show", "VN", "--node", liar.url, "--node", scenario.net.urls["LA"], *common,
                            "--json")
        doc = json.loads(r.stdout)
        assert r.exit_code == 0 and "final needs" in doc["nodes"][0]["error"], doc
        assert doc["nodes"][1]["size"] == doc["newest_final_size"] == scenario.net.final_size("LA", "VN")
    finally:
        liar.close()


class _Tamper(_Proxy):
    """A node that lies about state: a proxy in front of a real node that rewrites its state answers."""

    def __init__(self, net: Network, member: str, rewrite: Any) -> None:
        self.rewrite_answer = rewrite
        super().__init__(net, member)

    def rewrite(self, request: web.Request, body: bytes) -> bytes:
        if not request.path.endswith("/state"):
            return body
        return cbor.encode(self.rewrite_answer(request.path, cbor.decode(body)))


def _hide_status(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    # Claim the credential has no status entries: keep the value but drop it, leaving its presence proof.
    for a in doc["answers"]:
        if a[1] is not None and cbor.decode(a[0])[0] == "status":
            a[1] = None
    return doc


def _drop_key_values(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    # Claim no key holds the key id asked: the value dropped, its presence proof served as an absence proof.
    for a in doc["answers"]:
        if a[1] is not None and cbor.decode(a[0])[0] == "key":
            a[1] = None
    return doc


def _stale(old: dict[str, Any]) -> Any:
    # A whole earlier answer of VN's log (a stale state root), as a node that froze would serve it.
    return lambda path, doc: old if path == "/logs/VN/state" else doc


def _swap_proofs(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    # The proof for one key served as the proof for another.
    a = doc["answers"]
    if len(a) >= 2:
        a[0][2], a[1][2] = a[1][2], a[0][2]
    return doc


def test_nodes_that_lie_about_state_are_caught(scenario: Scenario) -> None:
    net = scenario.net
    net.wait_replicated()
    chain = _chain(net)
    raw = scenario.credential.read_bytes()
    keys, _ = required_keys(raw, "TH")
    before = cbor.decode(NodeClient(net.urls["KH"]).state("VN", [k.encode() for k in keys["VN"]]))
    scenario.ok("credential", "revoke", scenario.credential, "--reason", "superseded",
                *scenario.entry_args(scenario.issuer_key))
    net.wait_replicated()
    for name, rewrite in (("wrong value", _hide_status), ("proof for another key", _swap_proofs),
                          ("stale root", _stale(before))):
        liar = _Tamper(net, "KH", rewrite)
        try:
            if name != "stale root":  # alone, a stale but final state within the freshness bound is all there is
                with pytest.raises(LightError):
                    fetch_bundle([NodeClient(liar.url)], chain, raw, "TH", sleep=lambda s: None)
            # an honest node after the liar: the verifier gets the truth (revoked) anyway
            bundle = fetch_bundle([NodeClient(liar.url), NodeClient(net.urls["LA"])], chain, raw, "TH")
            view = open_bundle(bundle, net.genesis.root_hash, raw, "TH")
            assert view.credential_status("VN/customs-coo", _cti(raw)), name
        finally:
            liar.close()


def _cti(raw: bytes) -> bytes:
    from credentials.cwt import UnverifiedCredential
    return UnverifiedCredential.decode(raw).claims.cti


def test_verified_lookups(scenario: Scenario) -> None:
    """issuer show, policy show, credential status and log show: answers proven, not taken on a node's word."""
    scenario.net.wait_replicated()
    common = ["--node", scenario.net.urls["KH"], "--pin", scenario.pin, "--replica", scenario.replica, "--json"]
    r = scenario.invoke("issuer", "show", "VN/customs-coo", *common)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "active" and doc["document_types"] == ["certificate-of-origin"]
    assert len(doc["keys"]) == 1 and doc["proof"]["log"] == "VN"
    r = scenario.invoke("issuer", "list", "--member", "VN", *common)
    assert [i["issuer"] for i in json.loads(r.stdout)["issuers"]] == ["VN/customs-coo"], r.output
    r = scenario.invoke("policy", "show", "TH", *common)
    assert json.loads(r.stdout)["rules"] == [{"member": "VN", "document_types": ["certificate-of-origin"],
                                              "min_loa": "substantial"}], r.output
    cti = json.loads(scenario.invoke("credential", "show", scenario.credential, "--json").stdout)["cti"]
    r = scenario.invoke("credential", "status", "VN/customs-coo", cti, *common)
    assert json.loads(r.stdout)["status"] == "active" and json.loads(r.stdout)["history"] == [], r.output
    scenario.ok("credential", "revoke", scenario.credential, "--reason", "superseded",
                *scenario.entry_args(scenario.issuer_key))
    scenario.net.wait_replicated()
    r = scenario.invoke("credential", "status", "VN/customs-coo", cti, *common[:-1])
    assert r.exit_code == 0 and "revoked" in r.stdout and "proven against the state root" in r.stdout, r.output
    r = scenario.invoke("log", "show", "VN", "--node", scenario.net.urls["LA"], "--node", scenario.net.urls["TH"],
                        "--pin", scenario.pin, "--replica", scenario.replica, "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["newest_final_size"] >= 4 and len(doc["nodes"]) == 2, r.output
    assert all(len(n["cosigners"]) >= 3 for n in doc["nodes"])
    # a node lying about a credential's status, an issuer or a policy is caught, not believed
    for rewrite, args in ((_hide_status, ("credential", "status", "VN/customs-coo", cti)),
                          (_drop_values("issuer"), ("issuer", "show", "VN/customs-coo")),
                          (_drop_values("policy"), ("policy", "show", "TH"))):
        liar = _Tamper(scenario.net, "KH", rewrite)
        try:
            r = scenario.invoke(*args, "--node", liar.url, "--pin", scenario.pin, "--replica", scenario.replica)
            assert r.exit_code == 4 and "no node gave a verifiable answer" in r.stderr, (args, r.output)
        finally:
            liar.close()


def _drop_values(kind: str) -> Any:
    # Claim no key of this kind holds anything: the values dropped, their presence proofs served as absence proofs.
    def rewrite(path: str, doc: dict[str, Any]) -> dict[str, Any]:
        for a in doc["answers"]:
            if a[1] is not None and cbor.decode(a[0])[0] == kind:
                a[1] = None
        return doc
    return rewrite


def _strip_witnesses(note: bytes) -> bytes:
    # A checkpoint note with its witnesses' cosignatures cut off: the owner's signature alone.
    text, _, lines = note.partition(b"\n\n")
    return text + b"\n\n" + b"".join(line + b"\n" for line in lines.split(b"\n") if line and b"/witness" not in line)


def _not_final(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    # The state answer's checkpoint without its witnesses' cosignatures.
    doc["checkpoint"] = _strip_witnesses(doc["checkpoint"])
    return doc


def test_a_checkpoint_served_without_its_quorum_is_not_believed(scenario: Scenario,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Attack: a node serves state proofs against a checkpoint that no quorum cosigned (here the real one with
    # its cosignatures cut off: the owner's signature alone). It is asked again for a while (a checkpoint may
    # be on its way to finality), then passed over for the next node.
    monkeypatch.setattr(light, "PATIENCE", 0.5)
    scenario.net.wait_replicated()
    liar = _Tamper(scenario.net, "KH", _not_final)
    try:
        r = _light(scenario, "--node", liar.url, "--json")
        assert r.exit_code == 4 and "no node gave a verifiable answer" in r.stderr and "final" in r.stderr, r.output
        honest = json.loads(_light(scenario, "--node", scenario.net.urls["TH"], "--json").stdout)
        both = json.loads(_light(scenario, "--node", liar.url, "--node", scenario.net.urls["TH"], "--json").stdout)
        assert honest["indication"] != "INDETERMINATE" and both["indication"] == honest["indication"], both
    finally:
        liar.close()
