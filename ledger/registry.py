"""Registry state: what the member logs say, as a pure function of the root chain and log prefixes.

Specified in specs/06-entries.md section 6.4. :class:`RegistryState` holds
the issuers, issuer keys, member policies and adoptions that the applied
entries establish, each with the indices of the entries it rests on, in
memory; credential anchors and status go to its book
(:mod:`ledger.credbook`: in memory, or read from a node's database). It is fed one log batch at a time by
:meth:`RegistryState.apply_batch`, which checks the rules of
:mod:`ledger.rules` entry by entry, verifies every signature, and then
commits the whole batch, or nothing.

Every query can be asked "as of" a position of the owning log (the first
``as_of`` entries) and answers None when the thing is not known at that
position. Mapping witnessed times to positions, storing entries and proving
them are left to ``ledger.storage``, ``ledger.memberlog`` and the checkpoint
code; this module does no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ledger.bodies import (
    CredentialAnchor,
    CredentialStatus,
    GovernanceAdopt,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    check_member_id,
    member_of,
)
from ledger.credbook import CredentialBook, MemoryBook
from ledger.entries import Entry, UnverifiedEntry
from ledger.errors import ConflictError, DecodeError, VerificationError
from ledger.governance import GovernanceChain
from ledger.keys import key_id
from ledger.records import (
    AnchorRecord,
    CredentialEvent,
    CredentialRecord,
    IssuerRecord,
    IssuerState,
    KeyEvent,
    KeyRecord,
    KeyStatus,
    LiveCredential,
    LiveIssuer,
    LiveKey,
    PolicyRecord,
    key_status,
)
from ledger.roots import Root
from ledger.rules import SignatureJob, SignatureVerifier, authorize, first_failure, verify_sequential, where

__all__ = ["RegistryState"]

_Undo = list[Callable[[], Any]]


class RegistryState:
    """The registry built from the governance chain and member log prefixes (spec 6.4).

    Not safe for two writers at once. While :meth:`apply_batch` runs, the
    batch's effects are held at indices at or above the log's size, so
    queries (which read only below the size) see committed entries only.

    Attributes:
        chain: the governance chain; entries may name any root version it
            holds. Adding roots to it later is fine; replacing it is not.
    """

    def __init__(self, chain: GovernanceChain, book: CredentialBook | None = None) -> None:
        """Start an empty state over ``chain``; anchors and credential status go to ``book`` (default: memory)."""
        self.chain = chain
        self.book: CredentialBook = MemoryBook() if book is None else book
        self._logs: dict[str, tuple[int, int, int]] = {}  # log -> (size, last author time, last root)
        self._issuers: dict[str, LiveIssuer] = {}
        self._keys: dict[str, dict[bytes, LiveKey]] = {}  # log -> kid -> key
        self._policies: dict[str, list[PolicyRecord]] = {}
        self._adoptions: dict[str, list[tuple[int, int]]] = {}
        self._admins: dict[tuple[int, str], dict[bytes, bytes] | None] = {}

    # ----------------------------------------------------------------------- what the rules read

    def live_issuer(self, issuer: str) -> LiveIssuer | None:
        """The issuer's live record, including uncommitted effects (for the rules)."""
        return self._issuers.get(issuer)

    def live_key(self, log: str, kid: bytes) -> LiveKey | None:
        """The key with id ``kid`` on ``log``, including uncommitted effects (for the rules)."""
        keys = self._keys.get(log)
        return keys.get(kid) if keys is not None else None

    def live_credential(self, issuer: str, credential_id: bytes) -> LiveCredential | None:
        """The credential's live record, including uncommitted effects (for the rules)."""
        return self.book.credential(issuer, credential_id)

    def governance_root(self, version: int) -> Root:
        """The verified governance root of ``version``; raises VerificationError if the chain has none."""
        return self.chain.root_at(version)  # type: ignore[no-any-return]

    def admin_keys(self, version: int, member: str) -> Mapping[bytes, bytes] | None:
        """Key id -> admin public key of ``member`` in root ``version``; None if not a member.

        ``version`` must be at most the chain's current version.
        """
        cache_key = (version, member)
        found = self._admins.get(cache_key, False)
        if found is False:
            found = None
            for m in self.chain.root_at(version).members:
                if m.id == member:
                    found = {key_id(pub): pub for pub in m.admin_keys}
            self._admins[cache_key] = found
        return found  # type: ignore[return-value]

    # ----------------------------------------------------------------------- applying entries

    def apply_batch(self, log: str, start: int, entries: Sequence[UnverifiedEntry | bytes],
                    verify_signatures: SignatureVerifier = verify_sequential) -> list[Entry]:
        """Apply a batch of entries to the end of one log, atomically (spec 6.3.16).

        The rules are checked entry by entry, each against the state the
        earlier entries (of this batch too) left; the signature checks are
        collected and handed to ``verify_signatures`` in one call, which may
        spread them over threads (:class:`ledger.memberlog.ParallelVerifier`). Only
        when every check passed does the state change.

        Args:
            log: the member id of the log.
            start: the index of the first entry; must equal :meth:`size`.
            entries: decoded entries (from :meth:`UnverifiedEntry.decode`),
                or entry bytes, which are decoded here.
            verify_signatures: called once with every (public key,
                Sig_structure, signature) job of the batch, in entry order;
                returns only if all verify.

        Returns:
            The verified entries, in order, with their indices.

        Raises:
            DecodeError: an entry is malformed (message names log and index).
            AuthorizationError: an entry breaks a rule of spec 6.3.
            VerificationError: a signature does not verify (spec 6.3.15).
            ConflictError: ``start`` is not the log's current size.
            ValueError: ``log`` is not a member id.
            Whatever ``verify_signatures`` raises; the state is unchanged
            after any exception.
        """
        try:
            check_member_id("log", log)
        except DecodeError as err:
            raise ValueError(str(err)) from err
        size, prev_time, prev_root = self._logs.get(log, (0, 0, 1))
        if start != size:
            raise ConflictError(f"log {log}: the registry holds {size} entries; a batch cannot start at {start}")
        if not entries:
            return []
        undo: _Undo = []
        # Decode every entry first: the same work, but in one tight loop, runs faster.
        decoded = [item if isinstance(item, UnverifiedEntry) else _decode(log, start + i, item)
                   for i, item in enumerate(entries)]
        try:
            jobs, prev_time, prev_root = self._authorize_all(log, start, decoded, prev_time, prev_root, undo)
            verified = [_verified(e, start + i) for i, e in enumerate(decoded)]
            _verify_all(log, start, decoded, jobs, verify_signatures)
        except BaseException:
            for step in reversed(undo):
                step()
            raise
        self._logs[log] = (start + len(decoded), prev_time, prev_root)
        self.book.commit()
        return verified

    def load(self, log: str, size: int, entries: Sequence[tuple[int, UnverifiedEntry]],
             last: tuple[int, int] | None = None) -> None:
        """Take in entries of a log that were checked before, without the rules of spec 6.3.

        Two callers: a light verifier (specs/state.md S.4.2) takes in the entries a state proof lists, whose
        presence a final checkpoint proves (a quorum of witnesses checked the rules before cosigning it); a
        node starting on its database (:func:`ledger.reopen.open_registry`) takes in the issuers, keys,
        policies and adoptions each log stored, leaving anchors and credential status in the database.
        Queries then answer as of ``size``.

        Args:
            log: the log's member id.
            size: the log's (or the checkpoint's) size; every index must be below it.
            entries: (index, entry) by ascending index.
            last: (author time, root version) of the log's newest entry, which later entries are held to
                (spec 6.3.3, 6.3.4); by default those of the last entry given.

        Raises:
            ConflictError: the state already holds entries of ``log``.
            DecodeError: an index at or beyond ``size``, or an entry that relies on one not given (a key
                update without its key, say): the message names it.
        """
        if self.size(log):
            raise ConflictError(f"log {log}: the registry already holds entries; proven entries go in once")
        undo: _Undo = []
        for index, e in entries:
            if not 0 <= index < size:
                raise DecodeError(f"log {log}: proven entry {index} is not below the checkpoint size {size}")
            try:
                _APPLY[e.type](self, log, index, e, undo)
            except KeyError as err:
                raise DecodeError(f"log {log}: proven entry {index} ({e.type}) relies on an entry that was not"
                                  " given") from err
        if last is None:
            last = (entries[-1][1].time, entries[-1][1].root) if entries else (0, 1)
        self._logs[log] = (size, last[0], last[1])
        self.book.commit()

    def _authorize_all(self, log: str, start: int, decoded: list[UnverifiedEntry], prev_time: int, prev_root: int,
                       undo: _Undo) -> tuple[list[SignatureJob], int, int]:
        # Spec 6.3.16: the rules entry by entry, each applied (with its undo step) before the next is checked.
        latest = self.chain.current.version
        jobs: list[SignatureJob] = []
        for index, e in enumerate(decoded, start):
            pub = authorize(self, log, index, e, prev_time, prev_root, latest)
            _APPLY[e.type](self, log, index, e, undo)
            prev_time, prev_root = e.time, e.root
            jobs.append((pub, e.to_be_signed(), e.sign1.signature))
        return jobs, prev_time, prev_root

    def _put_key(self, log: str, key: LiveKey, issuer: LiveIssuer, index: int, undo: _Undo) -> None:
        keys = self._keys.get(log)
        if keys is None:
            keys = self._keys[log] = {}
            undo.append(partial(self._keys.pop, log))
        keys[key.kid] = key
        undo.append(partial(keys.pop, key.kid))
        issuer.kids.append((index, key.kid))
        undo.append(issuer.kids.pop)

    def _apply_register(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, IssuerRegister)
        state = IssuerState(index, e.time, b.document_types, b.loa, "active", "")
        self._issuers[b.issuer] = LiveIssuer(b.issuer, log, b.name, b.jurisdiction, state)
        undo.append(partial(self._issuers.pop, b.issuer))

    def _apply_update(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, IssuerUpdate)
        live = self._issuers[b.issuer]
        cur = live.current
        live.states.append(IssuerState(index, e.time, cur.document_types if b.document_types is None
                                       else b.document_types, b.loa or cur.loa, b.status or cur.status, b.reason))
        undo.append(live.states.pop)

    def _apply_key_add(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, IssuerKeyAdd)
        added = KeyEvent("added", "registered", b.valid_from, index)
        key = LiveKey(key_id(b.key), b.key, b.issuer, log, b.valid_from, b.valid_until, b.next_key_digest, added)
        self._put_key(log, key, self._issuers[b.issuer], index, undo)

    def _apply_key_rotate(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, IssuerKeyRotate)
        kid = key_id(b.key)
        old = self._keys[log][b.old_kid]
        old.events.append(KeyEvent("superseded", "rotation", e.time, index, kid))
        undo.append(old.events.pop)
        added = KeyEvent("added", "rotation", e.time, index)
        key = LiveKey(kid, b.key, b.issuer, log, e.time, b.valid_until, b.next_key_digest, added)
        self._put_key(log, key, self._issuers[b.issuer], index, undo)

    def _apply_key_revoke(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, IssuerKeyRevoke)
        target = self._keys[log][b.kid]
        target.events.append(KeyEvent("revoked", b.reason, b.effective, index))
        undo.append(target.events.pop)

    def _apply_anchor(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, CredentialAnchor)
        self.book.add_anchor(AnchorRecord(log, index, b.issuer, e.time, b.digest, b.credential_id), undo)

    def _apply_status(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, CredentialStatus)
        self.book.add_event(b.issuer, b.credential_id, CredentialEvent(b.status, b.reason, e.time, index), undo)

    def _apply_policy(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, MemberPolicy)
        rec = PolicyRecord(log, b.rules, e.time, (index,))
        found = self._policies.get(log)
        if found is None:
            self._policies[log] = [rec]
            undo.append(partial(self._policies.pop, log))
        else:
            found.append(rec)
            undo.append(found.pop)

    def _apply_adopt(self, log: str, index: int, e: UnverifiedEntry, undo: _Undo) -> None:
        b = e.body
        assert isinstance(b, GovernanceAdopt)
        found = self._adoptions.setdefault(log, [])
        if not found:
            undo.append(partial(self._adoptions.pop, log))
        found.append((b.version, index))
        undo.append(found.pop)

    # ----------------------------------------------------------------------- queries (spec 6.4)

    def size(self, log: str) -> int:
        """How many entries of ``log`` the state holds (0 for a log it has not seen)."""
        return self._logs.get(log, (0, 0, 1))[0]

    def author_time(self, log: str) -> int:
        """The author time of ``log``'s newest entry (0 when it has none); no later entry may be older (6.3.3)."""
        return self._logs.get(log, (0, 0, 1))[1]

    def root_version(self, log: str) -> int:
        """The governance root version ``log`` writes under: that of its newest entry, 1 when it has none.

        No later entry may name an older root (spec 6.3.4), and the log's checkpoints name this root
        (spec 4.3.5, 7.4.1).
        """
        return self._logs.get(log, (0, 0, 1))[2]

    def adoptions(self, log: str) -> list[tuple[int, int]]:
        """(root version, entry index) of every ``governance.adopt`` entry of ``log``, oldest first (6.2.9)."""
        return list(self._adoptions.get(log, ()))

    def sizes(self) -> dict[str, int]:
        """The size of every log the state holds entries of."""
        return {log: meta[0] for log, meta in list(self._logs.items())}

    def _limit(self, log: str, as_of: int | None) -> int:
        size = self.size(log)
        if as_of is None:
            return size
        if type(as_of) is not int or not 0 <= as_of <= size:
            raise ValueError(f"as_of must be a position from 0 to {size} of log {log}, got {as_of!r}")
        return as_of

    def issuer(self, issuer: str, as_of: int | None = None) -> IssuerRecord | None:
        """The issuer as of position ``as_of`` of its member's log (spec 6.4.1).

        Returns:
            The record, or None if the issuer is not registered by then.

        Raises:
            ValueError: ``as_of`` is negative or beyond the log's size.
        """
        limit = self._limit(member_of(issuer), as_of)
        live = self._issuers.get(issuer)
        return live.record(limit) if live is not None else None

    def issuer_ids(self, member: str) -> tuple[str, ...]:
        """The ids of the issuers ``member``'s log registers, sorted."""
        return tuple(sorted(i for i, live in self._issuers.items() if live.member == member))

    def key_issuers(self, kid: bytes) -> tuple[str, ...]:
        """Every issuer, across logs, that has a key with id ``kid`` (normally one or none)."""
        found = []
        for log, keys in list(self._keys.items()):
            key = keys.get(kid)
            if key is not None and key.added.index < self.size(log):
                found.append(key.issuer)
        return tuple(sorted(found))

    def key(self, kid: bytes, as_of: int | None = None, *, issuer: str | None = None) -> KeyRecord | None:
        """An issuer key as of position ``as_of`` of the log holding it (spec 6.4.2).

        Args:
            kid: the ledger key id (a credential's ``kid``).
            as_of: a position in the log of the key's member; None for all.
            issuer: the issuer the key must belong to (a credential's
                ``iss``). Needed only if two members' logs both hold the key id.

        Returns:
            The record, or None if no such key is known by then.

        Raises:
            ConflictError: ``issuer`` is None and more than one log holds
                the key id (``evidence`` lists the issuers).
            ValueError: ``as_of`` is negative or beyond the log's size.
        """
        if issuer is not None:
            live = self.live_key(member_of(issuer), kid)
            if live is None or live.issuer != issuer:
                return None
        else:
            owners = self.key_issuers(kid)
            if len(owners) > 1:
                raise ConflictError(f"key {kid.hex()} is held by {', '.join(owners)}; name the issuer", owners)
            if not owners:
                return None
            live = self.live_key(member_of(owners[0]), kid)
            assert live is not None
        return live.record(self._limit(live.member, as_of))

    def key_status_at(self, kid: bytes, time: int, as_of: int | None = None, *,
                      issuer: str | None = None) -> KeyStatus | None:
        """Whether the key was valid at ``time``, as the log knew it at ``as_of`` (spec 6.4.3).

        Returns:
            ``(status, reason, effective)`` as a :class:`KeyStatus`, or None
            if the key is not known by then.

        Raises:
            ConflictError: as for :meth:`key`.
            ValueError: ``as_of`` is negative or beyond the log's size.
        """
        rec = self.key(kid, as_of, issuer=issuer)
        if rec is None:
            return None
        return key_status(rec.valid_from, rec.valid_until, rec.history[0].index, rec.history[1:], time)

    def credential(self, issuer: str, credential_id: bytes, as_of: int | None = None) -> CredentialRecord | None:
        """A credential's status and anchors as of ``as_of`` of its issuer's log (spec 6.4.5).

        Returns:
            The record, or None if no entry named the credential by then
            (a credential the ledger never heard of has no recorded status).

        Raises:
            ValueError: ``as_of`` is negative or beyond the log's size.
        """
        limit = self._limit(member_of(issuer), as_of)
        live = self.book.credential(issuer, credential_id)
        return live.record(limit) if live is not None else None

    def anchors(self, digest: bytes, as_of: Mapping[str, int] | None = None) -> tuple[AnchorRecord, ...]:
        """Every anchor of ``digest``, across logs, in (log, index) order (spec 6.4.4).

        Args:
            digest: the SHA-256 digest.
            as_of: log -> position; only anchors below those positions count,
                and logs missing from the mapping count not at all. None
                means every committed entry of every log.

        Raises:
            ValueError: a position is negative or beyond its log's size.
        """
        limits = self.sizes() if as_of is None else {log: self._limit(log, pos) for log, pos in as_of.items()}
        found = [a for a in self.book.anchors(digest, [log for log, n in limits.items() if n])
                 if a.index < limits[a.log]]
        return tuple(sorted(found, key=lambda a: (a.log, a.index)))

    def policy(self, member: str, as_of: int | None = None) -> PolicyRecord | None:
        """The member's recognition policy as of ``as_of`` of its log (spec 6.4.6).

        Returns:
            The last policy below the position, or None if there is none.

        Raises:
            ValueError: ``as_of`` is negative or beyond the log's size.
        """
        limit = self._limit(member, as_of)
        found = None
        for rec in self._policies.get(member, ()):
            if rec.entries[0] >= limit:
                break
            found = rec
        return found


def _decode(log: str, index: int, raw: bytes) -> UnverifiedEntry:
    try:
        return UnverifiedEntry.decode(raw)
    except DecodeError as err:
        raise DecodeError(f"{where(log, index)}: {err}") from err


def _verify_all(log: str, start: int, decoded: list[UnverifiedEntry], jobs: list[SignatureJob],
                verify_signatures: SignatureVerifier) -> None:
    # Spec 6.3.15: every signature of the batch in one call; a failure names the first bad entry.
    try:
        verify_signatures(jobs)
    except VerificationError as err:
        bad = first_failure(jobs)
        if bad is None:
            raise
        raise VerificationError(f"{where(log, start + bad)}: spec 6.3.15: the signature does not verify "
                                f"under key {decoded[bad].kid.hex()}") from err


def _verified(e: UnverifiedEntry, index: int) -> Entry:
    # Only called once the batch's rules passed; the Entry is returned only if
    # every signature then verifies.
    return Entry(e, e.kid, index)


_APPLY: dict[str, Callable[[RegistryState, str, int, UnverifiedEntry, _Undo], None]] = {
    "issuer.register": RegistryState._apply_register,
    "issuer.update": RegistryState._apply_update,
    "issuer.key.add": RegistryState._apply_key_add,
    "issuer.key.rotate": RegistryState._apply_key_rotate,
    "issuer.key.revoke": RegistryState._apply_key_revoke,
    "credential.anchor": RegistryState._apply_anchor,
    "credential.status": RegistryState._apply_status,
    "member.policy": RegistryState._apply_policy,
    "governance.adopt": RegistryState._apply_adopt,
}
