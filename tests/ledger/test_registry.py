"""Registry state and authorisation rules (spec 6.3, 6.4), with real Ed25519 keys and a real root chain.

Four members (KH, LA, TH, VN), ``f = 1``, ``quorum = threshold = 3``. Root version 2 replaces VN's admin key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.entries import (
    CredentialAnchor,
    CredentialStatus,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    PolicyRule,
    UnverifiedEntry,
    make_entry,
)
from ledger.errors import (
    AuthorizationError,
    ConflictError,
    DecodeError,
    MekongError,
    VerificationError,
)
from ledger.governance import GovernanceChain
from ledger.keys import key_id, next_key_digest, public_key_of
from ledger.memberlog import ParallelVerifier
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from ledger.rules import SignatureJob, verify_sequential

MEMBERS = ("KH", "LA", "TH", "VN")
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


def sk(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(label.encode()).digest())


def pub(key: nacl.signing.SigningKey) -> bytes:
    return public_key_of(key)


def kid(key: nacl.signing.SigningKey) -> bytes:
    return key_id(pub(key))


ADMIN = {m: sk(f"admin {m}") for m in MEMBERS}
ADMIN_VN2 = sk("admin VN v2")
K1, K2, K3 = sk("VN/customs key 1"), sk("VN/customs key 2"), sk("VN/customs key 3")
KT = sk("TH/moit key")
STRANGER = sk("stranger")


def _root(version: int, previous: bytes | None, vn_admin: nacl.signing.SigningKey) -> Root:
    members = tuple(Member(m, f"member {m}", (pub(vn_admin if m == "VN" else ADMIN[m]),), pub(sk(f"node {m}")),
                           (f"https://{m.lower()}.example",)) for m in MEMBERS)
    return Root("gms", version, previous, members, 3, 3, 1, T0 - DAY)


def make_chain(with_v2: bool = True) -> GovernanceChain:
    genesis = _root(1, None, ADMIN["VN"])
    chain = GovernanceChain(SignedRoot.create(genesis, ADMIN.values()))
    if with_v2:
        v2 = _root(2, SignedRoot.create(genesis).root_hash, ADMIN_VN2)
        chain.add(SignedRoot.create(v2, [ADMIN["KH"], ADMIN["LA"], ADMIN["TH"]]))
    return chain


def digest(label: Any) -> bytes:
    return hashlib.sha256(str(label).encode()).digest()


class World:
    """A registry state plus helpers that sign entries the way members and issuers would."""

    def __init__(self) -> None:
        self.state = RegistryState(make_chain())
        self.time = T0

    def entry(self, type_name: str, body: Any, key: nacl.signing.SigningKey, *, log: str = "VN",
              t: int | None = None, root: int = 1) -> bytes:
        return make_entry(log, type_name, self.time if t is None else t, body, key, root=root)

    def apply(self, *raws: bytes, log: str = "VN", verify: Callable[[Sequence[SignatureJob]], None] = verify_sequential
              ) -> list[int]:
        return [e.index for e in self.state.apply_batch(log, self.state.size(log), list(raws), verify)]

    def refuse(self, raw: bytes, rule: str, exc: type[Exception] = AuthorizationError, log: str = "VN") -> None:
        size = self.state.size(log)
        with pytest.raises(exc, match=rf"log {log} entry {size}: spec {rule}[ :]"):
            self.state.apply_batch(log, size, [raw])
        assert self.state.size(log) == size

    # entry makers --------------------------------------------------------------------------------
    def register(self, issuer: str = "VN/customs", loa: str = "high", types: tuple[str, ...] = ("coo", "invoice"),
                 key: nacl.signing.SigningKey | None = None, **kw: Any) -> bytes:
        log = issuer[:2]
        return self.entry("issuer.register", IssuerRegister(issuer, f"issuer {issuer}", types, loa, log),
                          key or ADMIN[log], log=log, **kw)

    def add_key(self, key: nacl.signing.SigningKey, issuer: str = "VN/customs", valid_from: int = T0,
                valid_until: int | None = None, commit: nacl.signing.SigningKey | None = None,
                signer: nacl.signing.SigningKey | None = None, **kw: Any) -> bytes:
        body = IssuerKeyAdd(issuer, pub(key), valid_from, valid_until, next_key_digest(pub(commit)) if commit else None)
        return self.entry("issuer.key.add", body, signer or ADMIN[issuer[:2]], log=issuer[:2], **kw)

    def update(self, issuer: str = "VN/customs", signer: nacl.signing.SigningKey | None = None, **fields: Any) -> bytes:
        t = fields.pop("t", None)
        return self.entry("issuer.update", IssuerUpdate(issuer, **fields), signer or ADMIN[issuer[:2]],
                          log=issuer[:2], t=t)

    def anchor(self, n: Any, key: nacl.signing.SigningKey = K1, issuer: str = "VN/customs", cti: bytes | None = None,
               **kw: Any) -> bytes:
        kw.setdefault("log", issuer[:2])
        return self.entry("credential.anchor", CredentialAnchor(issuer, digest(n), "sha-256", cti), key, **kw)

    def status(self, cti: bytes, status: str, key: nacl.signing.SigningKey = K1, issuer: str = "VN/customs",
               **kw: Any) -> bytes:
        return self.entry("credential.status", CredentialStatus(issuer, cti, status, "test"), key, log=issuer[:2], **kw)

    def revoke(self, key: nacl.signing.SigningKey, reason: str, effective: int,
               signer: nacl.signing.SigningKey | None = None, issuer: str = "VN/customs", **kw: Any) -> bytes:
        return self.entry("issuer.key.revoke", IssuerKeyRevoke(issuer, kid(key), reason, effective),
                          signer or ADMIN[issuer[:2]], log=issuer[:2], **kw)

    def rotate(self, old: nacl.signing.SigningKey, new: nacl.signing.SigningKey,
               commit: nacl.signing.SigningKey | None = None, signer: nacl.signing.SigningKey | None = None,
               issuer: str = "VN/customs", valid_until: int | None = None, **kw: Any) -> bytes:
        body = IssuerKeyRotate(issuer, kid(old), pub(new), valid_until,
                               next_key_digest(pub(commit)) if commit else None)
        return self.entry("issuer.key.rotate", body, signer or new, log=issuer[:2], **kw)


@pytest.fixture
def w() -> World:
    """VN/customs (key K1, committed to K2) and TH/moit (key KT) registered; VN size 2, TH size 2."""
    world = World()
    world.apply(world.register(), world.add_key(K1, commit=K2))
    world.apply(world.register("TH/moit"), world.add_key(KT, "TH/moit"), log="TH")
    world.time += 10
    return world


# --------------------------------------------------------------------------- registration, keys, anchors


def test_register_add_key_anchor_and_queries(w: World) -> None:
    idx = w.apply(w.anchor(1, cti=b"cred-1"), w.anchor(2))
    assert idx == [2, 3]
    issuer = w.state.issuer("VN/customs")
    assert issuer is not None
    assert (issuer.member, issuer.loa, issuer.status, issuer.document_types) == ("VN", "high", "active",
                                                                                  ("coo", "invoice"))
    assert issuer.keys == (kid(K1),) and issuer.entries == (0,)
    key = w.state.key(kid(K1))
    assert key is not None
    assert (key.issuer, key.key, key.valid_from, key.next_key_digest) == ("VN/customs", pub(K1), T0,
                                                                          next_key_digest(pub(K1 and K2)))
    assert key.entries == (1,) and key.history[0].status == "added"
    (a,) = w.state.anchors(digest(1))
    assert (a.log, a.index, a.issuer, a.time, a.credential_id) == ("VN", 2, "VN/customs", w.time, b"cred-1")
    cred = w.state.credential("VN/customs", b"cred-1")
    assert cred is not None and cred.status == "active" and cred.anchors == (a,) and cred.entries == (2,)
    assert w.state.credential("VN/customs", b"never") is None
    assert w.state.issuer("VN/nobody") is None and w.state.key(bytes(16)) is None
    assert w.state.anchors(digest(99)) == ()
    assert w.state.sizes() == {"VN": 4, "TH": 2}


def test_entries_are_verified_twins(w: World) -> None:
    raw = w.anchor(5)
    (e,) = w.state.apply_batch("VN", 2, [raw])
    assert e.raw is raw and e.index == 2 and e.signer_kid == kid(K1) and e.log == "VN"
    assert e.body == UnverifiedEntry.decode(raw).body
    assert e.sign1.payload == UnverifiedEntry.decode(raw).sign1.payload


def test_register_twice_refused(w: World) -> None:
    w.refuse(w.register(), "6.3.7")


def test_register_by_issuer_key_refused(w: World) -> None:
    w.refuse(w.register("VN/other", key=K1), "6.3.5")


def test_update_unregistered_refused(w: World) -> None:
    w.refuse(w.update("VN/nobody", loa="low"), "6.3.8")


def test_update_by_issuer_key_refused(w: World) -> None:
    w.refuse(w.update(loa="low", signer=K1), "6.3.5")


def test_key_add_rules(w: World) -> None:
    w.refuse(w.add_key(K3, "VN/nobody"), "6.3.9")
    w.refuse(w.add_key(K1), "6.3.9")  # already on the log
    w.refuse(w.add_key(K3, signer=K1), "6.3.5")
    w.apply(w.add_key(K3))


def test_anchor_key_rules(w: World) -> None:
    w.refuse(w.anchor(1, key=STRANGER), "6.3.6")  # not a key of the issuer
    w.refuse(w.anchor(1, key=KT), "6.3.6")  # TH's issuer key, in VN's log
    w.refuse(w.anchor(1, key=ADMIN["VN"]), "6.3.6")  # admin keys do not anchor
    w.refuse(w.anchor(1, issuer="VN/nobody", log="VN"), "6.3.6")
    w.apply(w.add_key(K3, valid_from=T0 + DAY, valid_until=T0 + 2 * DAY))
    w.refuse(w.anchor(1, key=K3), "6.3.6")  # not yet valid
    w.apply(w.anchor(1, key=K3, t=T0 + DAY))
    w.refuse(w.anchor(2, key=K3, t=T0 + 2 * DAY), "6.3.6")  # expired
    w.apply(w.anchor(2, key=K1, t=T0 + 2 * DAY))


def test_anchor_message_names_rule_index_and_log(w: World) -> None:
    with pytest.raises(AuthorizationError) as info:
        w.state.apply_batch("VN", 2, [w.anchor(1), w.anchor(2, key=STRANGER)])
    assert str(info.value).startswith("log VN entry 3: spec 6.3.6: ")
    assert w.state.size("VN") == 2


# --------------------------------------------------------------------------- cross-log writes, time, roots


def test_entry_naming_another_log_refused(w: World) -> None:
    raw = w.anchor(1, key=KT, issuer="TH/moit")
    w.refuse(raw, "6.3.1", log="VN")
    w.apply(raw, log="TH")


def test_issuer_of_another_member_refused(w: World) -> None:
    w.refuse(w.entry("issuer.register", IssuerRegister("TH/fake", "x", ("coo",), "high", "TH"), ADMIN["VN"]),
             "6.3.2")
    w.refuse(w.anchor(1, key=KT, issuer="TH/moit", log="VN"), "6.3.2")


def test_admin_of_another_member_refused(w: World) -> None:
    w.refuse(w.register("TH/fake", key=ADMIN["VN"]), "6.3.5", log="TH")
    w.refuse(w.entry("member.policy", MemberPolicy(()), ADMIN["VN"], log="TH"), "6.3.5", log="TH")


def test_author_time_never_decreases(w: World) -> None:
    w.apply(w.anchor(1, t=T0 + 100))
    w.apply(w.anchor(2, t=T0 + 100))  # equal is fine
    w.refuse(w.anchor(3, t=T0 + 99), "6.3.3")
    with pytest.raises(AuthorizationError, match="entry 5: spec 6.3.3"):
        w.state.apply_batch("VN", 4, [w.anchor(3, t=T0 + 200), w.anchor(4, t=T0 + 150)])
    w.apply(w.anchor(3, t=T0 + 50, log="TH", key=KT, issuer="TH/moit"), log="TH")  # logs are independent


def test_root_versions(w: World) -> None:
    # Version 2 replaced VN's admin key: the old key acts under root 1 only, the new one under root 2 only.
    w.refuse(w.register("VN/v3", root=3), "6.3.4")
    w.refuse(w.register("VN/new", key=ADMIN_VN2, root=1), "6.3.5")
    w.refuse(w.register("VN/old", key=ADMIN["VN"], root=2), "6.3.5")
    w.apply(w.register("VN/old", root=1))
    w.apply(w.register("VN/new", key=ADMIN_VN2, root=2))
    # Once the log has moved to root 2, nothing may claim root 1 again: the old key is locked out.
    w.refuse(w.register("VN/late", root=1), "6.3.4")
    w.refuse(w.anchor(1, root=1), "6.3.4")
    w.apply(w.anchor(1, root=2))


def test_member_not_in_root_refused() -> None:
    world = World()
    stranger_log = make_entry("MY", "issuer.register", T0, IssuerRegister("MY/x", "x", ("coo",), "high", "MY"),
                              STRANGER)
    with pytest.raises(AuthorizationError, match="log MY entry 0: spec 6.3.4: MY is not a member"):
        world.state.apply_batch("MY", 0, [stranger_log])


def test_root_added_later_is_usable() -> None:
    world = World()
    world.state = RegistryState(make_chain(with_v2=False))
    world.refuse(world.register(key=ADMIN_VN2, root=2), "6.3.4")
    world.state.chain.add(SignedRoot.create(_root(2, SignedRoot.create(_root(1, None, ADMIN["VN"])).root_hash,
                                                  ADMIN_VN2), [ADMIN["KH"], ADMIN["LA"], ADMIN["TH"]]))
    world.apply(world.register(key=ADMIN_VN2, root=2))


# --------------------------------------------------------------------------- issuer status, accreditation


def test_suspension_blocks_anchors_and_reinstatement_restores(w: World) -> None:
    w.apply(w.anchor(1))
    w.apply(w.update(status="suspended", reason="audit", t=T0 + 100))
    w.refuse(w.anchor(2, t=T0 + 100), "6.3.6")
    w.refuse(w.status(b"c", "revoked", t=T0 + 100), "6.3.6")
    w.refuse(w.revoke(K1, "ceased", T0 + 200, signer=K1, t=T0 + 100), "6.3.6")  # self-revocation needs active
    w.apply(w.update(status="active", reason="cleared", t=T0 + 200))
    w.apply(w.anchor(2, t=T0 + 200))
    issuer = w.state.issuer("VN/customs")
    assert issuer is not None and issuer.status == "active" and issuer.entries == (0, 3, 4)
    assert [s.status for s in issuer.history] == ["active", "suspended", "active"]
    assert [(s.time, s.status, s.reason, s.index) for s in issuer.history][1:] == [
        (T0 + 100, "suspended", "audit", 3), (T0 + 200, "active", "cleared", 4)]
    suspended = w.state.issuer("VN/customs", as_of=4)
    assert suspended is not None and suspended.status == "suspended"


def test_update_changes_accreditation(w: World) -> None:
    w.apply(w.update(document_types=("coo",), loa="substantial", reason="re-assessed"))
    issuer = w.state.issuer("VN/customs")
    assert issuer is not None and (issuer.document_types, issuer.loa, issuer.status) == (("coo",), "substantial",
                                                                                        "active")
    assert [(h.document_types, h.loa) for h in issuer.history] == [(("coo", "invoice"), "high"),
                                                                     (("coo",), "substantial")]
    before = w.state.issuer("VN/customs", as_of=2)
    assert before is not None and before.loa == "high" and before.document_types == ("coo", "invoice")


# --------------------------------------------------------------------------- rotation with pre-rotation


def test_rotation_with_pre_rotation(w: World) -> None:
    w.apply(w.anchor(1, key=K1, t=T0 + 100))
    w.apply(w.rotate(K1, K2, commit=K3, t=T0 + 200))
    old, new = w.state.key(kid(K1)), w.state.key(kid(K2))
    assert old is not None and new is not None
    assert old.superseded_by == kid(K2) and old.history[-1].status == "superseded" and old.entries == (1, 3)
    assert (new.valid_from, new.next_key_digest, new.history[0].reason) == (T0 + 200, next_key_digest(pub(K3)),
                                                                            "rotation")
    assert tuple(w.state.key_status_at(kid(K1), T0 + 150)) == ("valid", None, T0)  # type: ignore[arg-type]
    assert tuple(w.state.key_status_at(kid(K1), T0 + 200)) == ("superseded", "rotation", T0 + 200)  # type: ignore
    assert tuple(w.state.key_status_at(kid(K2), T0 + 199)) == ("not-yet-valid", None, None)  # type: ignore
    issuer = w.state.issuer("VN/customs")
    assert issuer is not None and issuer.keys == (kid(K1), kid(K2))
    w.refuse(w.anchor(2, key=K1, t=T0 + 200), "6.3.6")
    w.apply(w.anchor(2, key=K2, t=T0 + 200))
    # The new key committed to K3, so it can be rotated in turn; the old commitment is spent.
    w.refuse(w.rotate(K1, K2, t=T0 + 300), "6.3.10")
    w.apply(w.rotate(K2, K3, t=T0 + 300))
    w.refuse(w.rotate(K3, K1, t=T0 + 400), "6.3.10")  # K3 committed to nothing


def test_rotation_refusals(w: World) -> None:
    w.refuse(w.rotate(K1, K3), "6.3.10")  # K3 is not the key K1 committed to
    w.refuse(w.rotate(K1, K2, signer=K1), "6.3.10")  # must be signed by the revealed key
    w.refuse(w.rotate(KT, K2), "6.3.10")  # not a key of the issuer
    w.refuse(w.rotate(K1, K2, valid_until=w.time), "6.3.10")  # empty window
    w.refuse(w.rotate(K1, K2, issuer="VN/nobody"), "6.3.10")
    w.apply(w.update(status="suspended"))
    w.refuse(w.rotate(K1, K2), "6.3.10")


def test_rotation_recovers_from_compromise(w: World) -> None:
    # K1 is stolen; the member revokes it from the past, and the issuer rotates to the committed K2.
    w.apply(w.revoke(K1, "compromised", T0 + 5, t=T0 + 100))
    w.refuse(w.anchor(1, key=K1, t=T0 + 100), "6.3.6")
    w.apply(w.rotate(K1, K2, t=T0 + 100))
    w.apply(w.anchor(1, key=K2, t=T0 + 100))
    status = w.state.key_status_at(kid(K1), T0 + 50)
    assert status is not None and (status.status, status.reason, status.effective) == ("revoked", "compromised",
                                                                                       T0 + 5)


def test_rotation_new_key_already_on_log_refused(w: World) -> None:
    w.apply(w.add_key(K2))
    w.refuse(w.rotate(K1, K2), "6.3.10")


# --------------------------------------------------------------------------- revocation


@pytest.mark.parametrize("reason", ["superseded", "compromised", "ceased"])
def test_revocation_each_reason(w: World, reason: str) -> None:
    w.apply(w.revoke(K1, reason, T0 + 500, t=T0 + 100))
    w.apply(w.anchor(1, t=T0 + 499))  # still usable before the effective time
    w.refuse(w.anchor(2, t=T0 + 500), "6.3.6")
    key = w.state.key(kid(K1))
    assert key is not None and key.history[-1].status == "revoked" and key.history[-1].reason == reason
    assert tuple(w.state.key_status_at(kid(K1), T0 + 499)) == ("valid", None, T0)  # type: ignore[arg-type]
    assert tuple(w.state.key_status_at(kid(K1), T0 + 500)) == ("revoked", reason, T0 + 500)  # type: ignore
    status = w.state.key_status_at(kid(K1), T0 + 600)
    assert status is not None and status.entries == (1, 2)


@pytest.mark.parametrize("reason", ["superseded", "ceased"])
def test_revocation_in_the_past_only_for_compromise(w: World, reason: str) -> None:
    w.refuse(w.revoke(K1, reason, T0 + 9, t=T0 + 10), "6.3.11")
    w.apply(w.revoke(K1, reason, T0 + 10, t=T0 + 10))


def test_compromised_with_past_effective_time(w: World) -> None:
    w.apply(w.anchor(1, t=T0 + 50))
    w.apply(w.revoke(K1, "compromised", T0 + 20, t=T0 + 100))
    assert tuple(w.state.key_status_at(kid(K1), T0 + 19)) == ("valid", None, T0)  # type: ignore[arg-type]
    assert tuple(w.state.key_status_at(kid(K1), T0 + 50)) == ("revoked", "compromised", T0 + 20)  # type: ignore
    # As the log stood before the revocation, the key was valid at that time.
    assert tuple(w.state.key_status_at(kid(K1), T0 + 50, as_of=3)) == ("valid", None, T0)  # type: ignore


def test_self_revocation_and_further_revocations(w: World) -> None:
    w.apply(w.add_key(K3))
    w.refuse(w.revoke(K1, "ceased", w.time, signer=KT), "6.3.6")  # another issuer's key
    w.refuse(w.revoke(K1, "ceased", w.time, signer=STRANGER), "6.3.6")
    w.apply(w.revoke(K1, "ceased", T0 + 1000, signer=K3))  # by a current key of the same issuer
    w.apply(w.revoke(K3, "ceased", T0 + 1000, signer=K3))  # by itself
    w.refuse(w.revoke(K1, "ceased", T0 + 1000), "6.3.11")  # not earlier than the one in force
    w.refuse(w.revoke(K1, "superseded", T0 + 2000), "6.3.11")
    w.apply(w.revoke(K1, "compromised", T0 + 1, t=T0 + 20))  # brought forward by compromise
    assert tuple(w.state.key_status_at(kid(K1), T0 + 5000)) == ("revoked", "compromised", T0 + 1)  # type: ignore
    w.refuse(w.revoke(KT, "ceased", T0 + 1000, signer=K1, t=T0 + 20), "6.3.11")  # not a key of VN/customs


def test_revocation_precedence() -> None:
    from ledger.records import KeyEvent, key_status
    events = [KeyEvent("superseded", "rotation", 100, 3, b"x"), KeyEvent("revoked", "ceased", 50, 4)]
    assert tuple(key_status(0, None, 1, events, 75)) == ("revoked", "ceased", 50)
    assert tuple(key_status(0, None, 1, events, 200)) == ("revoked", "ceased", 50)
    events.append(KeyEvent("revoked", "compromised", 80, 5))
    assert tuple(key_status(0, None, 1, events, 90)) == ("revoked", "compromised", 80)
    assert tuple(key_status(0, 60, 1, [], 60)) == ("expired", None, 60)
    assert tuple(key_status(10, 60, 1, [], 5)) == ("not-yet-valid", None, None)


# --------------------------------------------------------------------------- credential status


def test_credential_status_transitions(w: World) -> None:
    cti = b"cred-7"
    w.refuse(w.status(cti, "active"), "6.3.13")  # already active
    w.apply(w.status(cti, "suspended", t=T0 + 100))
    w.refuse(w.status(cti, "suspended", t=T0 + 100), "6.3.13")
    w.apply(w.status(cti, "active", t=T0 + 200))  # reinstated
    w.apply(w.status(cti, "revoked", t=T0 + 300))
    for s in ("active", "suspended", "revoked"):
        w.refuse(w.status(cti, s, t=T0 + 400), "6.3.13")  # revocation is final
    cred = w.state.credential("VN/customs", cti)
    assert cred is not None and cred.status == "revoked" and cred.entries == (2, 3, 4)
    assert [e.status for e in cred.history] == ["suspended", "active", "revoked"]
    assert [e.time for e in cred.history] == [T0 + 100, T0 + 200, T0 + 300]
    old = w.state.credential("VN/customs", cti, as_of=3)
    assert old is not None and old.status == "suspended"


def test_credential_status_only_by_its_issuer(w: World) -> None:
    w.apply(w.register("VN/health"), w.add_key(K3, "VN/health"))
    w.refuse(w.status(b"c", "revoked", key=K3), "6.3.6")  # VN/health's key for VN/customs' credential
    w.refuse(w.status(b"c", "revoked", key=ADMIN["VN"]), "6.3.6")
    w.apply(w.status(b"c", "revoked", key=K3, issuer="VN/health"))
    assert w.state.credential("VN/customs", b"c") is None
    other = w.state.credential("VN/health", b"c")
    assert other is not None and other.status == "revoked"


# --------------------------------------------------------------------------- policy


def test_policy(w: World) -> None:
    p1 = MemberPolicy((PolicyRule("TH", ("coo",), "substantial"),))
    p2 = MemberPolicy((PolicyRule("*", ("*",), "high"),))
    w.refuse(w.entry("member.policy", p1, K1), "6.3.5")
    w.apply(w.entry("member.policy", p1, ADMIN["VN"]))
    w.apply(w.entry("member.policy", p2, ADMIN["VN"], t=T0 + 100))
    rec = w.state.policy("VN")
    assert rec is not None and rec.rules == p2.rules and rec.entries == (3,) and rec.time == T0 + 100
    assert any(r.covers("TH", "invoice", "high") for r in rec.rules)
    assert not any(r.covers("TH", "coo", "substantial") for r in rec.rules)
    old = w.state.policy("VN", as_of=3)
    assert old is not None and old.rules == p1.rules and any(r.covers("TH", "coo", "substantial") for r in old.rules)
    assert w.state.policy("VN", as_of=2) is None and w.state.policy("TH") is None


# --------------------------------------------------------------------------- as of


def test_as_of_returns_earlier_answers(w: World) -> None:
    w.apply(w.anchor(1, cti=b"c1"), w.status(b"c1", "suspended"))
    w.apply(w.anchor(1, key=KT, issuer="TH/moit"), log="TH")
    assert w.state.issuer("VN/customs", as_of=0) is None
    first = w.state.issuer("VN/customs", as_of=1)
    assert first is not None and first.keys == ()
    assert w.state.key(kid(K1), as_of=1) is None and w.state.key(kid(K1), as_of=2) is not None
    assert w.state.credential("VN/customs", b"c1", as_of=2) is None
    c = w.state.credential("VN/customs", b"c1", as_of=3)
    assert c is not None and c.status == "active" and len(c.anchors) == 1
    assert [(a.log, a.index) for a in w.state.anchors(digest(1))] == [("TH", 2), ("VN", 2)]
    assert [(a.log, a.index) for a in w.state.anchors(digest(1), as_of={"VN": 3})] == [("VN", 2)]
    assert w.state.anchors(digest(1), as_of={"VN": 2, "TH": 2}) == ()
    for bad in (-1, 5, True, "2"):
        with pytest.raises(ValueError):
            w.state.issuer("VN/customs", as_of=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        w.state.anchors(digest(1), as_of={"VN": 99})


# --------------------------------------------------------------------------- batches


def test_batch_entries_depend_on_earlier_ones_in_the_batch() -> None:
    world = World()
    world.apply(world.register(), world.add_key(K1, commit=K2), world.anchor(1), world.rotate(K1, K2),
                world.anchor(2, key=K2), world.status(b"x", "revoked", key=K2))
    assert world.state.size("VN") == 6


def test_start_must_equal_size(w: World) -> None:
    with pytest.raises(ConflictError):
        w.state.apply_batch("VN", 3, [w.anchor(1)])
    with pytest.raises(ConflictError):
        w.state.apply_batch("VN", 1, [w.anchor(1)])
    with pytest.raises(ValueError):
        w.state.apply_batch("vn", 0, [w.anchor(1)])
    assert w.state.apply_batch("VN", 2, []) == []


def test_malformed_entry_in_batch(w: World) -> None:
    with pytest.raises(DecodeError, match="log VN entry 3: "):
        w.state.apply_batch("VN", 2, [w.anchor(1), w.anchor(2)[:-1]])
    assert w.state.size("VN") == 2 and w.state.anchors(digest(1)) == ()


def _bad_signature(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def test_bad_signature_refused_whole_batch(w: World) -> None:
    with pytest.raises(VerificationError, match=r"log VN entry 4: spec 6\.3\.15"):
        w.state.apply_batch("VN", 2, [w.anchor(1), w.register("VN/x"), _bad_signature(w.anchor(2)), w.anchor(3)])
    assert w.state.size("VN") == 2 and w.state.anchors(digest(1)) == () and w.state.issuer("VN/x") is None


def test_forged_kid_refused(w: World) -> None:
    # The header claims K1's key id but a stranger signed: the rules pick K1, the signature fails.
    from ledger.cose import sign1
    raw = w.anchor(1)
    forged = sign1(UnverifiedEntry.decode(raw).sign1.payload or b"", STRANGER, kid=kid(K1),
                   content_type="application/mekong-entry+cbor")
    w.refuse(forged, "6.3.15", VerificationError)


def test_parallel_verifier(w: World) -> None:
    raws = [w.anchor(i, t=T0 + i) for i in range(40)]
    with ThreadPoolExecutor(2) as pool:
        verify = ParallelVerifier(2, pool)
        spoilt = list(raws)
        spoilt[30] = _bad_signature(spoilt[30])
        with pytest.raises(VerificationError, match="log VN entry 32: spec 6.3.15"):
            w.state.apply_batch("VN", 2, spoilt, verify)
        assert w.state.size("VN") == 2
        w.state.apply_batch("VN", 2, raws, verify)
    assert w.state.size("VN") == 42


def test_queries_during_verification_see_committed_entries_only(w: World) -> None:
    seen: list[Any] = []

    def verify(jobs: Sequence[SignatureJob]) -> None:
        seen.append((w.state.size("VN"), w.state.anchors(digest(1)), w.state.issuer("VN/x"), w.state.key(kid(K3)),
                     w.state.credential("VN/customs", b"c")))
        verify_sequential(jobs)

    w.apply(w.anchor(1, cti=b"c"), w.register("VN/x"), w.add_key(K3, "VN/x"), verify=verify)
    assert seen == [(2, (), None, None, None)]
    assert w.state.issuer("VN/x") is not None


def test_verifier_failure_of_another_kind_leaves_state_unchanged(w: World) -> None:
    def broken(jobs: Sequence[SignatureJob]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        w.state.apply_batch("VN", 2, [w.anchor(1), w.register("VN/x")], broken)
    assert w.state.size("VN") == 2 and w.state.issuer("VN/x") is None


def test_same_key_on_two_logs(w: World) -> None:
    w.apply(w.add_key(K3), log="VN")
    w.apply(w.add_key(K3, "TH/moit"), log="TH")
    assert w.state.key_issuers(kid(K3)) == ("TH/moit", "VN/customs")
    with pytest.raises(ConflictError) as info:
        w.state.key(kid(K3))
    assert info.value.evidence == ("TH/moit", "VN/customs")
    th = w.state.key(kid(K3), issuer="TH/moit")
    assert th is not None and th.member == "TH"
    assert w.state.key(kid(K3), issuer="VN/other") is None
    # Each log's own rules are unaffected: the key signs only for the issuer of that log.
    w.apply(w.anchor(1, key=K3))
    w.apply(w.anchor(1, key=K3, issuer="TH/moit"), log="TH")


# --------------------------------------------------------------------------- atomicity, by property


def snapshot(state: RegistryState, world_keys: Sequence[bytes], issuers: Sequence[str], ctis: Sequence[bytes],
             digests: Sequence[bytes]) -> Any:
    """Every query answer we can think of, at every position of every log."""
    out: list[Any] = [state.sizes()]
    for log in ("VN", "TH"):
        for pos in range(state.size(log) + 1):
            out.append(state.policy(log, pos))
            out.extend(state.issuer(i, pos) for i in issuers if i[:2] == log)
            out.extend(state.credential(i, c, pos) for i in issuers if i[:2] == log for c in ctis)
    for k in world_keys:
        for issuer in issuers:
            rec = state.key(k, issuer=issuer)
            out.append(rec)
            if rec is not None:
                for pos in range(state.size(rec.member) + 1):
                    out.append(state.key(k, pos, issuer=issuer))
                    out.extend(state.key_status_at(k, t, pos, issuer=issuer) for t in (T0, T0 + 50, T0 + 10**6))
    for d in digests:
        out.append(state.anchors(d))
        out.append(state.anchors(d, as_of={"VN": min(3, state.size("VN"))}))
    return out


def internals(state: RegistryState) -> Any:
    """The state's own bookkeeping, uncommitted leftovers included (white-box)."""
    return (
        dict(state._logs),
        {k: (v.member, v.name, v.jurisdiction, tuple(v.states), tuple(v.kids)) for k, v in state._issuers.items()},
        {(log, k): (v.issuer, v.key, v.valid_from, v.valid_until, v.next_key_digest, v.added, tuple(v.events))
         for log, keys in state._keys.items() for k, v in keys.items()},
        {k: (tuple(v.events), tuple(v.anchors)) for k, v in state.book._credentials.items()},  # type: ignore[attr-defined]
        {k: tuple(v) for k, v in state.book._anchors.items()},  # type: ignore[attr-defined]
        {k: tuple(v) for k, v in state._policies.items()},
    )


SPOILERS = ["bad-signature", "wrong-log", "time-backwards", "unknown-issuer", "malformed", "stranger-key",
            "root-too-new"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_failed_batch_leaves_every_answer_identical(data: st.DataObject) -> None:
    world = World()
    keys = [K1, K2, K3, sk("extra 1"), sk("extra 2")]
    issuers = ["VN/customs", "VN/health", "VN/trade"]
    ctis = [b"c0", b"c1", b"c2"]
    t = T0 + 10
    registered, keyed = {"VN/customs"}, {"VN/customs": K1}
    status: dict[bytes, str] = {}
    policies = 0

    def valid_entry() -> bytes:
        nonlocal t, policies
        t += data.draw(st.integers(0, 3))
        kind = data.draw(st.sampled_from(["anchor", "anchor", "status", "update", "register", "key", "policy"]))
        issuer = data.draw(st.sampled_from(sorted(keyed)))
        if kind == "anchor":
            return world.anchor(data.draw(st.integers(0, 5)), key=keyed[issuer], issuer=issuer,
                                cti=data.draw(st.sampled_from([None, *ctis])), t=t)
        if kind == "status" and issuer == "VN/customs":
            cti = data.draw(st.sampled_from(ctis))
            now = status.get(cti, "active")
            if now != "revoked":
                new = data.draw(st.sampled_from([s for s in ("active", "suspended", "revoked") if s != now]))
                status[cti] = new
                return world.status(cti, new, key=keyed[issuer], t=t)
        if kind == "register":
            free = [i for i in issuers if i not in registered]
            if free:
                registered.add(free[0])
                return world.register(free[0], t=t)
        if kind == "key":
            new_issuer = next((i for i in sorted(registered) if i not in keyed), None)
            if new_issuer is not None:
                keyed[new_issuer] = keys[2 + len(keyed)]
                return world.add_key(keyed[new_issuer], new_issuer, t=t)
        if kind == "policy":
            policies += 1
            return world.entry("member.policy", MemberPolicy((PolicyRule("*", ("*",), "low"),) * policies),
                               ADMIN["VN"], t=t)
        return world.update(issuer, loa=data.draw(st.sampled_from(["low", "substantial", "high"])), t=t)

    committed = [[world.register(), world.add_key(K1, commit=K2)]]
    world.apply(*committed[0])
    for _ in range(data.draw(st.integers(0, 2))):  # some committed batches first
        committed.append([valid_entry() for _ in range(data.draw(st.integers(1, 4)))])
        world.apply(*committed[-1])
    snap_keys = [kid(k) for k in keys]
    snap_digests = [digest(i) for i in range(6)]
    before = snapshot(world.state, snap_keys, issuers, ctis, snap_digests)
    inside = internals(world.state)
    batch = [valid_entry() for _ in range(data.draw(st.integers(1, 6)))]
    spoil = data.draw(st.sampled_from(SPOILERS))
    at = data.draw(st.integers(0, len(batch)))
    bad = {
        "bad-signature": lambda: _bad_signature(world.anchor(0, t=t)),
        "wrong-log": lambda: world.anchor(0, key=KT, issuer="TH/moit", t=t),
        "time-backwards": lambda: world.anchor(0, t=T0 - 1),
        "unknown-issuer": lambda: world.anchor(0, issuer="VN/ghost", t=t),
        "malformed": lambda: world.anchor(0, t=t)[:-2],
        "stranger-key": lambda: world.anchor(0, key=STRANGER, t=t),
        "root-too-new": lambda: world.anchor(0, t=t, root=9),
    }[spoil]()
    batch.insert(at, bad)
    with pytest.raises(MekongError):
        world.state.apply_batch("VN", world.state.size("VN"), batch)
    assert snapshot(world.state, snap_keys, issuers, ctis, snap_digests) == before
    assert internals(world.state) == inside
    # The same batch without the bad entry then gives what a state that never saw the failure gives.
    del batch[at]
    world.apply(*batch)
    reference = RegistryState(make_chain())
    for b in [*committed, batch]:
        reference.apply_batch("VN", reference.size("VN"), b)
    assert snapshot(world.state, snap_keys, issuers, ctis, snap_digests) == snapshot(
        reference, snap_keys, issuers, ctis, snap_digests)
