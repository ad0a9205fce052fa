"""Governance root documents: members, roots, signed roots and their signatures (spec 5.1, 5.2).

A root lists a network's members (id, name, admin keys, node key, endpoints) and its ``quorum``,
``threshold``, ``faulty``, ``issued_at`` and ``expires``. This module decodes and encodes roots strictly,
names them by hash, and makes and decodes the members' detached COSE_Sign1 signatures. Whether a root is
valid (thresholds, who signed, the chain from the pinned genesis) is :mod:`ledger.governance`'s business.
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
from ledger.errors import AuthorizationError, DecodeError
from ledger.keys import KEY_ID_SIZE, check_public_key, key_id, public_key_of

__all__ = ["CONTENT_TYPE", "MAX_MEMBERS", "Member", "Root", "SignedRoot", "root_hash", "sign_root"]

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
