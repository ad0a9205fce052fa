"""Replay step 9: every row of the ``evidence`` table is what it says it is (spec 7.5.1 step 9).

Evidence accuses a member: a checkpoint its node signed that a witness refused, two final histories of one
log, two governance roots of one version. A database that carried a forged accusation (a note the accused
never signed, a "root mismatch" whose root is the verified entries' own) would be believed by whoever reads
the table, so replay checks each row against the chain it rebuilt and the tree it verified. What a row
cannot show by itself is left to its reason: which entry of a `rule-breach` broke which rule (the entries
were never stored), and the other history of a `split-view` (the row holds one final checkpoint).

This module does no I/O of its own: the caller hands it the stored rows, the chain and a way to the verified
tree's root at a size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ledger.errors import DecodeError, EquivocationError, MekongError
from ledger.finality import open_signed, state_reference
from ledger.governance import GovernanceChain
from ledger.roots import SignedRoot
from ledger.schema import StoredEvidence

__all__ = ["GOVERNANCE_EVIDENCE", "KINDS", "check_evidence", "note_key"]

#: The ``log`` of evidence about governance roots (spec 7.1.8).
GOVERNANCE_EVIDENCE = "governance"
#: Every kind of evidence row (spec 7.1.8).
KINDS = frozenset({"root-mismatch", "state-mismatch", "rule-breach", "split-view", "root-equivocation"})

#: ``tree_root(log, size)``: the root of the log's first ``size`` entries as replay verified them, and the state
#: root it recomputed there; None for either when replay does not hold it.
Roots = Callable[[str, int], tuple[bytes | None, bytes | None]]


def note_key(data: bytes) -> bytes:
    """The part of a note's bytes that names its statement: the text and the blank line after it (for
    :meth:`ledger.storage.Storage.put_evidence`: the same checkpoint with other signature lines is the same
    evidence)."""
    end = data.find(b"\n\n")
    return data if end < 0 else data[:end + 2]


def check_evidence(rows: list[StoredEvidence], chain: GovernanceChain, roots: Roots) -> Iterator[tuple[str, str]]:
    """Yield (location, problem) for each evidence row that is not what its kind says.

    Locations are ``evidence row N`` (the row's ``id``).
    """
    for row in rows:
        where = f"evidence row {row.row}"
        try:
            problem = _judge(row, chain, roots)
        except MekongError as e:
            problem = f"{row.kind} of log {row.log}: {e}"
        if problem is not None:
            yield where, problem


def _judge(row: StoredEvidence, chain: GovernanceChain, roots: Roots) -> str | None:
    if row.kind not in KINDS:
        return f"unknown kind {row.kind!r}"
    if row.kind == "root-equivocation":
        return _judge_root(row, chain)
    if row.log == GOVERNANCE_EVIDENCE:
        return f"{row.kind} must name a member's log, not {GOVERNANCE_EVIDENCE}"
    # Every other kind is a checkpoint note signed by the log's owner under a root of the chain.
    _, cp, fin = open_signed(row.data, chain, row.log)
    tree, state = roots(row.log, cp.size)
    if row.kind == "split-view":  # one of two final histories: which one the replica went on to hold may vary
        if not fin.final:
            return f"split-view of log {row.log}: the checkpoint of size {cp.size} is not final"
    elif row.kind in ("root-mismatch", "rule-breach") and tree is not None and tree == cp.root_hash:
        # root-mismatch: no mismatch; rule-breach: the very entries that passed every rule here
        return f"{row.kind} of log {row.log}: the checkpoint of size {cp.size} holds the verified entries' root"
    elif row.kind == "state-mismatch" and state is not None and state == state_reference(cp):
        return (f"state-mismatch of log {row.log}: the checkpoint of size {cp.size} holds the state root of the"
                " verified entries")
    return None


def _judge_root(row: StoredEvidence, chain: GovernanceChain) -> str | None:
    if row.log != GOVERNANCE_EVIDENCE:
        return f"root-equivocation must name {GOVERNANCE_EVIDENCE}, not log {row.log}"
    try:
        signed = SignedRoot.from_cbor(row.data)
    except DecodeError as e:
        return f"root-equivocation: {e}"
    held = chain.current.version
    if not 1 < signed.root.version <= held:
        return f"root-equivocation: version {signed.root.version} is not a version after genesis the chain holds"
    try:
        chain.add(signed)  # a held version: never appends; raises unless it is another valid root of it
    except EquivocationError:
        return None
    return f"root-equivocation: the root of version {signed.root.version} is the one the chain holds"
