"""Governance roots: the TUF-style chain of signed root documents (spec 5).

A root lists a network's members and its ``quorum``, ``threshold`` and ``faulty``. Genesis is signed by
every founding member; each later version names its predecessor's hash and is signed by ``threshold`` of
the predecessor's members and by every member it adds. :func:`walk` follows the chain from a pinned genesis
and reports two valid roots of one version as an :class:`~ledger.errors.EquivocationError`.

This module only decides which roots are valid: fetching, storing and serving roots, acting on an expired
head, and counting checkpoint cosignatures belong to the node, storage and checkpoint code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import nacl.signing

from ledger import cbor
from ledger.cose import HDR_KID, UnverifiedSign1, sign1
from ledger.errors import AuthorizationError, DecodeError, EquivocationError, VerificationError
from ledger.keys import KEY_ID_SIZE, check_public_key, key_id, public_key_of

__all__ = ["CONTENT_TYPE", "GovernanceChain", "Member", "Root", "SignedRoot", "check_thresholds", "root_hash",
           "sign_root", "verify_genesis", "verify_successor", "walk"]

#: COSE content type of every root signature (spec 5.2.1).
CONTENT_TYPE = "application/mekong-root+cbor"
# Bounds of spec 5.1.3.
MAX_MEMBERS, MAX_ADMIN_KEYS, MAX_ENDPOINTS, MAX_SIGNATURES = 64, 8, 4, 512
MAX_NAME_CHARS, MAX_URL_CHARS = 128, 256
ROOT_LIMITS = cbor.CborLimits(max_size=1 << 18, max_depth=6, max_items=8192)
SIGNED_ROOT_LIMITS = cbor.CborLimits(max_size=1 << 20, max_depth=4, max_items=MAX_SIGNATURES + 8)

_MEMBER_ID = re.compile(r"[A-Z]{2}")
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ROOT_FIELDS = frozenset({"network", "version", "previous", "members", "quorum", "threshold", "faulty",
                          "issued_at", "expires"})
_MEMBER_FIELDS = frozenset({"id", "name", "admin_keys", "node_key", "endpoints"})


def _uint(value: object, what: str) -> None:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise DecodeError(f"{what} must be an unsigned integer below 2**64, got {value!r:.40}")


def _text(value: object, what: str, max_chars: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_chars or not value.isprintable():
        raise DecodeError(f"{what} must be 1 to {max_chars} printable characters, got {value!r:.60}")
    return value


def _array(value: object, what: str, low: int, high: int) -> None:
    if not isinstance(value, tuple) or not low <= len(value) <= high:
        shown = f"{len(value)} items" if isinstance(value, tuple) else type(value).__name__
        raise DecodeError(f"{what} must be a tuple of {low} to {high} items, got {shown}")


def _key(value: object, what: str) -> bytes:
    try:
        return check_public_key(value)
    except DecodeError as e:
        raise DecodeError(f"{what}: {e}") from e


def _url(value: object, what: str) -> None:
    url = _text(value, what, MAX_URL_CHARS)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in range
    except ValueError as e:
        raise DecodeError(f"{what} {url!r} is not a URL: {e}") from e
    if (not url.isascii() or not url.startswith(("http://", "https://")) or any(c in url for c in " ?#@")
            or not parts.hostname):
        raise DecodeError(f"{what} {url!r} must be an ASCII http:// or https:// URL naming a host, without"
                          " spaces, user info, query or fragment")


def _fields(obj: object, names: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError(f"{where}: expected a map, got {type(obj).__name__}")
    if missing := sorted(names - set(obj)):
        raise DecodeError(f"{where}: missing fields {', '.join(missing)}")
    if extra := sorted(repr(k) for k in obj if k not in names):
        raise DecodeError(f"{where}: unknown fields {', '.join(extra)}")
    return obj


def _list(value: object, what: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise DecodeError(f"{what} must be an array, got {type(value).__name__}")
    return tuple(value)


def root_hash(payload: bytes) -> bytes:
    """The hash that names a root: SHA-256 of its payload bytes (spec 5.1.4)."""
    return hashlib.sha256(payload).digest()


@dataclass(frozen=True, slots=True)
class Member:
    """One member as a root lists it (spec 5.1.2); the constructor raises DecodeError for a bad field.

    Attributes:
        id: upper-case ISO 3166-1 alpha-2 code, such as ``"VN"``.
        name: human-readable name of the member.
        admin_keys: 1 to 8 distinct Ed25519 public keys (entries, roots).
        node_key: the node's Ed25519 public key (checkpoints, cosignatures).
        endpoints: 1 to 4 distinct http(s) base URLs of the member's node.
    """

    id: str
    name: str
    admin_keys: tuple[bytes, ...]
    node_key: bytes
    endpoints: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _MEMBER_ID.fullmatch(self.id):
            raise DecodeError(f"member id must be an upper-case ISO 3166-1 alpha-2 code, got {self.id!r:.20}")
        where = f"member {self.id}"
        _text(self.name, f"{where}: name", MAX_NAME_CHARS)
        _array(self.admin_keys, f"{where}: admin_keys", 1, MAX_ADMIN_KEYS)
        if len({_key(k, f"{where}: admin key") for k in self.admin_keys}) != len(self.admin_keys):
            raise DecodeError(f"{where}: admin_keys lists one key twice")
        if _key(self.node_key, f"{where}: node_key") in self.admin_keys:
            raise DecodeError(f"{where}: node_key must not also be an admin key")
        _array(self.endpoints, f"{where}: endpoints", 1, MAX_ENDPOINTS)
        for url in self.endpoints:
            _url(url, f"{where}: endpoint")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise DecodeError(f"{where}: endpoints lists one URL twice")

    def _to_obj(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "admin_keys": list(self.admin_keys),
                "node_key": self.node_key, "endpoints": list(self.endpoints)}

    @classmethod
    def _from_obj(cls, obj: object, where: str) -> Member:
        m = _fields(obj, _MEMBER_FIELDS, where)
        return cls(m["id"], m["name"], _list(m["admin_keys"], f"{where}: admin_keys"), m["node_key"],
                   _list(m["endpoints"], f"{where}: endpoints"))


@dataclass(frozen=True, slots=True)
class Root:
    """A governance root document (spec 5.1.1); the constructor raises DecodeError for a bad field.

    Attributes:
        network: network id, such as ``"gms"``.
        version: 1 for genesis, then consecutive.
        previous: :func:`root_hash` of version - 1; None exactly for genesis.
        members: sorted by id, ids unique; admin and node keys all distinct.
        quorum: cosignatures that make a checkpoint final (spec 5.3).
        threshold: member signatures needed on the next root (spec 5.3).
        faulty: ``f``, how many members may be faulty (spec 5.3).
        issued_at: Unix seconds when the root was written.
        expires: Unix seconds from which it may not be the head (spec 5.4.3), or None.

    Thresholds are a verification rule (spec 5.3): a Root that breaks them can be built, not verified.
    """

    network: str
    version: int
    previous: bytes | None
    members: tuple[Member, ...]
    quorum: int
    threshold: int
    faulty: int
    issued_at: int
    expires: int | None = None
    _kids: dict[bytes, tuple[Member, bytes]] = field(init=False, repr=False, compare=False)
    _payload: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not _NETWORK.fullmatch(self.network):
            raise DecodeError(f"root: network must match {_NETWORK.pattern}, got {self.network!r:.80}")
        _uint(self.version, "root: version")
        if self.version == 0 or (self.version == 1) != (self.previous is None):
            raise DecodeError(f"root: version must be at least 1, and previous null exactly for version 1;"
                              f" got version {self.version} with previous {type(self.previous).__name__}")
        if not (self.previous is None or isinstance(self.previous, bytes) and len(self.previous) == 32):
            raise DecodeError(f"root: previous must be the 32-byte hash of version {self.version - 1}")
        _array(self.members, "root: members", 1, MAX_MEMBERS)
        if not all(isinstance(m, Member) for m in self.members):
            raise DecodeError("root: members must be Member objects")
        if (ids := [m.id for m in self.members]) != sorted(set(ids)):
            raise DecodeError(f"root: member ids must be unique and sorted, got {', '.join(ids)}")
        kids: dict[bytes, tuple[Member, bytes]] = {}
        for m in self.members:
            for key in m.admin_keys:
                if (kid := key_id(key)) in kids:
                    raise DecodeError(f"root: admin key {kid.hex()} is listed by both {kids[kid][0].id} and {m.id}")
                kids[kid] = (m, key)
        node_keys = [m.node_key for m in self.members]
        admin_keys = {key for _, key in kids.values()}
        for m in self.members:
            if node_keys.count(m.node_key) > 1 or m.node_key in admin_keys:
                raise DecodeError(f"root: node key of {m.id} is also another node or admin key")
        for name in ("quorum", "threshold", "faulty", "issued_at"):
            _uint(getattr(self, name), f"root: {name}")
        if self.expires is not None:
            _uint(self.expires, "root: expires")
            if self.expires <= self.issued_at:
                raise DecodeError(f"root: expires ({self.expires}) must be after issued_at ({self.issued_at})")
        object.__setattr__(self, "_kids", kids)
        object.__setattr__(self, "_payload", cbor.encode({
            "network": self.network, "version": self.version, "previous": self.previous,
            "members": [m._to_obj() for m in self.members], "quorum": self.quorum, "threshold": self.threshold,
            "faulty": self.faulty, "issued_at": self.issued_at, "expires": self.expires}))

    def to_cbor(self) -> bytes:
        """The deterministic CBOR payload (spec 5.1.1)."""
        return self._payload

    @classmethod
    def from_cbor(cls, data: bytes) -> Root:
        """Decode a root payload from untrusted bytes (spec 5.1).

        Raises:
            DecodeError: not deterministic CBOR, or not a root: wrong types, missing or unknown fields, bad values.
        """
        m = _fields(cbor.decode(data, ROOT_LIMITS), _ROOT_FIELDS, "root")
        members = _list(m["members"], "root: members")
        root = cls(m["network"], m["version"], m["previous"],
                   tuple(Member._from_obj(x, f"root: member {i}") for i, x in enumerate(members)),
                   m["quorum"], m["threshold"], m["faulty"], m["issued_at"], m["expires"])
        if root._payload != bytes(data):  # a guard: the strict decode already implies it
            raise DecodeError("root: payload is not in its canonical encoding")
        return root

    @property
    def root_hash(self) -> bytes:
        """:func:`root_hash` of :meth:`to_cbor` (spec 5.1.4)."""
        return root_hash(self._payload)

    @property
    def member_ids(self) -> tuple[str, ...]:
        """The member ids, sorted."""
        return tuple(m.id for m in self.members)

    def member(self, member_id: str) -> Member:
        """The member with id ``member_id``; raises AuthorizationError when this root has none."""
        for m in self.members:
            if m.id == member_id:
                return m
        raise AuthorizationError(f"{member_id!r} is not a member of {self.network} root version {self.version}")

    def node_key_of(self, member_id: str) -> bytes:
        """The node key of ``member_id``; raises AuthorizationError when this root has no such member."""
        return self.member(member_id).node_key

    def admin_key_owner(self, kid: bytes) -> str | None:
        """The id of the member listing an admin key whose key id is ``kid``, or None."""
        return found[0].id if (found := self._kids.get(kid)) else None

    def admin_key(self, kid: bytes) -> bytes | None:
        """The admin public key whose key id is ``kid``, or None."""
        return found[1] if (found := self._kids.get(kid)) else None


def _decode_signature(data: object, index: int) -> UnverifiedSign1:
    # Spec 5.2.2: a detached COSE_Sign1 with kid and content type in the protected header.
    if not isinstance(data, bytes):
        raise DecodeError(f"root signature {index} must be a byte string, got {type(data).__name__}")
    try:
        sig = UnverifiedSign1.decode(data)
    except DecodeError as e:
        raise DecodeError(f"root signature {index}: {e}") from e
    kid = sig.headers.get(HDR_KID)
    if sig.payload is not None or not isinstance(kid, bytes) or len(kid) != KEY_ID_SIZE:
        raise DecodeError(f"root signature {index}: needs a nil (detached) payload and a {KEY_ID_SIZE}-byte"
                          " kid in the protected header")
    if sig.content_type != CONTENT_TYPE:
        raise DecodeError(f"root signature {index}: content type must be {CONTENT_TYPE}, got {sig.content_type!r}")
    return sig


@dataclass(frozen=True, slots=True)
class SignedRoot:
    """A root payload with members' detached COSE_Sign1 signatures, not yet verified (spec 5.2).

    The constructor raises DecodeError when ``payload`` does not encode ``root`` or a signature is malformed.

    Attributes:
        payload: the root payload bytes as received; the root hash is over these.
        root: the decoded payload.
        signatures: encoded COSE_Sign1 messages as received.
    """

    payload: bytes
    root: Root
    signatures: tuple[bytes, ...] = ()
    _sign1s: tuple[UnverifiedSign1, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.root, Root) or not isinstance(self.payload, bytes) or self.root.to_cbor() != self.payload:
            raise DecodeError("signed root: payload is not the encoding of root")
        _array(self.signatures, "signed root: signatures", 0, MAX_SIGNATURES)
        object.__setattr__(self, "_sign1s", tuple(_decode_signature(s, i) for i, s in enumerate(self.signatures)))

    @classmethod
    def create(cls, root: Root, signing_keys: Iterable[nacl.signing.SigningKey] = ()) -> SignedRoot:
        """Encode ``root`` and sign it with each of ``signing_keys`` (spec 5.2.1)."""
        return cls(root.to_cbor(), root, tuple(sign_root(root.to_cbor(), k) for k in signing_keys))

    def with_signature(self, signature: bytes) -> SignedRoot:
        """This signed root plus ``signature`` (itself if present); raises DecodeError if it is malformed."""
        return self if signature in self.signatures else replace(self, signatures=(*self.signatures, signature))

    @property
    def root_hash(self) -> bytes:
        """:func:`root_hash` of the payload bytes (spec 5.1.4)."""
        return root_hash(self.payload)

    def to_cbor(self) -> bytes:
        """The file and wire form ``{"root": payload, "signatures": [...]}`` (spec 5.2.3)."""
        return cbor.encode({"root": self.payload, "signatures": list(self.signatures)})

    @classmethod
    def from_cbor(cls, data: bytes) -> SignedRoot:
        """Decode the file and wire form from untrusted bytes (spec 5.2.3).

        Raises:
            DecodeError: malformed CBOR or structure, root payload or signature.
        """
        m = _fields(cbor.decode(data, SIGNED_ROOT_LIMITS), frozenset({"root", "signatures"}), "signed root")
        if not isinstance(m["root"], bytes):
            raise DecodeError(f"signed root: root must be a byte string, got {type(m['root']).__name__}")
        return cls(m["root"], Root.from_cbor(m["root"]), _list(m["signatures"], "signed root: signatures"))


def sign_root(payload: bytes, signing_key: nacl.signing.SigningKey) -> bytes:
    """One member's detached COSE_Sign1 over a root payload (spec 5.2.1).

    Raises:
        DecodeError: ``payload`` is not a root payload.
    """
    Root.from_cbor(payload)
    return sign1(payload, signing_key, kid=key_id(public_key_of(signing_key)), content_type=CONTENT_TYPE,
                 detached=True)


def check_thresholds(n: int, faulty: int, quorum: int, threshold: int) -> None:
    """Check ``quorum`` and ``threshold`` for ``n`` members, ``faulty`` of them faulty (spec 5.3).

    Each value ``x`` must be safe, ``2*x - n > faulty``, and live, ``x <= n - faulty``.

    Raises:
        VerificationError: a value breaks a rule; the message shows the numbers.
    """
    if n < 1 or faulty < 0:
        raise VerificationError(f"need n >= 1 members and f >= 0, got n={n}, f={faulty}")
    low, high = (n + faulty) // 2 + 1, n - faulty
    allowed = f"allowed: {low} to {high}" if low <= high else f"none allowed, as n < 3f+1 = {3 * faulty + 1}"
    for name, x in (("quorum", quorum), ("threshold", threshold)):
        if 2 * x - n <= faulty:
            raise VerificationError(f"{name} {x} is unsafe for n={n}, f={faulty}: 2*{x} - {n} = {2 * x - n}"
                                    f" is not > {faulty} ({allowed})")
        if x > n - faulty:
            raise VerificationError(f"{name} {x} is not live for n={n}, f={faulty}: {x} > n - f = {n - faulty}"
                                    f" ({allowed})")


def _check_root_thresholds(root: Root) -> None:
    try:
        check_thresholds(len(root.members), root.faulty, root.quorum, root.threshold)
    except VerificationError as e:
        raise VerificationError(f"{root.network} root version {root.version}: {e}") from e


def _check_expiry(root: Root, now: int | None) -> None:
    # Spec 5.4.3: only the current head must be unexpired, and only when the caller gives now.
    if now is not None and root.expires is not None and now >= root.expires:
        raise VerificationError(f"{root.network} root version {root.version} expired at {root.expires}"
                                f" (now {now}); a newer root is needed")


def _signers(signed: SignedRoot, *roots: Root) -> list[set[str]]:
    """Verify each signature whose kid one of ``roots`` lists; per root, the members who signed."""
    good: set[bytes] = set()
    for i, sig in enumerate(signed._sign1s):
        kid = sig.headers[HDR_KID]
        # A kid no root lists is ignored and counts for nobody; a listed one must verify.
        for owner, key in {(r._kids[kid][0].id, r._kids[kid][1]) for r in roots if kid in r._kids}:
            try:
                sig.verify(key, detached_payload=signed.payload)
            except VerificationError as e:
                raise VerificationError(f"{signed.root.network} root version {signed.root.version}: signature {i}"
                                        f" by admin key {kid.hex()} of {owner} does not verify") from e
            good.add(kid)
    return [{r._kids[kid][0].id for kid in good if kid in r._kids} for r in roots]


def verify_genesis(signed: SignedRoot, pinned_hash: bytes | None = None, now: int | None = None) -> Root:
    """Verify a genesis root (spec 5.4.1) and return it.

    ``pinned_hash`` is the trusted genesis hash (None: trust ``signed`` as given); pass ``now`` only when
    the root is to be the current head.

    Raises:
        VerificationError: not the pinned hash, not version 1, thresholds broken, a bad signature, or expired.
        AuthorizationError: a founding member did not sign.
    """
    root = signed.root
    # Spec 5.4.1 step 1: the payload hashes to the pinned hash.
    if pinned_hash is not None and signed.root_hash != pinned_hash:
        raise VerificationError(f"genesis hash {signed.root_hash.hex()} is not the pinned {pinned_hash.hex()}")
    # Spec 5.4.1 step 2: version 1 (and so previous is null, spec 5.1.1).
    if root.version != 1:
        raise VerificationError(f"a genesis root must be version 1, got version {root.version}")
    # Spec 5.4.1 step 3: quorum and threshold (spec 5.3).
    _check_root_thresholds(root)
    # Spec 5.4.1 step 4: every signature by an admin key the root lists verifies; others are ignored.
    (signers,) = _signers(signed, root)
    # Spec 5.4.1 step 5: every founding member signed.
    if missing := [m for m in root.member_ids if m not in signers]:
        raise AuthorizationError(f"{root.network} genesis lacks signatures from founding members"
                                 f" {', '.join(missing)}; all {len(root.members)} must sign")
    # Spec 5.4.1 step 6: expiry, for the head only (spec 5.4.3).
    _check_expiry(root, now)
    return root


def verify_successor(prev: Root, signed: SignedRoot, now: int | None = None) -> Root:
    """Verify the root of version n+1 against ``prev``, the verified version n (spec 5.4.2).

    Pass ``now`` only when the root is to be the current head.

    Raises:
        VerificationError: other network, version or previous hash, thresholds broken, a bad signature, expired.
        AuthorizationError: fewer than ``prev.threshold`` members of ``prev`` signed, or an added member did not.
    """
    root = signed.root
    # Spec 5.4.2 step 1: same network.
    if root.network != prev.network:
        raise VerificationError(f"root version {root.version} is for network {root.network}, not {prev.network}")
    # Spec 5.4.2 step 2: the next version.
    if root.version != prev.version + 1:
        raise VerificationError(f"root version {root.version} cannot follow version {prev.version}")
    # Spec 5.4.2 step 3: previous is the hash of version n's payload.
    if root.previous != prev.root_hash:
        raise VerificationError(f"root version {root.version} names previous {(root.previous or b'').hex()},"
                                f" but version {prev.version} hashes to {prev.root_hash.hex()}")
    # Spec 5.4.2 step 4: quorum and threshold of the new root (spec 5.3).
    _check_root_thresholds(root)
    # Spec 5.4.2 step 5: every signature by an admin key either root lists verifies; others are ignored.
    old, new = _signers(signed, prev, root)
    # Spec 5.4.2 step 6: at least prev.threshold distinct members of version n signed.
    if len(old) < prev.threshold:
        raise AuthorizationError(f"version {root.version} has signatures from {len(old)} of the {len(prev.members)}"
                                 f" members of version {prev.version} ({', '.join(sorted(old)) or 'none'});"
                                 f" threshold is {prev.threshold}")
    # Spec 5.4.2 step 7: every member that version n+1 adds signed, with a key version n+1 lists.
    if unsigned := [m for m in root.member_ids if m not in prev.member_ids and m not in new]:
        raise AuthorizationError(f"version {root.version} adds {', '.join(unsigned)} without their signature;"
                                 " every added member must sign")
    # Spec 5.4.2 step 8: expiry, for the head only (spec 5.4.3).
    _check_expiry(root, now)
    return root


class GovernanceChain:
    """A verified chain of roots from genesis to the current head (spec 5.5).

    The constructor raises what :func:`verify_genesis` raises for ``genesis`` and ``pinned_hash``.
    """

    __slots__ = ("_roots", "_signed")

    def __init__(self, genesis: SignedRoot, pinned_hash: bytes | None = None) -> None:
        self._roots = [verify_genesis(genesis, pinned_hash)]
        self._signed = [genesis]

    @classmethod
    def from_genesis(cls, signed: SignedRoot, pinned_hash: bytes | None = None) -> GovernanceChain:
        """The same as the constructor: raises what :func:`verify_genesis` raises."""
        return cls(signed, pinned_hash)

    @property
    def current(self) -> Root:
        """The head of the chain, expired or not."""
        return self._roots[-1]

    def current_at(self, now: int) -> Root:
        """The head of the chain; raises VerificationError if it has expired at ``now`` (spec 5.4.3)."""
        _check_expiry(self.current, now)
        return self.current

    @property
    def roots(self) -> tuple[Root, ...]:
        """Every verified root, version 1 first."""
        return tuple(self._roots)

    @property
    def members_ever(self) -> tuple[str, ...]:
        """The ids of every member any root of the chain lists, sorted: whose logs exist (spec 7.4.2)."""
        return tuple(sorted({m for r in self._roots for m in r.member_ids}))

    def departure(self, member: str) -> Root | None:
        """The root that removed ``member`` from the network: the first root, after one that listed it, that
        does not; None while the head lists it or no root ever did."""
        last = max((r.version for r in self._roots if member in r.member_ids), default=None)
        if last is None or last == self.current.version:
            return None
        return self._roots[last]  # version last + 1

    def signed(self, version: int) -> SignedRoot:
        """The signed root of ``version`` as added; raises VerificationError if the chain has none."""
        return self._signed[self._index(version)]

    def root_at(self, version: int) -> Root:
        """The verified root of ``version``; raises VerificationError if the chain has none."""
        return self._roots[self._index(version)]

    def _index(self, version: int) -> int:
        if type(version) is not int or not 1 <= version <= len(self._roots):
            raise VerificationError(f"no root version {version!r:.20} in this chain, which holds 1 to {len(self._roots)}")
        return version - 1

    def add(self, signed: SignedRoot) -> Root:
        """Verify ``signed`` and append it if it is the next version (spec 5.5).

        A root with the payload of one already held returns the held root.

        Raises:
            VerificationError: it does not verify, skips a version, or is another genesis.
            AuthorizationError: the wrong members, or too few, signed it.
            EquivocationError: a different valid root of a held version; ``evidence`` is (held, new).
        """
        v, head = signed.root.version, self.current.version
        if v > head + 1:
            raise VerificationError(f"root version {v} skips ahead: the chain is at version {head}")
        if v == head + 1:
            self._roots.append(verify_successor(self.current, signed))
            self._signed.append(signed)
            return self._roots[-1]
        held = self._signed[v - 1]
        if held.payload == signed.payload:
            return self._roots[v - 1]
        if v == 1:
            raise VerificationError(f"genesis {signed.root_hash.hex()} is not this chain's {held.root_hash.hex()}")
        verify_successor(self._roots[v - 2], signed)
        raise EquivocationError(f"two different valid roots for version {v}: {held.root_hash.hex()} and"
                                f" {signed.root_hash.hex()}", evidence=(held, signed))


def walk(genesis: SignedRoot, candidates: Iterable[SignedRoot], pinned_hash: bytes | None,
         now: int | None = None) -> GovernanceChain:
    """Build the chain from a pinned genesis and candidate roots in any order (spec 5.5).

    Copies of one payload are merged (the union of their signatures), then added by version and root hash,
    so the order given does not matter; within a version, equivocation is reported before a candidate that
    fails. When ``now`` is given, the resulting head must be unexpired.

    Raises:
        VerificationError: a candidate does not verify, a version is missing, or the head has expired.
        AuthorizationError: a candidate lacks the signatures it needs.
        EquivocationError: two different valid roots for one version; ``evidence`` holds both SignedRoots.
    """
    chain = GovernanceChain(genesis, pinned_hash)
    merged: dict[bytes, SignedRoot] = {}
    for c in candidates:
        held = merged.get(c.root_hash)
        merged[c.root_hash] = c if held is None else replace(
            held, signatures=tuple(sorted(set(held.signatures) | set(c.signatures))))
    ordered = sorted(merged.values(), key=lambda s: (s.root.version, s.root_hash))
    for v in sorted({s.root.version for s in ordered}):
        failure: VerificationError | None = None
        for c in (s for s in ordered if s.root.version == v):
            try:
                chain.add(c)
            except VerificationError as e:  # an EquivocationError is no VerificationError: it propagates
                failure = failure or e
        if failure is not None:
            raise failure
    if now is not None:
        chain.current_at(now)
    return chain
