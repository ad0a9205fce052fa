"""Registry records: the answers registry queries give, and the live records behind them.

Specified in specs/06-entries.md section 6.4. The frozen ``*Record`` classes
are what :class:`ledger.registry.RegistryState` queries return: each is the
state of one thing as of a log position, with the indices of the entries it
rests on. The ``Live*`` classes are the registry's own mutable bookkeeping,
shared with :mod:`ledger.rules`; they only ever grow by appending, in entry
order, so an answer "as of" position ``p`` is read by ignoring what came from
entries at ``p`` or later.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ledger.bodies import PolicyRule

__all__ = [
    "KEY_STATUSES",
    "AnchorRecord",
    "CredentialEvent",
    "CredentialRecord",
    "IssuerRecord",
    "IssuerState",
    "KeyEvent",
    "KeyRecord",
    "KeyStatus",
    "LiveCredential",
    "LiveIssuer",
    "LiveKey",
    "PolicyRecord",
    "key_status",
]

#: What :func:`key_status` can answer (spec 6.4.3).
KEY_STATUSES = ("valid", "not-yet-valid", "expired", "revoked", "superseded")


# --------------------------------------------------------------------------- issuers


@dataclass(frozen=True, slots=True)
class IssuerState:
    """An issuer's accreditation and status as set by one entry (spec 6.4.1).

    Attributes:
        index: the entry that set it (``issuer.register`` or ``issuer.update``).
        time: that entry's author time, from which this state is in force.
        document_types: the document types the issuer is accredited for.
        loa: its level of assurance.
        status: ``"active"`` or ``"suspended"``.
        reason: the reason given by the entry ("" if none).
    """

    index: int
    time: int
    document_types: tuple[str, ...]
    loa: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """An issuer as of a log position (spec 6.4.1).

    Attributes:
        issuer: the issuer id, ``"<member>/<name>"``.
        member: the member whose log registers it.
        name: its name as registered.
        jurisdiction: its jurisdiction as registered.
        document_types: current accreditation (the last state's).
        loa: current level of assurance.
        status: current status.
        keys: key ids of the issuer's keys, in the order they were added.
        history: every state, oldest first.
        entries: indices of the entries the record rests on (registration,
            updates), ascending.
    """

    issuer: str
    member: str
    name: str
    jurisdiction: str
    document_types: tuple[str, ...]
    loa: str
    status: str
    keys: tuple[bytes, ...]
    history: tuple[IssuerState, ...]
    entries: tuple[int, ...]


class LiveIssuer:
    """The registry's mutable record of an issuer; states only grow (internal)."""

    __slots__ = ("issuer", "jurisdiction", "kids", "member", "name", "states")

    def __init__(self, issuer: str, member: str, name: str, jurisdiction: str, first: IssuerState) -> None:
        self.issuer = issuer
        self.member = member
        self.name = name
        self.jurisdiction = jurisdiction
        self.states = [first]
        self.kids: list[tuple[int, bytes]] = []  # (index of the adding entry, kid)

    @property
    def current(self) -> IssuerState:
        """The latest state, including entries not yet committed."""
        return self.states[-1]

    def record(self, limit: int) -> IssuerRecord | None:
        """The record from entries below ``limit``, or None if not yet registered."""
        states = tuple(s for s in self.states if s.index < limit)
        if not states:
            return None
        last = states[-1]
        return IssuerRecord(self.issuer, self.member, self.name, self.jurisdiction, last.document_types,
                            last.loa, last.status, tuple(k for i, k in self.kids if i < limit), states,
                            tuple(s.index for s in states))


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """One change of an issuer key's status (spec 6.4.2).

    Attributes:
        status: ``"added"``, ``"revoked"`` or ``"superseded"``.
        reason: for ``added``: ``"registered"`` (``issuer.key.add``) or
            ``"rotation"`` (``issuer.key.rotate``); for ``revoked``: the
            revocation reason; for ``superseded``: ``"rotation"``.
        effective: the time from which the event holds: ``valid_from`` for
            ``added``, the revocation's effective time, or the rotation
            entry's author time.
        index: the entry that made the change.
        successor: for ``superseded``, the key id of the new key.
    """

    status: str
    reason: str
    effective: int
    index: int
    successor: bytes | None = None


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What a key was at a given time (spec 6.4.3); unpacks as ``(status, reason, effective)``.

    Attributes:
        status: one of :data:`KEY_STATUSES`.
        reason: the revocation reason for ``revoked``, ``"rotation"`` for
            ``superseded``, else None.
        effective: when the status began: ``valid_from`` for ``valid``,
            ``valid_until`` for ``expired``, the revocation's effective time,
            the rotation time; None for ``not-yet-valid``.
        entries: the entries the answer rests on.
    """

    status: str
    reason: str | None
    effective: int | None
    entries: tuple[int, ...]

    def __iter__(self) -> Iterator[object]:
        return iter((self.status, self.reason, self.effective))


def key_status(valid_from: int, valid_until: int | None, added: int, events: tuple[KeyEvent, ...] | list[KeyEvent],
               time: int) -> KeyStatus:
    """Decide a key's status at ``time`` from its validity window and events (spec 6.4.3).

    A revocation for compromise in force at ``time`` wins over everything,
    then the earliest revocation or supersession in force, then the
    validity window.
    """
    in_force = [e for e in events if e.effective <= time]
    if in_force:
        compromised = [e for e in in_force if e.reason == "compromised"]
        ev = min(compromised or in_force, key=lambda e: (e.effective, e.index))
        return KeyStatus(ev.status, ev.reason, ev.effective, (added, ev.index))
    if time < valid_from:
        return KeyStatus("not-yet-valid", None, None, (added,))
    if valid_until is not None and time >= valid_until:
        return KeyStatus("expired", None, valid_until, (added,))
    return KeyStatus("valid", None, valid_from, (added,))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An issuer key as of a log position (spec 6.4.2).

    Attributes:
        kid: the ledger key id (:func:`ledger.keys.key_id`).
        key: the Ed25519 public key.
        issuer: the issuer it belongs to.
        member: the member whose log holds it.
        valid_from: start of the validity window (inclusive).
        valid_until: end of the window (exclusive), or None for open-ended.
        next_key_digest: the pre-rotation commitment, if any.
        history: ``added`` first, then revocations and supersession in entry order.
        superseded_by: the key id of the key that replaced it by rotation.
        entries: indices of the entries it rests on, ascending.
    """

    kid: bytes
    key: bytes
    issuer: str
    member: str
    valid_from: int
    valid_until: int | None
    next_key_digest: bytes | None
    history: tuple[KeyEvent, ...]
    superseded_by: bytes | None
    entries: tuple[int, ...]


class LiveKey:
    """The registry's mutable record of an issuer key; events only grow (internal)."""

    __slots__ = (
        "added",
        "events",
        "issuer",
        "key",
        "kid",
        "member",
        "next_key_digest",
        "valid_from",
        "valid_until",
    )

    def __init__(self, kid: bytes, key: bytes, issuer: str, member: str, valid_from: int,
                 valid_until: int | None, next_key_digest: bytes | None, added: KeyEvent) -> None:
        self.kid = kid
        self.key = key
        self.issuer = issuer
        self.member = member
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.next_key_digest = next_key_digest
        self.added = added
        self.events: list[KeyEvent] = []

    def unusable_at(self, time: int) -> str | None:
        """Why the key may not sign an entry at author time ``time``, or None if it may (spec 6.3.6)."""
        if time < self.valid_from:
            return f"not valid before {self.valid_from}"
        if self.valid_until is not None and time >= self.valid_until:
            return f"expired at {self.valid_until}"
        for ev in self.events:
            if ev.status == "superseded":
                return f"superseded by rotation in entry {ev.index}"
            if ev.effective <= time:
                return f"revoked ({ev.reason}) from {ev.effective} by entry {ev.index}"
        return None

    def superseded(self) -> KeyEvent | None:
        """The supersession event, if the key has been rotated out."""
        for ev in self.events:
            if ev.status == "superseded":
                return ev
        return None

    def record(self, limit: int) -> KeyRecord | None:
        """The record from entries below ``limit``, or None if not yet added."""
        if self.added.index >= limit:
            return None
        events = tuple(e for e in self.events if e.index < limit)
        successor = next((e.successor for e in events if e.status == "superseded"), None)
        return KeyRecord(self.kid, self.key, self.issuer, self.member, self.valid_from, self.valid_until,
                         self.next_key_digest, (self.added, *events), successor,
                         tuple(sorted({self.added.index, *(e.index for e in events)})))


# --------------------------------------------------------------------------- credentials, anchors, policy


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    """One anchor of a digest: where and when it was logged (spec 6.4.4).

    Attributes:
        log: the member id of the log holding the anchor.
        index: the anchor entry's position in that log.
        issuer: the issuer that anchored it.
        time: the anchor entry's author time (not a proof of existence; spec 6.5).
        digest: the SHA-256 digest anchored.
        credential_id: the credential id given with it, if any.
    """

    log: str
    index: int
    issuer: str
    time: int
    digest: bytes
    credential_id: bytes | None


@dataclass(frozen=True, slots=True)
class CredentialEvent:
    """One ``credential.status`` entry (spec 6.4.5).

    Attributes:
        status: ``"revoked"``, ``"suspended"`` or ``"active"``.
        reason: the reason given.
        time: the entry's author time, from which the status holds.
        index: the entry's position in the log.
    """

    status: str
    reason: str
    time: int
    index: int


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A credential of an issuer as of a log position (spec 6.4.5).

    Attributes:
        issuer: the issuer id.
        credential_id: the credential id (CWT ``cti``).
        status: the current status; ``"active"`` when no status entry exists.
        reason: the reason of the last status entry ("" if none).
        history: status entries, oldest first.
        anchors: anchors that named this credential id.
        entries: indices of the entries it rests on, ascending.
    """

    issuer: str
    credential_id: bytes
    status: str
    reason: str
    history: tuple[CredentialEvent, ...]
    anchors: tuple[AnchorRecord, ...]
    entries: tuple[int, ...]


class LiveCredential:
    """The registry's mutable record of a credential (internal)."""

    __slots__ = ("anchors", "credential_id", "events", "issuer")

    def __init__(self, issuer: str, credential_id: bytes) -> None:
        self.issuer = issuer
        self.credential_id = credential_id
        self.events: list[CredentialEvent] = []
        self.anchors: list[AnchorRecord] = []

    @property
    def status(self) -> str:
        """The latest status, including entries not yet committed."""
        return self.events[-1].status if self.events else "active"

    def record(self, limit: int) -> CredentialRecord | None:
        """The record from entries below ``limit``, or None if no entry named it yet."""
        events = tuple(e for e in self.events if e.index < limit)
        anchors = tuple(a for a in self.anchors if a.index < limit)
        if not events and not anchors:
            return None
        last = events[-1] if events else None
        return CredentialRecord(self.issuer, self.credential_id, last.status if last else "active",
                                last.reason if last else "", events, anchors,
                                tuple(sorted([e.index for e in events] + [a.index for a in anchors])))


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A member's recognition policy as of a log position (spec 6.4.6).

    Attributes:
        member: the member whose policy it is.
        rules: the rules of the last ``member.policy`` entry.
        time: that entry's author time.
        entries: the index of that entry.
    """

    member: str
    rules: tuple[PolicyRule, ...]
    time: int
    entries: tuple[int, ...]
