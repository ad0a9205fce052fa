"""Credential books: where the registry keeps credential anchors and credential status (spec 6.4.4, 6.4.5).

Anchors and status changes are most of a ledger (a member anchors every certificate it issues), so the
registry keeps them apart from the issuers, keys and policies, behind one small interface with two
implementations:

- :class:`MemoryBook` holds them in dictionaries: for replay, sandboxes, the light verifier and tests.
- :class:`StoredBook` holds nothing but the batch being applied: it reads the rest from the node's
  database when asked (spec 7.1.14), so a node's memory does not grow with its history. An anchor of a
  digest is found through the log's state map (the ``anchor`` key lists its entries), a credential's status
  changes through the ``status`` key, and the anchors that name a credential id through the
  ``credential_anchors`` table; the entries themselves are read and decoded on demand.

Both see the effects of the batch being applied (the rules read them) and forget them again when the
batch is undone. Neither reads a clock; :class:`StoredBook` reads only from the storage it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from ledger import merkle
from ledger.bodies import CredentialAnchor, CredentialStatus, member_of
from ledger.entries import UnverifiedEntry
from ledger.errors import StorageError
from ledger.records import AnchorRecord, CredentialEvent, LiveCredential
from ledger.state import StateKey, StateValue

if TYPE_CHECKING:
    from ledger.storage import Storage

__all__ = ["BookRows", "CredentialBook", "MemoryBook", "StoredBook", "book_rows"]

Undo = list[Callable[[], Any]]


class BookRows(tuple[tuple[int, ...], tuple[tuple[str, bytes, int], ...]]):
    """The rows a batch adds to ``registry_entries`` (indices) and ``credential_anchors`` ((issuer, credential
    id, index)), spec 7.1.14 and 7.1.15."""

    __slots__ = ()

    @property
    def registry(self) -> tuple[int, ...]:
        """Indices of the entries that are neither anchors nor status changes (issuers, keys, policies, ...)."""
        return self[0]

    @property
    def credential_anchors(self) -> tuple[tuple[str, bytes, int], ...]:
        """(issuer, credential id, index) of each anchor that names a credential id."""
        return self[1]


def book_rows(start: int, bodies: Sequence[object]) -> BookRows:
    """The rows of spec 7.1.14 and 7.1.15 for entries ``start, start + 1, ...`` with these bodies."""
    registry = []
    anchors = []
    for index, b in enumerate(bodies, start):
        if isinstance(b, CredentialAnchor):
            if b.credential_id is not None:
                anchors.append((b.issuer, b.credential_id, index))
        elif not isinstance(b, CredentialStatus):
            registry.append(index)
    return BookRows((tuple(registry), tuple(anchors)))


class CredentialBook(Protocol):
    """What :class:`ledger.registry.RegistryState` needs of a place for anchors and credential status."""

    def add_anchor(self, rec: AnchorRecord, undo: Undo) -> None:
        """Take in an anchor (its undo step goes on ``undo``)."""

    def add_event(self, issuer: str, credential_id: bytes, event: CredentialEvent, undo: Undo) -> None:
        """Take in a status change of a credential (its undo step goes on ``undo``)."""

    def commit(self) -> None:
        """The batch being applied is committed (stored, when there is storage)."""

    def anchors(self, digest: bytes, logs: Sequence[str]) -> list[AnchorRecord]:
        """Every anchor of ``digest`` on ``logs``, uncommitted ones included, any order."""

    def credential(self, issuer: str, credential_id: bytes) -> LiveCredential | None:
        """The credential's anchors and status changes, uncommitted ones included; None if none."""


class MemoryBook:
    """Anchors and credential status in memory."""

    def __init__(self) -> None:
        """Start empty."""
        self._anchors: dict[bytes, list[AnchorRecord]] = {}
        self._credentials: dict[tuple[str, bytes], LiveCredential] = {}

    def add_anchor(self, rec: AnchorRecord, undo: Undo) -> None:
        """See :class:`CredentialBook`."""
        found = self._anchors.get(rec.digest)
        if found is None:
            self._anchors[rec.digest] = [rec]
            undo.append(partial(self._anchors.pop, rec.digest))
        else:
            found.append(rec)
            undo.append(found.pop)
        if rec.credential_id is not None:
            cred = self._credential(rec.issuer, rec.credential_id, undo)
            cred.anchors.append(rec)
            undo.append(cred.anchors.pop)

    def add_event(self, issuer: str, credential_id: bytes, event: CredentialEvent, undo: Undo) -> None:
        """See :class:`CredentialBook`."""
        cred = self._credential(issuer, credential_id, undo)
        cred.events.append(event)
        undo.append(cred.events.pop)

    def commit(self) -> None:
        """Nothing to do: the dictionaries are the book."""

    def anchors(self, digest: bytes, logs: Sequence[str]) -> list[AnchorRecord]:
        """See :class:`CredentialBook`."""
        return [a for a in self._anchors.get(digest, ()) if a.log in logs]

    def credential(self, issuer: str, credential_id: bytes) -> LiveCredential | None:
        """See :class:`CredentialBook`."""
        return self._credentials.get((issuer, credential_id))

    def _credential(self, issuer: str, credential_id: bytes, undo: Undo) -> LiveCredential:
        k = (issuer, credential_id)
        cred = self._credentials.get(k)
        if cred is None:
            cred = self._credentials[k] = LiveCredential(issuer, credential_id)
            undo.append(partial(self._credentials.pop, k))
        return cred


class StoredBook(MemoryBook):
    """Anchors and credential status read from a node's database; only the batch being applied is in memory.

    The rows it reads are written by :meth:`ledger.storage.Storage.append_entries` in the transaction that
    stores the entries (spec 7.3 step 6), so what is committed is always readable here; :meth:`commit`
    then forgets the batch. The caller serialises appends and queries (one ledger thread).
    """

    def __init__(self, storage: Storage) -> None:
        """Read from ``storage``."""
        super().__init__()
        self._storage = storage

    def commit(self) -> None:
        """Forget the batch: its rows are in the database now."""
        self._anchors.clear()
        self._credentials.clear()

    def anchors(self, digest: bytes, logs: Sequence[str]) -> list[AnchorRecord]:
        """See :class:`CredentialBook`: the ``anchor`` state key of each log lists the entries."""
        path = StateKey("anchor", (digest,)).path
        found = []
        for log in logs:
            for index, e in self._entries(log, path):
                b = e.body
                if not isinstance(b, CredentialAnchor) or b.digest != digest:
                    raise _misfiled(log, index, f"an anchor of {digest.hex()}")
                found.append(AnchorRecord(log, index, b.issuer, e.time, b.digest, b.credential_id))
        return found + super().anchors(digest, logs)

    def credential(self, issuer: str, credential_id: bytes) -> LiveCredential | None:
        """See :class:`CredentialBook`: the ``status`` state key and the ``credential_anchors`` rows."""
        log = member_of(issuer)
        cred = LiveCredential(issuer, credential_id)
        for index, e in self._entries(log, StateKey("status", (issuer, credential_id)).path):
            b = e.body
            if not isinstance(b, CredentialStatus) or (b.issuer, b.credential_id) != (issuer, credential_id):
                raise _misfiled(log, index, f"a status change of {credential_id.hex()}")
            cred.events.append(CredentialEvent(b.status, b.reason, e.time, index))
        indices = self._storage.credential_anchors(log, issuer, credential_id)
        for index, raw in zip(indices, self._storage.read_entries_at(log, indices)):
            e = UnverifiedEntry.decode(raw)
            b = e.body
            if not isinstance(b, CredentialAnchor) or (b.issuer, b.credential_id) != (issuer, credential_id):
                raise _misfiled(log, index, f"an anchor of credential {credential_id.hex()}")
            cred.anchors.append(AnchorRecord(log, index, b.issuer, e.time, b.digest, b.credential_id))
        pending = super().credential(issuer, credential_id)
        if pending is not None:
            cred.events += pending.events
            cred.anchors += pending.anchors
        return cred if cred.events or cred.anchors else None

    def _entries(self, log: str, path: bytes) -> list[tuple[int, UnverifiedEntry]]:
        # The entries a state value lists, each checked against the leaf hash the value holds.
        found = self._storage.state_value(log, path)
        if found is None:
            return []
        listed = StateValue.decode(found[1]).entries
        out = []
        for (index, leaf), raw in zip(listed, self._storage.read_entries_at(log, [i for i, _ in listed])):
            if merkle.leaf_hash(raw) != leaf:
                raise StorageError(f"log {log}: entry {index} does not match the leaf hash its state value"
                                   " holds; replay the database (mekong audit replay)")
            out.append((index, UnverifiedEntry.decode(raw)))
        return out


def _misfiled(log: str, index: int, what: str) -> StorageError:
    return StorageError(f"log {log}: entry {index}, listed as {what}, is not one; replay the database"
                        " (mekong audit replay)")
