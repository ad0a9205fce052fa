"""What the verifier needs to know about the ledger: the :class:`LedgerView` interface and its records.

Specified in specs/credentials.md section 5. The verification engine never
talks to a node or a database: it is handed a view of a registry state that
rests on final checkpoints, and asks it a handful of questions: who an issuer
is, what a key is and when it was revoked, the status history of a
credential, where a digest was anchored, which issuers a member recognises,
the current governance root, and the final checkpoints of each log.

This module defines those records, the proof-of-existence arithmetic of
GUIDE section 2a (the ``(f+1)``-th smallest cosignature timestamp of the
first final checkpoint that covers an entry), and :class:`RegistryView`, the
view over the ledger's own :class:`ledger.registry.RegistryState`.
Verifying checkpoints and cosignatures is left to whoever builds the view
(:func:`ledger.checkpoint.open_checkpoint`, :meth:`ledger.memberlog.MemberLog.finality`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledger import finality
from ledger.errors import ConflictError, MekongError

__all__ = [
    "AnchorInfo",
    "FinalCheckpoint",
    "GovernanceInfo",
    "IssuerInfo",
    "IssuerPeriod",
    "KeyInfo",
    "KeyRevocation",
    "LedgerView",
    "ProofOfExistence",
    "RecognitionRule",
    "RegistryView",
    "StatusEvent",
    "WitnessTime",
    "fresh_time",
    "proof_of_existence",
    "witnessed_time",
]


@dataclass(frozen=True, slots=True)
class GovernanceInfo:
    """The current governance root, as far as the verifier needs it.

    Attributes:
        network: the network id.
        version: the root version.
        members: ids of the current members.
        faulty: ``f``, the most members that may be faulty.
        quorum: cosignatures that make a checkpoint final.
        expires: when the root stops being a valid head (spec 5.4.3), or None.
        departed: member id -> (version, issued_at) of the root that removed it, for every member an earlier
            root listed and the current one does not (spec 7.4.2).
        withheld: a newer root version that final checkpoints name (vouched for by a quorum of the current
            members) but that no node served, or None.
    """

    network: str
    version: int
    members: frozenset[str]
    faulty: int
    quorum: int
    expires: int | None = None
    departed: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    withheld: int | None = None


@dataclass(frozen=True, slots=True)
class IssuerPeriod:
    """An issuer's accreditation and status from ``time`` (the author time of entry ``index``) on."""

    time: int
    status: str
    document_types: tuple[str, ...]
    loa: str
    index: int


@dataclass(frozen=True, slots=True)
class IssuerInfo:
    """A registered issuer: its member, accreditations, level of assurance and status.

    The flat fields are the current state; ``history`` holds every state, oldest first, so that the
    issuer can be judged at a credential's signing time too (specs/credentials.md check 4.7).
    """

    issuer_id: str
    member: str
    name: str
    document_types: tuple[str, ...]
    loa: str
    status: str
    history: tuple[IssuerPeriod, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyRevocation:
    """One revocation of an issuer key: ``reason`` is superseded, compromised or ceased.

    ``effective`` is the time from which the key is no longer trusted; ``log``
    and ``index`` locate the entry that says so.
    """

    reason: str
    effective: int
    log: str
    index: int


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An issuer key: owner, public key, validity window ``[valid_from, valid_until)`` and revocations."""

    kid: bytes
    issuer: str
    public_key: bytes
    valid_from: int
    valid_until: int | None
    revocations: tuple[KeyRevocation, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One ``credential.status`` entry: status, reason, its author time and place."""

    status: str
    reason: str
    time: int
    log: str
    index: int


@dataclass(frozen=True, slots=True)
class AnchorInfo:
    """A ``credential.anchor`` entry for a digest."""

    log: str
    index: int
    issuer: str
    time: int


@dataclass(frozen=True, slots=True)
class WitnessTime:
    """A verified cosignature on a checkpoint: the witness (member id or key name) and its timestamp."""

    witness: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class FinalCheckpoint:
    """A final checkpoint of one log: size, root hash and the verified cosignatures on it.

    Build one from what :func:`ledger.checkpoint.open_checkpoint` or
    :meth:`ledger.memberlog.MemberLog.finality` returns, with :meth:`of`.
    ``times`` (derived) holds the cosignature timestamps in ascending order: the first cosignature of each
    witness, which bounds when the entries existed. ``seen`` holds the newest verified cosignature time of
    each witness (heartbeats re-cosign the newest checkpoint, spec 7.4.4), which says how fresh it is;
    empty when only the first ones are known.
    """

    log: str
    size: int
    root_hash: bytes
    cosignatures: tuple[WitnessTime, ...]
    seen: tuple[int, ...] = ()
    times: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", tuple(sorted(c.timestamp for c in self.cosignatures)))

    @classmethod
    def of(cls, log: str, size: int, root_hash: bytes, cosigners: Mapping[str, int],
           seen: Mapping[str, int] | None = None) -> FinalCheckpoint:
        """From a mapping of witness (member id or key name) to verified cosignature timestamp, and optionally
        to the newest verified one."""
        return cls(log, size, root_hash, tuple(WitnessTime(w, t) for w, t in sorted(cosigners.items())),
                   tuple(sorted((seen or {}).values())))


class RecognitionRule(Protocol):
    """One rule of a member's recognition policy (``ledger.bodies.PolicyRule`` has this shape)."""

    @property
    def member(self) -> str: ...
    @property
    def document_types(self) -> tuple[str, ...]: ...
    @property
    def min_loa(self) -> str: ...

    def covers(self, member: str, document_type: str, loa: str) -> bool:
        """Whether the rule accepts an issuer of ``member`` for ``document_type`` at ``loa`` (spec 6.2.8)."""
        ...


class LedgerView(Protocol):
    """The registry questions the verifier asks (spec section 5.1).

    Every answer must come from registry state that rests on the final
    checkpoints of :meth:`latest_checkpoint`. "Not found" is None or an
    empty tuple, never an exception.
    """

    @property
    def governance(self) -> GovernanceInfo:
        """The current governance root."""
        ...

    def issuer(self, issuer_id: str) -> IssuerInfo | None:
        """The issuer's current registration."""
        ...

    def key(self, kid: bytes, issuer: str | None = None) -> KeyInfo | None:
        """The issuer key with ledger key id ``kid`` (of ``issuer``, when the caller knows it).

        None also when ``issuer`` is None and more than one log holds the key id.
        """
        ...

    def credential_status(self, issuer_id: str, credential_id: bytes) -> tuple[StatusEvent, ...]:
        """The status entries of a credential, oldest first (empty: never given a status)."""
        ...

    def anchors(self, digest: bytes) -> tuple[AnchorInfo, ...]:
        """The anchor entries of a SHA-256 digest."""
        ...

    def recognition(self, member: str) -> Sequence[RecognitionRule] | None:
        """The member's current recognition rules, or None if it published no policy."""
        ...

    def latest_checkpoint(self, log: str) -> FinalCheckpoint | None:
        """The newest final checkpoint of ``log`` the view rests on; None if it rests on none."""
        ...

    def covering_checkpoint(self, log: str, index: int) -> FinalCheckpoint | None:
        """The first final checkpoint of ``log`` whose size exceeds ``index`` (so covers entry ``index``)."""
        ...


def fresh_time(checkpoint: FinalCheckpoint, faulty: int, latest: int) -> int | None:
    """How fresh a checkpoint is: the ``(f+1)``-th newest cosignature time no later than ``latest`` (spec 7.4.4).

    At least ``f + 1`` witnesses, so one honest, saw the checkpoint as the log's newest at that time or later,
    and no ``f`` colluders can move it later. Times after ``latest`` (the verifier's clock plus the allowed
    skew) are not counted: a witness claiming a time in the future is refused, never shown as a negative age.
    None when fewer than ``f + 1`` times remain.
    """
    times = sorted((t for t in (checkpoint.seen or checkpoint.times) if t <= latest), reverse=True)
    return times[faulty] if len(times) > faulty else None


def witnessed_time(checkpoint: FinalCheckpoint, faulty: int) -> int | None:
    """The ``(f+1)``-th smallest cosignature timestamp of ``checkpoint`` (:func:`ledger.finality.witnessed_time`).

    Returns None when the checkpoint has fewer than ``f + 1`` cosignatures.
    """
    return finality.witnessed_time(checkpoint.times, faulty)


@dataclass(frozen=True, slots=True)
class ProofOfExistence:
    """An anchor covered by a final checkpoint: the anchored bytes existed no later than ``time``."""

    log: str
    index: int
    time: int
    checkpoint_size: int


def proof_of_existence(view: LedgerView, digest: bytes, faulty: int) -> ProofOfExistence | None:
    """The earliest proof of existence of ``digest`` among its anchors (spec section 5.3).

    For an anchor at index ``i`` of a log, the first final checkpoint with
    ``size > i`` covers it, and its witnessed time bounds the anchored bytes'
    creation from above. Anchors not yet covered by a final checkpoint give
    no proof.
    """
    best: ProofOfExistence | None = None
    for anchor in view.anchors(digest):
        cp = view.covering_checkpoint(anchor.log, anchor.index)
        t = None if cp is None else witnessed_time(cp, faulty)
        if cp is not None and t is not None and (best is None or t < best.time):
            best = ProofOfExistence(anchor.log, anchor.index, t, cp.size)
    return best


# --------------------------------------------------------------------------- over the ledger's registry


def _member_of(issuer_id: str) -> str:
    return issuer_id.partition("/")[0]


class RegistryView:
    """A :class:`LedgerView` over a :class:`ledger.registry.RegistryState` and final checkpoints (spec 5.1.2).

    For each log the view rests on the newest final checkpoint given whose
    size the state holds, and asks the state every question "as of" that
    size, so entries beyond it (not yet final) are never seen, and neither
    is a log with no final checkpoint. Checkpoints with fewer cosignatures
    than the current root's quorum are ignored. The checkpoints themselves
    must already be verified (log signature and cosignatures).

    Because the positions are fixed when the view is made, answers about
    issuers, keys and policies never change and are cached; make a new view
    to see newer final state.

    Args:
        state: the registry state (``ledger.registry.RegistryState``).
        checkpoints: log (member id) -> verified final checkpoints, any order.
        evidence: descriptions of evidence of two histories the verifier holds.
        withheld_root: a newer governance root version the verifier knows exists but could not get.
    """

    def __init__(self, state: Any, checkpoints: Mapping[str, Sequence[FinalCheckpoint]],
                 evidence: Sequence[str] = (), withheld_root: int | None = None) -> None:
        #: What the verifier holds as evidence that members showed two histories (split views, root
        #: equivocation); any makes every answer INDETERMINATE/EQUIVOCATION (check 8.1).
        self.evidence = tuple(evidence)
        self._state = state
        root = state.chain.current
        departed = {m: (r.version, r.issued_at) for m in state.chain.members_ever
                    if (r := state.chain.departure(m)) is not None}
        self.governance = GovernanceInfo(root.network, root.version, frozenset(m.id for m in root.members),
                                         root.faulty, root.quorum, root.expires, departed,
                                         withheld_root if withheld_root and withheld_root > root.version else None)
        self._cps: dict[str, tuple[FinalCheckpoint, ...]] = {}
        self._sizes: dict[str, list[int]] = {}
        self._as_of: dict[str, int] = {}
        for log, cps in checkpoints.items():
            held = state.size(log)
            usable = sorted((cp for cp in cps if cp.log == log and cp.size <= held
                             and len(cp.cosignatures) >= root.quorum), key=lambda cp: cp.size)
            if usable:
                self._cps[log] = tuple(usable)
                self._sizes[log] = [cp.size for cp in usable]
                self._as_of[log] = usable[-1].size
        self._issuers: dict[str, IssuerInfo | None] = {}
        self._keys: dict[tuple[bytes, str | None], KeyInfo | None] = {}
        self._policies: dict[str, Sequence[RecognitionRule] | None] = {}

    @property
    def positions(self) -> dict[str, int]:
        """Log -> the size the view rests on."""
        return dict(self._as_of)

    def latest_checkpoint(self, log: str) -> FinalCheckpoint | None:
        cps = self._cps.get(log)
        return cps[-1] if cps else None

    def covering_checkpoint(self, log: str, index: int) -> FinalCheckpoint | None:
        sizes = self._sizes.get(log)
        if sizes is None:
            return None
        at = bisect_right(sizes, index)
        return self._cps[log][at] if at < len(sizes) else None

    def issuer(self, issuer_id: str) -> IssuerInfo | None:
        try:
            return self._issuers[issuer_id]
        except KeyError:
            pass
        found = None
        member = _member_of(issuer_id) if type(issuer_id) is str else ""
        if member in self._as_of:
            rec = self._state.issuer(issuer_id, self._as_of[member])
            if rec is not None:
                found = IssuerInfo(rec.issuer, rec.member, rec.name, rec.document_types, rec.loa, rec.status,
                                   tuple(IssuerPeriod(h.time, h.status, h.document_types, h.loa, h.index)
                                         for h in rec.history))
        if len(self._issuers) < _CACHE_MAX:
            self._issuers[issuer_id] = found
        return found

    def key(self, kid: bytes, issuer: str | None = None) -> KeyInfo | None:
        cache_key = (kid, issuer)
        try:
            return self._keys[cache_key]
        except KeyError:
            pass
        found = self._key(kid, issuer)
        if len(self._keys) < _CACHE_MAX:
            self._keys[cache_key] = found
        return found

    def _key(self, kid: bytes, issuer: str | None) -> KeyInfo | None:
        state = self._state
        if issuer is None:
            owners = state.key_issuers(kid)
            if len(owners) != 1:
                return None  # unknown, or ambiguous: the caller must name the issuer
            issuer = owners[0]
        member = _member_of(issuer)
        if member not in self._as_of:
            return None
        try:
            rec = state.key(kid, self._as_of[member], issuer=issuer)
        except (ConflictError, ValueError):
            return None
        if rec is None:
            return None
        revocations = tuple(KeyRevocation("superseded" if e.status == "superseded" else e.reason, e.effective,
                                          rec.member, e.index) for e in rec.history[1:])
        return KeyInfo(rec.kid, rec.issuer, rec.key, rec.valid_from, rec.valid_until, revocations)

    def credential_status(self, issuer_id: str, credential_id: bytes) -> tuple[StatusEvent, ...]:
        member = _member_of(issuer_id)
        if member not in self._as_of:
            return ()
        try:
            rec = self._state.credential(issuer_id, credential_id, self._as_of[member])
        except (MekongError, ValueError):
            return ()
        if rec is None:
            return ()
        return tuple(StatusEvent(e.status, e.reason, e.time, member, e.index) for e in rec.history)

    def anchors(self, digest: bytes) -> tuple[AnchorInfo, ...]:
        as_of = self._as_of
        return tuple(AnchorInfo(a.log, a.index, a.issuer, a.time) for a in self._state.anchors(digest)
                     if a.index < as_of.get(a.log, 0))

    def recognition(self, member: str) -> Sequence[RecognitionRule] | None:
        try:
            return self._policies[member]
        except KeyError:
            pass
        rules = None
        if member in self._as_of:
            rec = self._state.policy(member, self._as_of[member])
            rules = rec.rules if rec is not None else None
        self._policies[member] = rules
        return rules


#: Most cached answers a RegistryView keeps per kind (issuer and key ids come from untrusted input).
_CACHE_MAX = 4096
