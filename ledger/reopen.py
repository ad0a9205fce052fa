"""Opening a node's database without replaying it: the start-up check of spec 7.5.3.

A node (and the replica of ``mekong verify --full``) verified every entry, checkpoint and cosignature
before it stored them, and keeps its registry in the database (spec 7.1.11 to 7.1.15), so starting does
not replay the history: :func:`open_registry` checks what ties the database to what the node signed and
its peers cosigned, at a cost that does not grow with the number of entries:

1. the governance chain from the pinned genesis and every stored root (as replay step 1);
2. for each log, its newest stored checkpoint: signed by the log's owner under the root it names, its
   size within the log, its root hash equal to the tree rebuilt from the stored subtree hashes (at most
   one read per level), and the root version of the newest entry it covers (as replay step 5);
3. the issuers, keys, policies and adoptions of each log are loaded from the entries ``registry_entries``
   lists (a few per issuer, however many credentials it anchored); anchors and credential status stay in
   the database (:class:`ledger.credbook.StoredBook`);
4. :class:`ledger.memberlog.MemberLog` then checks each log's state map against its stored state root and
   the ``state`` line of the newest checkpoint (spec S.5).

``mekong audit replay`` (:func:`ledger.replay.replay`) remains the full check from genesis of every byte.
"""

from __future__ import annotations

from ledger import merkle
from ledger.credbook import StoredBook
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, StorageError, VerificationError
from ledger.governance import GovernanceChain
from ledger.registry import RegistryState
from ledger.replay import _Findings, _replay_checkpoint, _replay_roots
from ledger.roots import SignedRoot
from ledger.storage import Storage

__all__ = ["open_registry"]


def open_registry(storage: Storage, genesis: SignedRoot, pinned_hash: bytes | None = None
                  ) -> tuple[GovernanceChain, RegistryState]:
    """The governance chain and the registry state of a database, checked as spec 7.5.3 says.

    Returns:
        (chain, state); ``state`` reads anchors and credential status from ``storage``.

    Raises:
        VerificationError: ``genesis`` does not verify against ``pinned_hash``.
        StorageError: a check failed; the message names the log and what is wrong, and says to replay the
            database (``mekong audit replay``) to find every problem.
    """
    found = _Findings()
    chain = _replay_roots(storage, genesis, pinned_hash, found)
    if found.problems:
        raise StorageError(f"the database at {storage.path}: {found.problems[0]}; replay it (mekong audit replay)")
    network = genesis.root.network
    state = RegistryState(chain, StoredBook(storage))
    members = set(chain.members_ever)
    for log in storage.logs():  # rows of a log the logs table lacks are replay's to find (a scan of every table)
        size = storage.size(log)
        if log not in members:
            raise StorageError(f"the database at {storage.path} holds log {log}, which no governance root lists")
        try:
            _check_newest_checkpoint(storage, log, network, chain, size)
            if size:
                _load_log(storage, log, size, state)
        except (DecodeError, VerificationError) as e:
            raise StorageError(f"the database at {storage.path}, log {log}: {e}; replay it (mekong audit replay)"
                               ) from e
    return chain, state


def _check_newest_checkpoint(storage: Storage, log: str, network: str, chain: GovernanceChain, size: int) -> None:
    newest = storage.latest_checkpoint(log)
    if newest is None:
        return
    cp_size, note = newest
    recomputed = merkle.tree_root(cp_size, lambda level, idx: storage.get_node(log, level, idx)) if cp_size \
        else merkle.EMPTY_ROOT
    try:
        _replay_checkpoint(storage, note, log, network, chain, cp_size, size, recomputed)
    except VerificationError as e:
        raise VerificationError(f"the newest checkpoint (size {cp_size}): {e}") from e


def _load_log(storage: Storage, log: str, size: int, state: RegistryState) -> None:
    indices = storage.registry_entries(log)
    if indices and indices[-1] >= size:
        raise DecodeError(f"registry_entries lists entry {indices[-1]} of a log of {size}")
    entries = [(i, UnverifiedEntry.decode(raw)) for i, raw in zip(indices, storage.read_entries_at(log, indices))]
    newest = UnverifiedEntry.decode(storage.read_entries_at(log, [size - 1])[0])
    state.load(log, size, entries, (newest.time, newest.root))
