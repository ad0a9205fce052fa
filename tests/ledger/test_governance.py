"""Tests for ledger.governance: roots, signatures, thresholds and the root chain (specs/05-governance.md).

Six GMS members (CN, KH, LA, MM, TH, VN) with real Ed25519 keys, ``f = 1``, ``quorum = threshold = 4``.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import cbor
from ledger.cbor import Tag
from ledger.cose import SIGN1_LIMITS, sign1
from ledger.errors import AuthorizationError, DecodeError, EquivocationError, MekongError, VerificationError
from ledger.governance import GovernanceChain, check_thresholds, verify_genesis, verify_successor, walk, walk_prefix
from ledger.keys import key_id
from ledger.roots import CONTENT_TYPE, Member, Root, SignedRoot, root_hash, sign_root

GMS = ("CN", "KH", "LA", "MM", "TH", "VN")
NAMES = {"CN": "China", "KH": "Cambodia", "LA": "Lao PDR", "MM": "Myanmar", "TH": "Thailand",
         "VN": "Viet Nam", "MY": "Malaysia", "SG": "Singapore"}
ADMIN = {m: nacl.signing.SigningKey.generate() for m in NAMES}
NODE = {m: nacl.signing.SigningKey.generate() for m in NAMES}
STRANGER = nacl.signing.SigningKey.generate()
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def pub(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def member(mid: str, *admin: nacl.signing.SigningKey) -> Member:
    return Member(mid, NAMES[mid], tuple(pub(k) for k in admin or (ADMIN[mid],)), pub(NODE[mid]),
                  (f"https://ledger.{mid.lower()}.mekong.example",))


def make_root(version: int = 1, previous: bytes | None = None, ids: Iterable[str] = GMS, quorum: int = 4,
              threshold: int = 4, faulty: int = 1, **kw: Any) -> Root:
    members = kw.pop("members", None) or tuple(member(m) for m in sorted(ids))
    return Root(kw.pop("network", "gms"), version, previous, members, quorum, threshold, faulty,
                kw.pop("issued_at", T0 + version), **kw)


def sign(root: Root, signers: Iterable[str | nacl.signing.SigningKey]) -> SignedRoot:
    return SignedRoot.create(root, [ADMIN[s] if isinstance(s, str) else s for s in signers])


def next_root(prev: SignedRoot, **kw: Any) -> Root:
    return make_root(prev.root.version + 1, prev.root_hash, **kw)


@pytest.fixture(scope="module")
def genesis() -> SignedRoot:
    return sign(make_root(), GMS)


@pytest.fixture(scope="module")
def v2(genesis: SignedRoot) -> SignedRoot:
    return sign(next_root(genesis), ("KH", "LA", "TH", "VN"))


# --------------------------------------------------------------------------- genesis (spec 5.4.1)


def test_genesis_verifies(genesis: SignedRoot) -> None:
    assert verify_genesis(genesis) == genesis.root
    assert verify_genesis(genesis, genesis.root_hash, now=T0) is genesis.root
    chain = GovernanceChain.from_genesis(genesis, genesis.root_hash)
    assert chain.current is genesis.root and chain.roots == (genesis.root,) and chain.signed(1) is genesis
    assert genesis.root_hash == root_hash(genesis.payload) == genesis.root.root_hash


def test_genesis_pinned_hash_mismatch(genesis: SignedRoot) -> None:
    with pytest.raises(VerificationError, match="not the pinned"):
        verify_genesis(genesis, b"\x00" * 32)
    with pytest.raises(VerificationError, match="not the pinned"):
        walk(genesis, [], b"\x01" * 32)


def test_genesis_missing_founder_signature() -> None:
    signed = sign(make_root(), ("CN", "KH", "MM", "TH"))
    with pytest.raises(AuthorizationError, match=r"founding members LA, VN; all 6 must sign"):
        verify_genesis(signed)
    with pytest.raises(AuthorizationError):
        GovernanceChain(signed)


def test_a_pinned_genesis_needs_no_signatures_and_nothing_else_changes(genesis: SignedRoot, v2: SignedRoot) -> None:
    bare = replace(genesis, signatures=())
    with pytest.raises(AuthorizationError, match="all 6 must sign"):  # without the pin, the founders must sign
        GovernanceChain.from_genesis(bare, genesis.root_hash)
    chain = GovernanceChain.from_pin(bare, genesis.root_hash)
    assert chain.current == genesis.root
    chain.add(v2)  # later roots are verified in full against it
    assert chain.current == v2.root
    with pytest.raises(VerificationError, match="not the pinned"):
        GovernanceChain.from_pin(bare, b"\x00" * 32)
    with pytest.raises(VerificationError, match="needs the pinned genesis hash"):
        verify_genesis(bare, None, pin_alone=True)
    with pytest.raises(VerificationError, match="must be version 1"):
        GovernanceChain.from_pin(v2, v2.root_hash)
    unsigned_v2 = replace(v2, signatures=())
    with pytest.raises(AuthorizationError):
        GovernanceChain.from_pin(bare, genesis.root_hash).add(unsigned_v2)


def test_genesis_must_be_version_1(v2: SignedRoot) -> None:
    with pytest.raises(VerificationError, match="must be version 1"):
        verify_genesis(v2)


def _flip_signature(sig: bytes) -> bytes:
    value = cbor.decode(sig, SIGN1_LIMITS)
    protected, unprotected, payload, signature = value.value
    return cbor.encode(Tag(18, [protected, unprotected, payload, bytes([signature[0] ^ 1]) + signature[1:]]))


@pytest.mark.parametrize("forge", [
    pytest.param(lambda g: sign_root(make_root(issued_at=T0 + 99).to_cbor(), ADMIN["TH"]), id="other-payload"),
    pytest.param(lambda g: _flip_signature(sign_root(g.payload, ADMIN["TH"])), id="flipped-bit"),
])
def test_bad_signature_from_known_key_raises(genesis: SignedRoot, forge: Callable[[SignedRoot], bytes]) -> None:
    bad = genesis.with_signature(forge(genesis))
    assert len(bad.signatures) == len(GMS) + 1
    with pytest.raises(VerificationError, match=r"signature 6 by admin key [0-9a-f]{32} of TH does not verify"):
        verify_genesis(bad)


def test_unknown_signer_ignored(genesis: SignedRoot) -> None:
    assert verify_genesis(genesis.with_signature(sign_root(genesis.payload, STRANGER))) == genesis.root
    five = sign(genesis.root, ("CN", "KH", "LA", "MM", "TH", STRANGER))
    with pytest.raises(AuthorizationError, match="founding members VN;"):
        verify_genesis(five)


def test_with_signature_is_idempotent(genesis: SignedRoot) -> None:
    assert genesis.with_signature(genesis.signatures[0]) is genesis


# --------------------------------------------------------------------------- successors (spec 5.4.2)


def test_successor_threshold_met(genesis: SignedRoot, v2: SignedRoot) -> None:
    assert verify_successor(genesis.root, v2, now=T0) == v2.root
    chain = GovernanceChain(genesis, genesis.root_hash)
    assert chain.add(v2) == v2.root and chain.current == v2.root
    assert chain.add(v2) == v2.root and len(chain.roots) == 2  # adding again changes nothing
    assert chain.root_at(1) == genesis.root and chain.signed(2) is v2


def test_successor_threshold_not_met(genesis: SignedRoot) -> None:
    three = sign(next_root(genesis), ("VN", "TH", "KH", STRANGER))
    msg = r"^version 2 has signatures from 3 of the 6 members of version 1 \(KH, TH, VN\); threshold is 4$"
    with pytest.raises(AuthorizationError, match=msg):
        verify_successor(genesis.root, three)
    with pytest.raises(AuthorizationError, match=msg):
        walk(genesis, [three], genesis.root_hash)


def test_members_counted_not_signatures() -> None:
    two_keys = nacl.signing.SigningKey.generate()
    members = tuple(member(m, ADMIN[m], two_keys) if m == "TH" else member(m) for m in GMS)
    g = sign(make_root(members=members), GMS)
    verify_genesis(g)
    nxt = sign(next_root(g, members=members), ("KH", "TH", two_keys, "VN"))
    assert len(nxt.signatures) == 4
    with pytest.raises(AuthorizationError, match="from 3 of the 6 members"):
        verify_successor(g.root, nxt)
    verify_successor(g.root, nxt.with_signature(sign_root(nxt.payload, ADMIN["LA"])))


def test_added_member_must_sign(genesis: SignedRoot) -> None:
    seven = (*GMS, "MY")
    root = next_root(genesis, ids=seven, quorum=5, threshold=5)
    with pytest.raises(AuthorizationError, match="version 2 adds MY without their signature"):
        verify_successor(genesis.root, sign(root, ("KH", "LA", "TH", "VN")))
    # The newcomer alone cannot stand in for the old members' threshold.
    with pytest.raises(AuthorizationError, match="from 3 of the 6"):
        verify_successor(genesis.root, sign(root, ("LA", "TH", "VN", "MY")))
    assert verify_successor(genesis.root, sign(root, ("KH", "LA", "TH", "VN", "MY"))).member_ids == tuple(sorted(seven))


def test_removed_member_and_rotated_key(genesis: SignedRoot) -> None:
    new_vn = nacl.signing.SigningKey.generate()
    members = tuple(member(m, new_vn) if m == "VN" else member(m) for m in GMS if m != "MM")
    v2 = sign(next_root(genesis, members=members), ("MM", "TH", "VN", "LA"))  # old keys, MM still counts
    chain = walk(genesis, [v2], genesis.root_hash)
    assert chain.current.member_ids == ("CN", "KH", "LA", "TH", "VN")
    assert chain.current.admin_key_owner(key_id(pub(new_vn))) == "VN"
    v3_root = next_root(v2, members=members)
    with pytest.raises(AuthorizationError, match=r"from 3 of the 5 .*\(KH, LA, TH\)"):
        chain.add(sign(v3_root, ("KH", "LA", "TH", "VN", "MM")))  # VN's old key is now unknown
    assert chain.add(sign(v3_root, ("KH", "LA", "TH", new_vn))).version == 3


def test_wrong_previous_hash(genesis: SignedRoot) -> None:
    bad = sign(make_root(2, b"\x42" * 32), GMS)
    with pytest.raises(VerificationError, match="names previous 4242.*but version 1 hashes to"):
        verify_successor(genesis.root, bad)


def test_version_skip(genesis: SignedRoot, v2: SignedRoot) -> None:
    v3 = sign(next_root(v2), GMS)
    with pytest.raises(VerificationError, match="root version 3 cannot follow version 1"):
        verify_successor(genesis.root, v3)
    with pytest.raises(VerificationError, match="skips ahead: the chain is at version 1"):
        GovernanceChain(genesis).add(v3)
    with pytest.raises(VerificationError, match="skips ahead"):
        walk(genesis, [v3], None)


def test_changed_network(genesis: SignedRoot) -> None:
    other = sign(next_root(genesis, network="gms-test"), GMS)
    with pytest.raises(VerificationError, match="for network gms-test, not gms"):
        verify_successor(genesis.root, other)


def test_successor_thresholds_use_its_own_member_count(genesis: SignedRoot) -> None:
    seven = sign(next_root(genesis, ids=(*GMS, "MY")), (*GMS, "MY"))  # quorum 4 of 7 members
    with pytest.raises(VerificationError, match=r"version 2: quorum 4 is unsafe for n=7, f=1: 2\*4 - 7 = 1 is not > 1"
                                                r" \(allowed: 5 to 6\)"):
        verify_successor(genesis.root, seven)


def test_unsafe_genesis_rejected_with_numbers() -> None:
    with pytest.raises(VerificationError, match=r"threshold 6 is not live for n=6, f=1: 6 > n - f = 5"):
        verify_genesis(sign(make_root(threshold=6), GMS))
    with pytest.raises(VerificationError, match=r"quorum 4 is unsafe for n=6, f=2.*none allowed, as n < 3f\+1 = 7"):
        verify_genesis(sign(make_root(faulty=2), GMS))


# --------------------------------------------------------------------------- thresholds (spec 5.3)


def _safe_by_brute_force(n: int, f: int, q: int) -> bool:
    """Any two sets of q of the n members share more than f members."""
    sets = [frozenset(c) for c in itertools.combinations(range(n), q)]
    return bool(sets) and all(len(a & b) > f for a in sets for b in sets)


def _live_by_brute_force(n: int, f: int, q: int) -> bool:
    """Whichever f members fail, the others can still make up q."""
    return all(n - len(bad) >= q for bad in itertools.combinations(range(n), min(f, n)))


def _accepts(n: int, f: int, quorum: int, threshold: int) -> bool:
    try:
        check_thresholds(n, f, quorum, threshold)
        return True
    except VerificationError as e:
        assert f"n={n}, f={f}" in str(e)
        return False


@given(n=st.integers(1, 12), f=st.integers(0, 4), data=st.data())
def test_check_thresholds_accepts_exactly_safe_and_live(n: int, f: int, data: st.DataObject) -> None:
    q = data.draw(st.integers(0, n))
    good = 2 * q - n > f and q <= n - f
    assert _accepts(n, f, q, q) == good
    smallest_safe = (n + f) // 2 + 1
    if smallest_safe <= n - f:  # some value works: pair q with it, in either role
        assert _accepts(n, f, q, smallest_safe) == good
        assert _accepts(n, f, smallest_safe, q) == good
    if not good:
        with pytest.raises(VerificationError, match=rf"^quorum {q} is (unsafe|not live) for n={n}, f={f}: "):
            check_thresholds(n, f, q, q)


@pytest.mark.parametrize("n", range(1, 9))
def test_accepted_thresholds_match_brute_force(n: int) -> None:
    for f, q in itertools.product(range(5), range(n + 1)):
        assert _accepts(n, f, q, q) == (_safe_by_brute_force(n, f, q) and _live_by_brute_force(n, f, q)), (n, f, q)


@pytest.mark.parametrize(("n", "allowed"), [(4, [3]), (5, [4]), (6, [4, 5]), (7, [5, 6])])
def test_spec_table_f1(n: int, allowed: list[int]) -> None:
    assert [q for q in range(n + 1) if _accepts(n, 1, q, q)] == allowed


# --------------------------------------------------------------------------- chain and equivocation (spec 5.5)


def test_equivocation_in_add(genesis: SignedRoot, v2: SignedRoot) -> None:
    fork = sign(next_root(genesis, issued_at=T0 + 50), ("CN", "KH", "LA", "MM"))
    chain = GovernanceChain(genesis)
    chain.add(v2)
    with pytest.raises(EquivocationError) as info:
        chain.add(fork)
    assert info.value.evidence == (v2, fork)
    assert chain.current == v2.root  # nothing changed
    # An invalid second root is an error, not evidence.
    with pytest.raises(AuthorizationError):
        chain.add(sign(fork.root, ("CN", "KH")))
    with pytest.raises(VerificationError, match="is not this chain's"):
        chain.add(sign(make_root(issued_at=T0 + 7), GMS))


def _history(genesis: SignedRoot) -> list[SignedRoot]:
    out = [genesis]
    for _ in range(3):
        out.append(sign(next_root(out[-1]), ("CN", "LA", "MM", "TH", "VN")))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_walk_in_any_order(genesis: SignedRoot, data: st.DataObject) -> None:
    history = _history(genesis)
    partial_v2 = replace(history[2], signatures=history[2].signatures[:2])
    candidates = [*history, partial_v2, history[3]]
    chain = walk(genesis, data.draw(st.permutations(candidates)), genesis.root_hash, now=T0)
    assert chain.roots == tuple(s.root for s in history)
    assert set(chain.signed(3).signatures) == set(history[2].signatures)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_walk_equivocation_in_any_order(genesis: SignedRoot, data: st.DataObject) -> None:
    history = _history(genesis)
    fork = sign(next_root(history[1], issued_at=T0 + 77), ("CN", "KH", "LA", "MM"))
    junk = sign(next_root(history[1], issued_at=T0 + 78), ("CN",))  # fails on its own
    candidates = data.draw(st.permutations([*history[1:], fork, junk]))
    with pytest.raises(EquivocationError) as info:
        walk(genesis, candidates, genesis.root_hash)
    assert {s.root_hash for s in info.value.evidence} == {history[2].root_hash, fork.root_hash}
    assert all(isinstance(s, SignedRoot) for s in info.value.evidence)


def test_walk_reports_a_bad_candidate(genesis: SignedRoot, v2: SignedRoot) -> None:
    junk = sign(next_root(genesis, issued_at=T0 + 5), ("CN", "KH"))
    with pytest.raises(AuthorizationError, match="from 2 of the 6"):
        walk(genesis, [junk, v2], genesis.root_hash)
    with pytest.raises(VerificationError, match="no root version 3"):
        walk(genesis, [v2], genesis.root_hash).root_at(3)


# --------------------------------------------------------------------------- expiry (spec 5.4.3)


def test_expired_root_refused_only_as_head() -> None:
    g = sign(make_root(expires=T0 + 100), GMS)
    assert verify_genesis(g, now=T0 + 99) and verify_genesis(g)
    with pytest.raises(VerificationError, match=r"root version 1 expired at 1767225700 \(now 1767225700\)"):
        verify_genesis(g, now=T0 + 100)
    with pytest.raises(VerificationError, match="expired"):
        walk(g, [], g.root_hash, now=T0 + 100)
    v2 = sign(next_root(g, expires=T0 + 1000), GMS)
    chain = walk(g, [v2], g.root_hash, now=T0 + 500)  # the expired genesis is no longer the head
    assert chain.current_at(T0 + 500) == v2.root
    with pytest.raises(VerificationError, match="root version 2 expired"):
        chain.current_at(T0 + 1000)
    with pytest.raises(VerificationError, match="expired"):
        verify_successor(g.root, v2, now=T0 + 2000)


# --------------------------------------------------------------------------- accessors


def test_member_lookups(genesis: SignedRoot) -> None:
    root = genesis.root
    kid = key_id(pub(ADMIN["TH"]))
    assert root.admin_key_owner(kid) == "TH" and root.admin_key(kid) == pub(ADMIN["TH"])
    assert root.admin_key_owner(key_id(pub(STRANGER))) is None and root.admin_key_owner(b"x") is None
    assert root.node_key_of("VN") == pub(NODE["VN"])
    assert root.member_ids == GMS
    with pytest.raises(AuthorizationError, match="'MY' is not a member of gms root version 1"):
        root.node_key_of("MY")
    with pytest.raises(VerificationError, match="no root version 0"):
        GovernanceChain(genesis).signed(0)


# --------------------------------------------------------------------------- encoding (spec 5.1, 5.2.3)

_URL = st.builds(lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
                 st.sampled_from(["http", "https"]), st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6}){0,2}",
                                                                    fullmatch=True),
                 st.sampled_from(["", ":8080", ":443"]), st.sampled_from(["", "/", "/ledger", "/api/v1/"]))
_NAME = st.text(min_size=1, max_size=40).filter(str.isprintable)


@st.composite
def roots(draw: st.DrawFn) -> Root:
    ids = sorted(draw(st.lists(st.text(string.ascii_uppercase, min_size=2, max_size=2), min_size=1, max_size=8,
                               unique=True)))
    counts = [draw(st.integers(1, 3)) for _ in ids]
    total = sum(counts) + len(ids)
    keys = iter(draw(st.lists(st.binary(min_size=32, max_size=32), min_size=total, max_size=total, unique=True)))
    members = tuple(Member(mid, draw(_NAME), tuple(next(keys) for _ in range(c)), next(keys),
                           tuple(draw(st.lists(_URL, min_size=1, max_size=4, unique=True))))
                    for mid, c in zip(ids, counts))
    version = draw(st.integers(1, 2**64 - 1))
    issued = draw(st.integers(0, 2**63))
    uint = st.integers(0, 2**64 - 1)
    return Root(draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)), version,
                None if version == 1 else draw(st.binary(min_size=32, max_size=32)), members, draw(uint),
                draw(uint), draw(uint), issued, draw(st.none() | st.integers(issued + 1, 2**64 - 1)))


@settings(max_examples=150, deadline=None)
@given(roots())
def test_root_round_trip(root: Root) -> None:
    data = root.to_cbor()
    back = Root.from_cbor(data)
    assert back == root and back.to_cbor() == data
    assert root_hash(data) == back.root_hash
    assert isinstance(cbor.decode(data), dict) and all(isinstance(k, str) for k in cbor.decode(data))


def test_signed_root_round_trip(genesis: SignedRoot) -> None:
    data = genesis.to_cbor()
    back = SignedRoot.from_cbor(data)
    assert back == genesis and back.to_cbor() == data
    assert verify_genesis(back, genesis.root_hash) == genesis.root
    assert cbor.decode(data) == {"root": genesis.payload, "signatures": list(genesis.signatures)}


def _root_obj() -> dict[str, Any]:
    return cbor.decode(make_root(2, b"\x11" * 32).to_cbor())


def _case(change: Callable[[dict[str, Any]], Any]) -> bytes:
    obj = _root_obj()
    result = change(obj)
    return result if isinstance(result, bytes) else cbor.encode(obj)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parts, last = path.split(".")
        target: Any = obj
        for p in parts:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return change


_VN = _root_obj()["members"][5]
MALFORMED_ROOTS = {
    "empty": lambda o: b"",
    "not-cbor": lambda o: b"\xff\x00",
    "not-a-map": lambda o: cbor.encode([1, 2]),
    "trailing-garbage": lambda o: cbor.encode(o) + b"\x00",
    "keys-unsorted": lambda o: cbor2.dumps(dict(sorted(o.items(), reverse=True))),
    "float-quorum": lambda o: cbor2.dumps({**o, "quorum": 4.0}, canonical=True),
    "missing-field": _set("faulty", KeyError),
    "extra-field": _set("comment", "hi"),
    "integer-key": lambda o: cbor.encode({**o, 7: 1}),
    "version-text": _set("version", "2"),
    "version-zero": _set("version", 0),
    "version-negative": _set("version", -2),
    "quorum-bool": _set("quorum", True),
    "quorum-null": _set("quorum", None),
    "issued-at-bytes": _set("issued_at", b"\x01"),
    "expires-before-issued": _set("expires", T0),
    "previous-null-after-genesis": _set("previous", None),
    "previous-at-genesis": lambda o: cbor.encode({**o, "version": 1}),
    "previous-short": _set("previous", b"\x11" * 31),
    "previous-text": _set("previous", "11" * 32),
    "network-empty": _set("network", ""),
    "network-slash": _set("network", "gms/x"),
    "network-newline": _set("network", "gms\n"),
    "members-empty": _set("members", []),
    "members-map": _set("members", {}),
    "members-unsorted": lambda o: cbor.encode({**o, "members": o["members"][::-1]}),
    "member-duplicate": lambda o: cbor.encode({**o, "members": o["members"][:5] + [_VN, _VN]}),
    "member-not-map": _set("members.0", "CN"),
    "member-id-lowercase": _set("members.5.id", "vn"),
    "member-id-three-letters": _set("members.5.id", "VNM"),
    "member-id-integer": _set("members.5.id", 704),
    "member-missing-field": _set("members.0.node_key", KeyError),
    "member-extra-field": _set("members.0.email", "a@b"),
    "member-name-empty": _set("members.0.name", ""),
    "member-name-control": _set("members.0.name", "China\x00"),
    "admin-keys-empty": _set("members.0.admin_keys", []),
    "admin-keys-not-array": _set("members.0.admin_keys", b"\x01" * 32),
    "admin-key-short": _set("members.0.admin_keys", [b"\x01" * 31]),
    "admin-key-text": _set("members.0.admin_keys", ["x" * 32]),
    "admin-key-twice": lambda o: _set("members.0.admin_keys", o["members"][0]["admin_keys"] * 2)(o),
    "admin-key-shared": lambda o: _set("members.0.admin_keys", o["members"][1]["admin_keys"])(o),
    "admin-keys-too-many": _set("members.0.admin_keys", [bytes([i]) * 32 for i in range(9)]),
    "node-key-is-own-admin": lambda o: _set("members.0.node_key", o["members"][0]["admin_keys"][0])(o),
    "node-key-is-other-admin": lambda o: _set("members.0.node_key", o["members"][1]["admin_keys"][0])(o),
    "node-key-shared": lambda o: _set("members.0.node_key", o["members"][1]["node_key"])(o),
    "node-key-long": _set("members.0.node_key", b"\x01" * 33),
    "endpoints-empty": _set("members.0.endpoints", []),
    "endpoints-twice": _set("members.0.endpoints", ["https://a.example", "https://a.example"]),
    "endpoint-ftp": _set("members.0.endpoints", ["ftp://a.example"]),
    "endpoint-no-scheme": _set("members.0.endpoints", ["a.example"]),
    "endpoint-upper-scheme": _set("members.0.endpoints", ["HTTPS://a.example"]),
    "endpoint-no-host": _set("members.0.endpoints", ["https://"]),
    "endpoint-bad-port": _set("members.0.endpoints", ["https://a.example:99999"]),
    "endpoint-bad-ipv6": _set("members.0.endpoints", ["https://[::1"]),
    "endpoint-query": _set("members.0.endpoints", ["https://a.example/?x=1"]),
    "endpoint-userinfo": _set("members.0.endpoints", ["https://user@a.example"]),
    "endpoint-space": _set("members.0.endpoints", ["https://a.example/a b"]),
    "endpoint-non-ascii": _set("members.0.endpoints", ["https://bộ.example"]),
    "endpoint-bytes": _set("members.0.endpoints", [b"https://a.example"]),
}


@pytest.mark.parametrize("change", MALFORMED_ROOTS.values(), ids=MALFORMED_ROOTS.keys())
def test_malformed_root_raises_decode_error(change: Callable[[dict[str, Any]], Any]) -> None:
    data = _case(change)
    with pytest.raises(DecodeError) as info:
        Root.from_cbor(data)
    assert str(info.value)
    with pytest.raises(DecodeError):
        SignedRoot.from_cbor(cbor.encode({"root": data, "signatures": []}))


def test_valid_base_case_decodes() -> None:
    assert Root.from_cbor(_case(lambda o: None)).version == 2


def _sig(genesis: SignedRoot, **kw: Any) -> bytes:
    return sign1(genesis.payload, ADMIN["VN"], **{"kid": key_id(pub(ADMIN["VN"])), "content_type": CONTENT_TYPE,
                                                  "detached": True, **kw})


MALFORMED_SIGNED = {
    "not-a-map": lambda g: cbor.encode([g.payload, []]),
    "missing-signatures": lambda g: cbor.encode({"root": g.payload}),
    "extra-field": lambda g: cbor.encode({"root": g.payload, "signatures": [], "x": 1}),
    "root-not-bytes": lambda g: cbor.encode({"root": cbor.decode(g.payload), "signatures": []}),
    "signatures-not-array": lambda g: cbor.encode({"root": g.payload, "signatures": g.signatures[0]}),
    "signature-not-bytes": lambda g: cbor.encode({"root": g.payload, "signatures": [1]}),
    "signature-garbage": lambda g: cbor.encode({"root": g.payload, "signatures": [b"\x00\x01"]}),
    "signature-attached": lambda g: cbor.encode({"root": g.payload, "signatures": [_sig(g, detached=False)]}),
    "signature-no-kid": lambda g: cbor.encode({"root": g.payload, "signatures": [_sig(g, kid=None)]}),
    "signature-short-kid": lambda g: cbor.encode({"root": g.payload, "signatures": [_sig(g, kid=b"VN")]}),
    "signature-kid-unprotected": lambda g: cbor.encode({"root": g.payload, "signatures": [
        _sig(g, kid=None, unprotected={4: key_id(pub(ADMIN["VN"]))})]}),
    "signature-content-type": lambda g: cbor.encode({"root": g.payload, "signatures": [
        _sig(g, content_type="application/mekong-entry+cbor")]}),
    "signature-no-content-type": lambda g: cbor.encode({"root": g.payload, "signatures": [
        _sig(g, content_type=None)]}),
    "trailing-garbage": lambda g: g.to_cbor() + b"\x00",
}


@pytest.mark.parametrize("make", MALFORMED_SIGNED.values(), ids=MALFORMED_SIGNED.keys())
def test_malformed_signed_root_raises_decode_error(genesis: SignedRoot, make: Callable[[SignedRoot], bytes]) -> None:
    with pytest.raises(DecodeError):
        SignedRoot.from_cbor(make(genesis))


def test_constructors_validate(genesis: SignedRoot) -> None:
    vn = member("VN")
    with pytest.raises(DecodeError, match="admin_keys must be a tuple"):
        Member("VN", "Viet Nam", [pub(ADMIN["VN"])], pub(NODE["VN"]), vn.endpoints)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="members must be a tuple"):
        make_root(members=list(genesis.root.members))
    with pytest.raises(DecodeError, match="payload is not the encoding of root"):
        SignedRoot(genesis.payload + b"\x00", genesis.root, ())
    with pytest.raises(DecodeError, match="not a root|root:"):
        sign_root(b"\xa0", ADMIN["VN"])
    with pytest.raises(DecodeError, match="signature 0"):
        SignedRoot(genesis.payload, genesis.root, (b"junk",))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bytes_only_raise_decode_error(genesis: SignedRoot, data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from([genesis.payload, genesis.to_cbor()])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    for candidate in (bytes(blob), bytes(blob[:cut])):
        for decode in (Root.from_cbor, SignedRoot.from_cbor):
            try:
                decode(candidate)
            except DecodeError:
                pass
        try:  # a decoded root whose signatures were mutated fails verification with a MekongError only
            verify_genesis(SignedRoot.from_cbor(candidate))
        except MekongError:
            pass


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_decode_error(blob: bytes) -> None:
    for decode in (Root.from_cbor, SignedRoot.from_cbor):
        with pytest.raises(DecodeError):
            decode(blob)


def test_walk_prefix_keeps_the_valid_chain_and_says_why_the_rest_is_left_out(genesis: SignedRoot,
                                                                             v2: SignedRoot) -> None:
    draft = sign(next_root(v2), ["VN"])  # version 3 with one signature: below the threshold
    chain, refused = walk_prefix(genesis, [draft, v2], genesis.root_hash)
    assert chain.current.version == 2
    assert [(s.root.version, type(e)) for s, e in refused] == [(3, AuthorizationError)]
    with pytest.raises(AuthorizationError):
        walk(genesis, [draft, v2], genesis.root_hash)
    assert walk(genesis, [v2], genesis.root_hash).current.version == 2
