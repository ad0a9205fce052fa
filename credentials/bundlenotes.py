"""Checkpoint notes in a proof bundle: the compact form they are written in, and trimming them to the lines a
verdict reads (specs/state.md S.7.3).

A bundle's notes are verified checkpoint notes of this project, so their key names follow from the origin
(spec 4.3.3) and need not be written; their signatures are written as bytes, not base64. A note needs the
log's line and a quorum of cosignatures to be final; of the rest, no verdict reads any. This module does no
I/O and reads no clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ledger import cbor
from ledger.checkpoint import parse_log_origin, witness_name
from ledger.errors import DecodeError
from ledger.finality import open_signed
from ledger.governance import GovernanceChain
from ledger.note import KEY_ID_SIZE, Note, NoteSignature

if TYPE_CHECKING:
    from credentials.bundle import ProofBundle

__all__ = ["compact_note", "expand_note", "trim_notes"]

def _lines(note: Note) -> tuple[NoteSignature, list[tuple[str, NoteSignature]]]:
    # (the log's line, [(witness member, its line)]) of a checkpoint note in Mekong's naming.
    origin = note.text.split("\n", 1)[0]
    network, _ = parse_log_origin(origin)
    own, *others = note.signatures
    if own.name != origin:
        raise DecodeError(f"the first signature of a checkpoint note of {origin} is not the log's own")
    cosigners = []
    for sig in others:
        member = sig.name.removesuffix("/witness").rpartition("/")[2]
        try:
            ours = sig.name.endswith("/witness") and witness_name(network, member) == sig.name
        except ValueError:
            ours = False
        if not ours:
            raise DecodeError(f"a checkpoint note of {origin} carries a line by {sig.name}, no member's witness")
        cosigners.append((member, sig))
    return own, cosigners


def compact_note(note: bytes) -> list[Any]:
    """A checkpoint note in the bundle's compact form (spec S.7.3): ``[text, own, [[member, blob], ...]]``.

    The key names are left out (the origin names the log's key, ``<network>/<member>/witness`` each
    witness's), the signatures are bytes rather than base64, and the cosignatures are sorted by member.

    Raises:
        DecodeError: not a note, or a line not signed under this project's key names (spec 4.3.3).
    """
    parsed = Note.parse(note)
    own, cosigners = _lines(parsed)
    return [parsed.text, own.key_id + own.signature, [[m, sig.key_id + sig.signature] for m, sig in sorted(cosigners)]]


def expand_note(item: Any) -> bytes:
    """The checkpoint note a :func:`compact_note` form stands for; raises DecodeError naming what is wrong."""
    if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str) or not isinstance(item[1], bytes)
            or not isinstance(item[2], list)
            or not all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], bytes)
                       for c in item[2])):
        raise DecodeError("a compact note is [text, signature bytes, [[member id, signature bytes], ...]]")
    text, own, rows = item
    members = [c[0] for c in rows]
    if members != sorted(set(members)):
        raise DecodeError("a compact note lists its cosignatures once each, sorted by member id")
    origin = text.split("\n", 1)[0]
    try:
        network, _ = parse_log_origin(origin)
        sigs = [NoteSignature(origin, own[:KEY_ID_SIZE], own[KEY_ID_SIZE:])]
        sigs += [NoteSignature(witness_name(network, m), blob[:KEY_ID_SIZE], blob[KEY_ID_SIZE:]) for m, blob in rows]
    except ValueError as e:  # a member id outside the naming rule (the note's own errors are DecodeErrors)
        raise DecodeError(f"a compact note of {origin!r}: {e}") from e
    return Note(text, tuple(sigs)).to_bytes()


def _trimmed(note: bytes, chain: GovernanceChain, log: str, newest: bool) -> bytes:
    # The log's line and the quorum's cosignatures with the newest (or the first) times: those a verdict reads.
    # The quorum is the larger of the note's root's and the chain head's: a view counts a checkpoint only with
    # the head's quorum (credentials.view.RegistryView), and a later root may ask for more.
    _, _, fin = open_signed(note, chain, log)
    keep = max(fin.quorum, chain.current.quorum)
    parsed = Note.parse(note)
    own, cosigners = _lines(parsed)
    counted = [(fin.cosigners[m], m, sig) for m, sig in cosigners if m in fin.cosigners]
    kept = sorted(counted, key=lambda c: (-c[0], c[1]) if newest else (c[0], c[1]))[:keep]
    return Note(parsed.text, (own, *(sig for _, _, sig in sorted(kept, key=lambda c: c[1])))).to_bytes()


def trim_notes(bundle: ProofBundle, chain: GovernanceChain) -> ProofBundle:
    """The bundle with each checkpoint note cut to the log's line and ``quorum`` cosignatures (spec S.7.3).

    An answer's note keeps the newest lines (its freshness is the ``(f+1)``-th newest time), an existence
    proof's note the first ones (its bound is the ``(f+1)``-th earliest), so every verdict stays the same;
    an answer note an existence proof reuses keeps every line. The notes must have been checked.
    """
    reused = {e.log for e in bundle.existence if not e.checkpoint}
    answers = []
    for log, data in bundle.answers:
        if log not in reused:
            doc = cbor.decode(data)  # an answer the bundle's maker checked
            data = cbor.encode({**doc, "checkpoint": _trimmed(doc["checkpoint"], chain, log, newest=True)})
        answers.append((log, data))
    existence = tuple(replace(e, checkpoint=_trimmed(e.checkpoint, chain, e.log, newest=False)) if e.checkpoint
                      else e for e in bundle.existence)
    return replace(bundle, answers=tuple(answers), existence=existence)
