"""Split-view evidence files: two final checkpoints of one log that cannot both be true (spec 7.6).

A split view means more than ``f`` members cosigned two histories. Whoever finds one can hand anyone a
file that proves it offline against the pinned genesis: checkpoint ``a`` and checkpoint ``b`` of the same
log, each final under the governance root it names, and a consistency proof showing that ``b``'s tree, at
``a``'s size, has another root than ``a``. :class:`SplitViewEvidence` is the file; :func:`verify_split_view`
checks it and raises unless it proves the split.

Left to others: finding split views (the verified replica), storing evidence (storage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger import cbor, merkle
from ledger.errors import DecodeError, VerificationError
from ledger.finality import open_signed
from ledger.governance import walk
from ledger.roots import SignedRoot

__all__ = ["EVIDENCE_VERSION", "SplitViewEvidence", "verify_split_view"]

#: The ``v`` field of an evidence file (spec 7.6).
EVIDENCE_VERSION = 1
_LIMITS = cbor.CborLimits(max_size=1 << 24, max_depth=4, max_items=4096)
_KEYS = frozenset({"v", "kind", "log", "roots", "a", "b", "root_at_a", "proof"})


@dataclass(frozen=True, slots=True)
class SplitViewEvidence:
    """Two final checkpoints of ``log`` that cannot both be true (spec 7.6).

    Attributes:
        log: the member id of the log.
        roots: the signed governance roots after genesis that the checkpoints need, as received.
        a: one checkpoint note, with its cosignatures.
        b: the other, of a size at least ``a``'s, with its cosignatures.
        root_at_a: the root of ``b``'s tree at ``a``'s size.
        proof: the RFC 9162 consistency proof from (``a``'s size, ``root_at_a``) to ``b``; empty when the
            sizes are equal (``root_at_a`` is then ``b``'s root).
    """

    log: str
    roots: tuple[bytes, ...]
    a: bytes
    b: bytes
    root_at_a: bytes
    proof: tuple[bytes, ...]

    def to_cbor(self) -> bytes:
        """The file: deterministic CBOR (spec 7.6)."""
        return cbor.encode({"v": EVIDENCE_VERSION, "kind": "split-view", "log": self.log, "roots": list(self.roots),
                            "a": self.a, "b": self.b, "root_at_a": self.root_at_a, "proof": list(self.proof)})

    @classmethod
    def from_cbor(cls, data: bytes) -> SplitViewEvidence:
        """Decode an evidence file from untrusted bytes.

        Raises:
            DecodeError: not deterministic CBOR, or not a split-view evidence file.
        """
        m = cbor.decode(data, _LIMITS)
        if not isinstance(m, dict) or set(m) != _KEYS or m["v"] != EVIDENCE_VERSION or m["kind"] != "split-view":
            raise DecodeError(f"not a split-view evidence file of version {EVIDENCE_VERSION}: expected a map of "
                              f"{', '.join(sorted(_KEYS))}")
        fields = (m["log"], m["a"], m["b"], m["root_at_a"])
        if not isinstance(fields[0], str) or not all(isinstance(x, bytes) for x in fields[1:]):
            raise DecodeError("evidence file: log must be text; a, b and root_at_a byte strings")
        for name in ("roots", "proof"):
            if not isinstance(m[name], list) or not all(isinstance(x, bytes) for x in m[name]):
                raise DecodeError(f"evidence file: {name} must be an array of byte strings")
        if len(m["root_at_a"]) != 32:
            raise DecodeError("evidence file: root_at_a must be 32 bytes")
        return cls(m["log"], tuple(m["roots"]), m["a"], m["b"], m["root_at_a"], tuple(m["proof"]))


def verify_split_view(evidence: SplitViewEvidence, genesis: SignedRoot, pinned_hash: bytes | None,
                      extra_roots: Sequence[SignedRoot] = ()) -> str:
    """Check that the file proves a split view, offline (spec 7.6); return what it proves, in words.

    Steps: (1) the governance chain from the pinned genesis through the roots the file carries;
    (2) ``a`` and ``b`` each open and are final under the root they name (owner signature, quorum of
    cosignatures); (3) ``b`` is at least as large as ``a``; (4) the consistency proof binds ``root_at_a``
    at ``a``'s size to ``b``'s root; (5) ``root_at_a`` differs from ``a``'s root.

    Raises:
        DecodeError, VerificationError: a step fails: the file proves nothing.
    """
    roots = [SignedRoot.from_cbor(r) for r in evidence.roots]
    chain = walk(genesis, [*roots, *extra_roots], pinned_hash)
    _, a, fa = open_signed(evidence.a, chain, evidence.log)
    _, b, fb = open_signed(evidence.b, chain, evidence.log)
    fa.require_final()
    fb.require_final()
    if b.size < a.size:
        raise VerificationError(f"checkpoint b (size {b.size}) is smaller than a (size {a.size})")
    if b.size == a.size:
        if evidence.proof or evidence.root_at_a != b.root_hash:
            raise VerificationError("for checkpoints of one size, root_at_a must be b's root and the proof empty")
    else:
        merkle.verify_consistency(a.size, b.size, list(evidence.proof), evidence.root_at_a, b.root_hash)
    if evidence.root_at_a == a.root_hash:
        raise VerificationError(f"the two checkpoints of log {evidence.log} agree at size {a.size}: no split view")
    return (f"log {evidence.log}: two final checkpoints cannot both be true: size {a.size} with root "
            f"{a.root_hash.hex()} (cosigned by {', '.join(sorted(fa.cosigners))}), and size {b.size} whose tree has "
            f"root {evidence.root_at_a.hex()} at size {a.size} (cosigned by {', '.join(sorted(fb.cosigners))})")
