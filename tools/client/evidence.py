"""Exporting split-view evidence a replica found, as one file anyone verifies offline (spec 7.6).

:func:`export_split_view` pairs the conflicting checkpoint kept as evidence with the replica's own newest
final checkpoint of that log, whose entries it verified, and adds the consistency proof from its tree and
the governance roots both need. :func:`ledger.evidence.verify_split_view` checks the file.
"""

from __future__ import annotations

from ledger.checkpoint import Checkpoint, add_signatures
from ledger.errors import VerificationError
from ledger.evidence import SplitViewEvidence
from ledger.note import Note
from tools.client.replica import Replica

__all__ = ["export_split_view"]


def export_split_view(replica: Replica, log: str | None = None) -> SplitViewEvidence:
    """The first split view the replica holds as evidence (of ``log``, when given), as an evidence file.

    Raises:
        VerificationError: the replica holds no split-view evidence (of that log), or not the entries needed
            to prove it.
    """
    rows = [e for e in replica.storage.evidence(log) if e.kind == "split-view"]
    if not rows:
        raise VerificationError("this replica holds no split-view evidence" + (f" of log {log}" if log else ""))
    row = rows[0]
    lg = replica.logs[row.log]
    a = Checkpoint.parse(Note.parse(row.data).text)
    final = replica.storage.latest_final(row.log)
    if final is None or final < a.size or lg.size < final:
        raise VerificationError(f"log {row.log}: the replica holds no final checkpoint of size {a.size} or more to"
                                " set against the evidence")
    note = Note.parse(replica.storage.checkpoint(row.log, final) or b"")
    b = add_signatures(note, lg.fresh_lines(final).values()).to_bytes()
    proof = () if final == a.size else tuple(lg.consistency_proof(a.size, final))
    roots = tuple(replica.chain.signed(v).to_cbor() for v in range(2, replica.chain.current.version + 1))
    return SplitViewEvidence(row.log, roots, row.data, b, lg.root_hash(a.size), proof)
