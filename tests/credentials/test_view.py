"""The registry view: final prefixes only, quorum, proof-of-existence arithmetic, ambiguous keys."""

from __future__ import annotations

import dataclasses

import pytest
from cred_helpers import DOC, T0, Net, certificate_of_origin
from hypothesis import given
from hypothesis import strategies as st

from credentials.cwt import credential_digest
from credentials.docsig import SignedDocument, sign_document
from credentials.issue import anchor_body, issue_credential
from credentials.sandbox import Sandbox
from credentials.verify import VerificationPolicy, verify
from credentials.view import (
    FinalCheckpoint,
    RegistryView,
    WitnessTime,
    fresh_time,
    proof_of_existence,
    witnessed_time,
)
from ledger.errors import AuthorizationError, DecodeError
from ledger.keys import key_id, public_key_of

NOW = T0 + 1000


def test_witnessed_time_is_the_f_plus_1th_smallest() -> None:
    cp = FinalCheckpoint.of("VN", 3, b"\x00" * 32, {"VN": 50, "TH": 10, "KH": 40, "CN": 30})
    assert cp.times == (10, 30, 40, 50)
    assert [witnessed_time(cp, f) for f in range(5)] == [10, 30, 40, 50, None]
    assert cp.cosignatures[0] == WitnessTime("CN", 30)
    assert dataclasses.replace(cp, size=4).times == cp.times


def _seen(times: dict[str, int]) -> FinalCheckpoint:
    # A final checkpoint first cosigned at T0 by each witness, then seen (heartbeats) at ``times``.
    return FinalCheckpoint.of("VN", 3, b"\x00" * 32, dict.fromkeys(times, T0), times)


def test_freshness_is_the_f_plus_1th_newest_time_not_in_the_future() -> None:
    cp = _seen({"VN": 50, "TH": 10, "KH": 40, "CN": 30})
    assert [fresh_time(cp, f, 100) for f in range(5)] == [50, 40, 30, 10, None]
    assert [fresh_time(cp, f, 45) for f in range(4)] == [40, 30, 10, None]  # 50 is after the verifier's clock
    assert fresh_time(FinalCheckpoint.of("VN", 3, b"\x00" * 32, {"VN": 7, "TH": 9}), 1, 100) == 7  # no heartbeats


@given(honest=st.lists(st.integers(T0, T0 + 10_000), min_size=2, max_size=6),
       colluding=st.lists(st.integers(0, 2 * T0), max_size=2), latest=st.integers(T0, T0 + 20_000))
def test_f_colluding_witnesses_cannot_make_a_checkpoint_look_fresher(honest: list[int], colluding: list[int],
                                                                     latest: int) -> None:
    # Attack: f witnesses sign heartbeats with whatever times they like (far future included) to make a frozen
    # checkpoint look fresh. The freshness shown is never newer than an honest witness's newest time that the
    # verifier's clock allows, and never in the verifier's future.
    faulty = len(colluding)
    times = {f"H{i}": t for i, t in enumerate(honest)} | {f"C{i}": t for i, t in enumerate(colluding)}
    shown = fresh_time(_seen(times), faulty, latest)
    honest_ok = [t for t in honest if t <= latest]
    if shown is None:
        assert len([t for t in times.values() if t <= latest]) <= faulty
    else:
        assert honest_ok and shown <= max(honest_ok) and shown <= latest


def test_view_rests_on_final_checkpoints_the_state_holds(net: Net) -> None:
    sb = net.sb
    size = sb.state.size("VN")
    good = FinalCheckpoint.of("VN", size, sb.trees["VN"].root(), dict.fromkeys(["VN", "TH", "KH", "CN"], T0 + 100))
    beyond = dataclasses.replace(good, size=size + 5)
    thin = FinalCheckpoint.of("VN", size, good.root_hash, {"VN": T0 + 100, "TH": T0 + 100})
    wrong_log = dataclasses.replace(good, log="TH")
    view = RegistryView(sb.state, {"VN": [beyond, thin, wrong_log, good]})
    assert view.positions == {"VN": size}
    assert view.latest_checkpoint("VN") == good and view.latest_checkpoint("TH") is None
    assert view.covering_checkpoint("VN", size - 1) == good and view.covering_checkpoint("VN", size) is None
    assert view.issuer("VN/customs") is not None and view.issuer("TH/doa") is None  # TH has no checkpoint here
    assert view.recognition("TH") is None and view.governance.quorum == 4
    assert view.issuer("") is None and view.issuer("no-slash") is None
    assert view.key(b"short") is None and view.credential_status("??", b"") == () and view.anchors(b"") == ()


def test_proof_of_existence_takes_the_first_covering_checkpoint(net: Net) -> None:
    sb = net.sb
    key = net.keys["VN/customs"]
    cred = issue_credential(certificate_of_origin(), "VN/customs", key, T0 + 200)
    sb.anchor("VN/customs", key, cred, T0 + 210)
    sb.finalize("VN", T0 + 300)
    sb.anchor("VN/customs", key, cred, T0 + 310)  # anchored twice: the earlier proof counts
    sb.finalize("VN", T0 + 400)
    poe = proof_of_existence(sb.view(), credential_digest(cred), 1)
    assert poe is not None and poe.time == T0 + 300 and poe.checkpoint_size == sb.view().positions["VN"] - 1


def test_one_key_in_two_logs() -> None:
    sb = Sandbox(seed="twins")
    sb.register_issuer("VN/customs", ["certificate-of-origin", "e-invoice"], "high", T0 + 10)
    sb.register_issuer("TH/customs", ["certificate-of-origin", "e-invoice"], "high", T0 + 10)
    key = sb.add_key("VN/customs", T0 + 10)
    sb.add_key("TH/customs", T0 + 10, key=key)  # TH's admin copies VN's public key
    sb.finalize_all(T0 + 100)
    view = sb.view()
    kid = key_id(public_key_of(key))
    assert view.key(kid) is None  # ambiguous without the issuer
    assert view.key(kid, "VN/customs").issuer == "VN/customs"  # type: ignore[union-attr]
    cred = issue_credential(certificate_of_origin(), "VN/customs", key, T0 + 200)
    assert verify(cred, view, VerificationPolicy("VN"), NOW).indication == "TOTAL-PASSED"
    sig = sign_document(DOC, key, media_type="text/xml", file_name="a.xml", document_type="e-invoice",
                        signed_at=T0 + 200)
    report = verify(SignedDocument(sig, DOC), view, VerificationPolicy("VN"), NOW)
    assert report.sub_indication == "NO_SIGNING_CERTIFICATE_FOUND"


def test_views_are_snapshots(net: Net, policy_th: VerificationPolicy) -> None:
    view = net.view()
    cred = issue_credential(certificate_of_origin(), "VN/customs", net.keys["VN/customs"], T0 + 200)
    assert verify(cred, view, policy_th, NOW).indication == "TOTAL-PASSED"
    net.sb.update_issuer("VN/customs", T0 + 300, status="suspended")
    net.sb.finalize("VN", T0 + 310)
    assert verify(cred, view, policy_th, NOW).indication == "TOTAL-PASSED"  # the old view
    assert verify(cred, net.view(), policy_th, NOW).indication == "INDETERMINATE"


def test_sandbox_refuses_what_the_ledger_refuses(net: Net) -> None:
    with pytest.raises(AuthorizationError):
        net.sb.register_issuer("VN/customs", ["e-invoice"], "high", T0 + 300)  # registered twice
    with pytest.raises(AuthorizationError):
        net.sb.anchor("VN/customs", net.keys["TH/doa"], b"x", T0 + 300)  # another issuer's key


def test_anchor_bodies(net: Net, policy_th: VerificationPolicy) -> None:
    key = net.keys["VN/customs"]
    cred = issue_credential(certificate_of_origin(), "VN/customs", key, T0 + 200, cti=b"a" * 16)
    body = anchor_body(cred)
    assert (body.issuer, body.digest, body.credential_id) == ("VN/customs", credential_digest(cred), b"a" * 16)
    net.sb.append("VN", "credential.anchor", T0 + 210, body, key)
    net.sb.finalize("VN", T0 + 220)
    report = verify(cred, net.view(), policy_th, NOW)
    assert report.proof_of_existence is not None and report.proof_of_existence.time == T0 + 220
    sig = sign_document(DOC, key, media_type="text/xml", file_name="a.xml", document_type="e-invoice",
                        signed_at=T0 + 200)
    assert anchor_body(sig, "VN/customs").credential_id is None
    with pytest.raises(DecodeError):
        anchor_body(sig)
