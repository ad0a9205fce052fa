"""Seeding a new node's database with a verified governance chain, so a member that a later root added can start.

A node replays its database from the pinned genesis at start (spec 7.5); a member that the genesis does not
list would be refused there, since no root the node holds lists it. ``mekong node init`` therefore builds
the chain from the pinned genesis and the candidate roots an operator supplies (files, or fetched from
peers), verifies every link (spec 5.5), and stores each root in the new database before the node's first
start. The node then starts empty, adopts the head in its own log (spec 6.2.9) and catches up from peers.

Left to others: fetching candidates (the client), verifying roots (:mod:`ledger.governance`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ledger.errors import VerificationError
from ledger.governance import GovernanceChain, walk
from ledger.roots import SignedRoot
from ledger.storage import Storage

__all__ = ["chain_for_member", "seed_governance"]


def chain_for_member(genesis: SignedRoot, candidates: Iterable[SignedRoot], pinned_hash: bytes, member: str,
                     node_key: bytes) -> GovernanceChain:
    """Walk the chain from the pinned genesis and check that its head lists ``member`` with ``node_key``.

    Raises:
        VerificationError: a candidate does not verify, a version is missing, the head does not list the
            member, or lists another node key for it.
        AuthorizationError, EquivocationError: as :func:`ledger.governance.walk`.
    """
    chain = walk(genesis, candidates, pinned_hash)
    head = chain.current
    if member not in head.member_ids:
        raise VerificationError(f"member {member} is not in governance root version {head.version}, the newest"
                                f" found (members: {', '.join(head.member_ids)}); give the root that adds it")
    if head.node_key_of(member) != node_key:
        raise VerificationError(f"the node key is not the node key governance root version {head.version} lists"
                                f" for {member}")
    return chain


def seed_governance(database: Path, chain: GovernanceChain) -> None:
    """Store every root of ``chain`` in the node database at ``database`` (created if missing, spec 7.1.7).

    Raises:
        StorageError: the database cannot be opened or written.
    """
    with Storage.open(database) as storage:
        for root in chain.roots:
            storage.put_root(root.version, chain.signed(root.version).to_cbor())
