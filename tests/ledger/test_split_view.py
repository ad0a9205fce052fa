"""ledger.evidence: a split-view file proves two final histories, and nothing else passes (spec 7.6)."""

from __future__ import annotations

import pytest
from test_finality import signed_note
from test_memberlog import T0, Net, make_net

from ledger import merkle
from ledger.errors import DecodeError, VerificationError
from ledger.evidence import SplitViewEvidence, verify_split_view

QUORUM = {"KH": T0, "LA": T0, "TH": T0, "VN": T0}  # quorum 4 of six


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


def test_two_roots_at_one_size_are_proven(net: Net) -> None:
    g = net.genesis.root
    a = signed_note(net, g, "VN", 5, b"\x01" * 32, QUORUM)
    b = signed_note(net, g, "VN", 5, b"\x02" * 32, QUORUM)
    ev = SplitViewEvidence("VN", (), a, b, b"\x02" * 32, ())
    assert "two final checkpoints cannot both be true" in verify_split_view(
        SplitViewEvidence.from_cbor(ev.to_cbor()), net.genesis, net.genesis.root_hash)


def test_a_larger_checkpoint_with_a_consistency_proof(net: Net) -> None:
    g = net.genesis.root
    tree = merkle.MemoryTree([merkle.leaf_hash(b"%d" % i) for i in range(9)])
    a = signed_note(net, g, "VN", 5, b"\x07" * 32, QUORUM)  # not tree's root at 5
    b = signed_note(net, g, "VN", 9, tree.root(9), QUORUM)
    proof = tuple(tree.consistency_proof(5, 9))
    assert verify_split_view(SplitViewEvidence("VN", (), a, b, tree.root(5), proof), net.genesis, net.genesis.root_hash)
    with pytest.raises(VerificationError):  # a root at 5 the proof does not bind to b
        verify_split_view(SplitViewEvidence("VN", (), a, b, b"\x07" * 32, proof), net.genesis, net.genesis.root_hash)
    agreeing = signed_note(net, g, "VN", 5, tree.root(5), QUORUM)
    with pytest.raises(VerificationError, match="no split view"):
        verify_split_view(SplitViewEvidence("VN", (), agreeing, b, tree.root(5), proof), net.genesis,
                          net.genesis.root_hash)


def test_what_is_not_final_or_malformed_proves_nothing(net: Net) -> None:
    g = net.genesis.root
    a = signed_note(net, g, "VN", 5, b"\x01" * 32, {"KH": T0})  # one cosignature: not final
    b = signed_note(net, g, "VN", 5, b"\x02" * 32, QUORUM)
    with pytest.raises(VerificationError, match="final needs"):
        verify_split_view(SplitViewEvidence("VN", (), a, b, b"\x02" * 32, ()), net.genesis, net.genesis.root_hash)
    small = signed_note(net, g, "VN", 4, b"\x02" * 32, QUORUM)
    with pytest.raises(VerificationError, match="smaller"):
        verify_split_view(SplitViewEvidence("VN", (), b, small, b"\x02" * 32, ()), net.genesis, net.genesis.root_hash)
    with pytest.raises(DecodeError):
        SplitViewEvidence.from_cbor(b"\xa0")
