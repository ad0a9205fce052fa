"""The verification engine's view over a database of member logs: a replica's, or a node's own.

Both a verifier's full replica (``tools.client.replica``) and a node (its explorer's credential check)
hold every log in a :class:`~ledger.storage.Storage` with a registry state; :func:`database_view` turns
that into the :class:`~credentials.view.RegistryView` the engine judges against: only final state, each
log as of its newest final checkpoint, with the freshness of the newest one (spec 7.4.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from credentials.view import FinalCheckpoint, RegistryView
from ledger.checkpoint import Checkpoint
from ledger.memberlog import MemberLog
from ledger.note import Note
from ledger.registry import RegistryState

__all__ = ["database_view", "final_checkpoints"]


def final_checkpoints(logs: Mapping[str, MemberLog]) -> dict[str, list[FinalCheckpoint]]:
    """Log -> every recorded final checkpoint (spec 7.1.9), oldest first, with its counted cosignatures."""
    out: dict[str, list[FinalCheckpoint]] = {}
    for m, lg in logs.items():
        cps = []
        finals = lg.storage.finals(m)
        for size, _, _ in finals:
            fin = lg.finality(size)
            note = lg.storage.checkpoint(m, size)
            if fin is not None and fin.final and note is not None:
                newest = size == finals[-1][0]  # its freshness: the newest line of each witness (7.4.4)
                cps.append(FinalCheckpoint.of(m, size, Checkpoint.parse(Note.parse(note).text).root_hash,
                                              fin.cosigners, lg.freshness(size) if newest else None))
        out[m] = cps
    return out


def database_view(state: RegistryState, logs: Mapping[str, MemberLog], evidence: Sequence[str] = (),
                  withheld_root: int | None = None) -> RegistryView:
    """The engine's view of a database's registry state and final checkpoints."""
    return RegistryView(state, final_checkpoints(logs), evidence, withheld_root)
