"""Entry bodies: one frozen dataclass per entry type, and the one type table.

Specified in specs/06-entries.md section 6.2. Each body is validated in
``__post_init__`` and converts to and from the CBOR map that sits under the
payload's ``"body"`` key (:meth:`to_map`, :meth:`from_map`). Optional fields
are always present in the map, as ``null`` when absent, so every body type
has one fixed set of keys.

Field checks here are about form (lengths, types, syntax of ids). Whether an
entry is allowed in a log given the registry state is for :mod:`ledger.rules`.
The envelope around a body is in :mod:`ledger.entries`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ledger.errors import DecodeError
from ledger.keys import DIGEST_SIZE, KEY_ID_SIZE, PUBLIC_KEY_SIZE

__all__ = [
    "CREDENTIAL_STATUSES",
    "ENTRY_TYPES",
    "HASH_ALGS",
    "ISSUER_STATUSES",
    "LOAS",
    "LOA_ORDER",
    "REVOCATION_REASONS",
    "WILDCARD",
    "Body",
    "CredentialAnchor",
    "CredentialStatus",
    "GovernanceAdopt",
    "IssuerKeyAdd",
    "IssuerKeyRevoke",
    "IssuerKeyRotate",
    "IssuerRegister",
    "IssuerUpdate",
    "MemberPolicy",
    "PolicyRule",
    "check_issuer_id",
    "check_member_id",
    "check_uint",
    "member_of",
]

#: Levels of assurance, weakest first (eIDAS article 8 names; spec 6.2).
LOAS = ("low", "substantial", "high")
#: Rank of each level of assurance, for "at least" comparisons.
LOA_ORDER = {name: rank for rank, name in enumerate(LOAS)}
ISSUER_STATUSES = ("active", "suspended")
REVOCATION_REASONS = ("superseded", "compromised", "ceased")
CREDENTIAL_STATUSES = ("active", "suspended", "revoked")
HASH_ALGS = ("sha-256",)
#: Stands for "any member" or "any document type" in a policy rule.
WILDCARD = "*"

MAX_TIME = (1 << 63) - 1
MAX_NAME = 256
MAX_REASON = 1024
MAX_JURISDICTION = 64
MAX_DOCUMENT_TYPES = 64
MAX_POLICY_RULES = 256
MAX_CREDENTIAL_ID = 64

_MEMBER_RE = re.compile(r"[A-Z]{2}\Z")
_ISSUER_RE = re.compile(r"[A-Z]{2}/[a-z0-9][a-z0-9._-]{0,62}\Z")
_DOCTYPE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")


# --------------------------------------------------------------------------- field checks


def check_uint(name: str, value: object) -> int:
    """Check an unsigned integer field (a time or a version) and return it.

    Raises:
        DecodeError: not an int (bools refused) or outside ``[0, 2**63)``.
    """
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise DecodeError(f"{name} must be an unsigned integer below 2**63, got {value!r}")
    return value


def check_member_id(name: str, value: object) -> str:
    """Check a member id (ISO 3166-1 alpha-2, upper case) and return it.

    Raises:
        DecodeError: not a string of two upper-case ASCII letters.
    """
    if not isinstance(value, str) or not _MEMBER_RE.match(value):
        raise DecodeError(f"{name} must be a member id such as 'VN', got {value!r}")
    return value


def check_issuer_id(value: object) -> str:
    """Check an issuer id ``"<member>/<name>"`` and return it (spec 6.2).

    Raises:
        DecodeError: not of the form ``VN/customs-coo``.
    """
    if not isinstance(value, str) or not _ISSUER_RE.match(value):
        raise DecodeError(f"issuer must be an id such as 'VN/customs-coo', got {value!r}")
    return value


def member_of(issuer_id: str) -> str:
    """The member id an issuer id is prefixed with (``"VN/customs"`` -> ``"VN"``)."""
    return issuer_id.partition("/")[0]


def _text(name: str, value: object, max_len: int, min_len: int = 1) -> str:
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise DecodeError(f"{name} must be text of {min_len} to {max_len} characters, got {value!r:.80}")
    return value


def _bytes(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise DecodeError(f"{name} must be {size} bytes, got {got}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise DecodeError(f"{name} must be one of {', '.join(choices)}, got {value!r:.80}")
    return value


def _credential_id(value: object) -> bytes:
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_CREDENTIAL_ID:
        raise DecodeError(f"credential_id must be 1 to {MAX_CREDENTIAL_ID} bytes")
    return value


def _document_types(value: object, wildcard: bool = False) -> tuple[str, ...]:
    if not isinstance(value, tuple) or not 1 <= len(value) <= MAX_DOCUMENT_TYPES:
        raise DecodeError(f"document_types must be a tuple of 1 to {MAX_DOCUMENT_TYPES} names")
    if wildcard and value == (WILDCARD,):
        return value
    for t in value:
        if not isinstance(t, str) or not _DOCTYPE_RE.match(t):
            raise DecodeError(f"document type {t!r:.80} is not a profile name such as 'certificate-of-origin'"
                              + (" (or '*' alone)" if wildcard else ""))
    if len(set(value)) != len(value):
        raise DecodeError("document_types must not repeat a name")
    return value


# --------------------------------------------------------------------------- bodies


class _Body:
    """Shared map conversion; subclasses are frozen slotted dataclasses."""

    __slots__ = ()
    #: The entry type name this body belongs to.
    TYPE: ClassVar[str]
    _KEYS: ClassVar[tuple[str, ...]]
    _KEYSET: ClassVar[frozenset[str]]
    _TUPLES: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        cls._KEYSET = frozenset(cls._KEYS)

    def to_map(self) -> dict[str, Any]:
        """The body as the CBOR map of its entry payload (spec 6.2)."""
        return {k: getattr(self, k) for k in self._KEYS}

    @classmethod
    def from_map(cls, m: object) -> Self:
        """Build a body from a decoded CBOR map, checking every field.

        Raises:
            DecodeError: not a map, missing or extra keys, or a malformed field.
        """
        if not isinstance(m, dict) or m.keys() != cls._KEYSET:
            raise DecodeError(f"{cls.TYPE}: body must be a map of exactly {', '.join(sorted(cls._KEYS))}")
        for name in cls._TUPLES:
            v = m[name]
            if type(v) is list:
                m = {**m, name: tuple(v)}
        try:
            return cls(**m)
        except DecodeError as e:
            raise DecodeError(f"{cls.TYPE}: {e}") from e


@dataclass(frozen=True, slots=True)
class IssuerRegister(_Body):
    """``issuer.register``: a member registers one of its issuers (spec 6.2.1)."""

    TYPE: ClassVar[str] = "issuer.register"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "name", "document_types", "loa", "jurisdiction")
    _TUPLES: ClassVar[tuple[str, ...]] = ("document_types",)

    issuer: str
    name: str
    document_types: tuple[str, ...]
    loa: str
    jurisdiction: str

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _text("name", self.name, MAX_NAME)
        _document_types(self.document_types)
        _choice("loa", self.loa, LOAS)
        _text("jurisdiction", self.jurisdiction, MAX_JURISDICTION)


@dataclass(frozen=True, slots=True)
class IssuerUpdate(_Body):
    """``issuer.update``: change accreditation, level of assurance or status (spec 6.2.2).

    Fields left as None keep their value; at least one must be given.
    """

    TYPE: ClassVar[str] = "issuer.update"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "document_types", "loa", "status", "reason")
    _TUPLES: ClassVar[tuple[str, ...]] = ("document_types",)

    issuer: str
    document_types: tuple[str, ...] | None = None
    loa: str | None = None
    status: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        if self.document_types is None and self.loa is None and self.status is None:
            raise DecodeError("issuer.update must change document_types, loa or status")
        if self.document_types is not None:
            _document_types(self.document_types)
        if self.loa is not None:
            _choice("loa", self.loa, LOAS)
        if self.status is not None:
            _choice("status", self.status, ISSUER_STATUSES)
        _text("reason", self.reason, MAX_REASON, 0)


@dataclass(frozen=True, slots=True)
class IssuerKeyAdd(_Body):
    """``issuer.key.add``: the member gives an issuer a signing key (spec 6.2.3).

    ``next_key_digest`` is the pre-rotation commitment,
    :func:`ledger.keys.next_key_digest` of the key that may replace this one.
    """

    TYPE: ClassVar[str] = "issuer.key.add"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "key", "valid_from", "valid_until", "next_key_digest")

    issuer: str
    key: bytes
    valid_from: int
    valid_until: int | None = None
    next_key_digest: bytes | None = None

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _bytes("key", self.key, PUBLIC_KEY_SIZE)
        check_uint("valid_from", self.valid_from)
        if self.valid_until is not None and check_uint("valid_until", self.valid_until) <= self.valid_from:
            raise DecodeError("valid_until must be later than valid_from")
        if self.next_key_digest is not None:
            _bytes("next_key_digest", self.next_key_digest, DIGEST_SIZE)


@dataclass(frozen=True, slots=True)
class IssuerKeyRotate(_Body):
    """``issuer.key.rotate``: reveal the committed next key; signed by it (spec 6.2.4).

    The new key is valid from the entry's author time; the old key is
    superseded at that time.
    """

    TYPE: ClassVar[str] = "issuer.key.rotate"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "old_kid", "key", "valid_until", "next_key_digest")

    issuer: str
    old_kid: bytes
    key: bytes
    valid_until: int | None = None
    next_key_digest: bytes | None = None

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _bytes("old_kid", self.old_kid, KEY_ID_SIZE)
        _bytes("key", self.key, PUBLIC_KEY_SIZE)
        if self.valid_until is not None:
            check_uint("valid_until", self.valid_until)
        if self.next_key_digest is not None:
            _bytes("next_key_digest", self.next_key_digest, DIGEST_SIZE)


@dataclass(frozen=True, slots=True)
class IssuerKeyRevoke(_Body):
    """``issuer.key.revoke``: stop trusting a key from ``effective`` on (spec 6.2.5)."""

    TYPE: ClassVar[str] = "issuer.key.revoke"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "kid", "reason", "effective")

    issuer: str
    kid: bytes
    reason: str
    effective: int

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _bytes("kid", self.kid, KEY_ID_SIZE)
        _choice("reason", self.reason, REVOCATION_REASONS)
        check_uint("effective", self.effective)


@dataclass(frozen=True, slots=True)
class CredentialAnchor(_Body):
    """``credential.anchor``: the hash of a credential or document (spec 6.2.6)."""

    TYPE: ClassVar[str] = "credential.anchor"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "digest", "hash_alg", "credential_id")

    issuer: str
    digest: bytes
    hash_alg: str = "sha-256"
    credential_id: bytes | None = None

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _choice("hash_alg", self.hash_alg, HASH_ALGS)
        _bytes("digest", self.digest, DIGEST_SIZE)
        if self.credential_id is not None:
            _credential_id(self.credential_id)


@dataclass(frozen=True, slots=True)
class CredentialStatus(_Body):
    """``credential.status``: revoke, suspend or reinstate a credential (spec 6.2.7)."""

    TYPE: ClassVar[str] = "credential.status"
    _KEYS: ClassVar[tuple[str, ...]] = ("issuer", "credential_id", "status", "reason")

    issuer: str
    credential_id: bytes
    status: str
    reason: str = ""

    def __post_init__(self) -> None:
        check_issuer_id(self.issuer)
        _credential_id(self.credential_id)
        _choice("status", self.status, CREDENTIAL_STATUSES)
        _text("reason", self.reason, MAX_REASON, 0)


@dataclass(frozen=True, slots=True)
class PolicyRule(_Body):
    """One recognition rule of a member policy (spec 6.2.8).

    Attributes:
        member: the member whose issuers are recognised, or ``"*"`` for all.
        document_types: the document types recognised, or ``("*",)`` for all.
        min_loa: the lowest level of assurance accepted.
    """

    TYPE: ClassVar[str] = "policy rule"
    _KEYS: ClassVar[tuple[str, ...]] = ("member", "document_types", "min_loa")
    _TUPLES: ClassVar[tuple[str, ...]] = ("document_types",)

    member: str
    document_types: tuple[str, ...]
    min_loa: str

    def __post_init__(self) -> None:
        if self.member != WILDCARD:
            check_member_id("policy rule member", self.member)
        _document_types(self.document_types, wildcard=True)
        _choice("min_loa", self.min_loa, LOAS)

    def covers(self, member: str, document_type: str, loa: str) -> bool:
        """Whether this rule accepts an issuer of ``member`` for a document type at a level."""
        return ((self.member == WILDCARD or self.member == member)
                and (self.document_types == (WILDCARD,) or document_type in self.document_types)
                and LOA_ORDER.get(loa, -1) >= LOA_ORDER[self.min_loa])


@dataclass(frozen=True, slots=True)
class MemberPolicy(_Body):
    """``member.policy``: which issuers the member recognises; replaces the last (spec 6.2.8)."""

    TYPE: ClassVar[str] = "member.policy"
    _KEYS: ClassVar[tuple[str, ...]] = ("rules",)

    rules: tuple[PolicyRule, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.rules, tuple) or len(self.rules) > MAX_POLICY_RULES:
            raise DecodeError(f"rules must be a tuple of at most {MAX_POLICY_RULES} policy rules")
        for r in self.rules:
            if not isinstance(r, PolicyRule):
                raise DecodeError("rules must hold PolicyRule values")

    def to_map(self) -> dict[str, Any]:
        """The body as the CBOR map of its entry payload (spec 6.2.8)."""
        return {"rules": [r.to_map() for r in self.rules]}

    @classmethod
    def from_map(cls, m: object) -> Self:
        """Build a policy from a decoded CBOR map, checking every rule.

        Raises:
            DecodeError: not a map of exactly ``rules``, or a malformed rule.
        """
        if not isinstance(m, dict) or m.keys() != {"rules"} or not isinstance(m["rules"], list):
            raise DecodeError("member.policy: body must be a map of exactly rules, an array")
        if len(m["rules"]) > MAX_POLICY_RULES:
            raise DecodeError(f"member.policy: more than {MAX_POLICY_RULES} rules")
        return cls(tuple(PolicyRule.from_map(r) for r in m["rules"]))


@dataclass(frozen=True, slots=True)
class GovernanceAdopt(_Body):
    """``governance.adopt``: the log's owner adopts a newer governance root (spec 6.2.9).

    Signed by the owner's node key in that root (spec 6.3.17). From this entry on, the log accepts only
    entries made under that root or a later one (spec 6.3.4), and its checkpoints name that root (4.3.5).
    """

    TYPE: ClassVar[str] = "governance.adopt"
    _KEYS: ClassVar[tuple[str, ...]] = ("version", "root_hash")

    version: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if check_uint("version", self.version) < 2:
            raise DecodeError("version must be at least 2: every log starts under the genesis root")
        _bytes("root_hash", self.root_hash, DIGEST_SIZE)


Body = (IssuerRegister | IssuerUpdate | IssuerKeyAdd | IssuerKeyRotate | IssuerKeyRevoke
        | CredentialAnchor | CredentialStatus | MemberPolicy | GovernanceAdopt)

#: The one table from entry type name to body class (spec 6.2).
ENTRY_TYPES: dict[str, type[Any]] = {
    "issuer.register": IssuerRegister,
    "issuer.update": IssuerUpdate,
    "issuer.key.add": IssuerKeyAdd,
    "issuer.key.rotate": IssuerKeyRotate,
    "issuer.key.revoke": IssuerKeyRevoke,
    "credential.anchor": CredentialAnchor,
    "credential.status": CredentialStatus,
    "member.policy": MemberPolicy,
    "governance.adopt": GovernanceAdopt,
}
