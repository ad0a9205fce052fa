"""An in-memory network for tests, demos and benchmarks: real entries, real checkpoints, no nodes.

Not for production. :class:`Sandbox` makes a genesis root for a handful of
members (fresh keys for every admin and node), a
:class:`ledger.registry.RegistryState` over it, and per member log an
in-memory Merkle tree. Its helpers sign real entries with
:func:`ledger.entries.make_entry` and apply them through
:meth:`~ledger.registry.RegistryState.apply_batch` (so every ledger rule is
enforced), and :meth:`Sandbox.finalize` signs a real checkpoint, has the
witnesses cosign it at the timestamps the caller chooses, opens it with
:func:`ledger.checkpoint.open_checkpoint` and keeps the result as a
:class:`~credentials.view.FinalCheckpoint`. :meth:`Sandbox.view` returns a
:class:`~credentials.view.RegistryView` over all that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import nacl.signing

from credentials.cwt import credential_digest
from credentials.view import FinalCheckpoint, RegistryView
from ledger.bodies import (
    CredentialAnchor,
    CredentialStatus,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    PolicyRule,
)
from ledger.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    add_signatures,
    log_origin,
    sign_checkpoint,
    witness_name,
)
from ledger.entries import make_entry
from ledger.finality import checkpoint_extensions, open_signed
from ledger.governance import GovernanceChain
from ledger.keys import key_id, next_key_digest, public_key_of
from ledger.merkle import MemoryTree, leaf_hash
from ledger.note import NoteSigner
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from ledger.state import MemoryState

__all__ = ["GMS_MEMBERS", "Sandbox"]

GMS_MEMBERS = ("CN", "KH", "LA", "MM", "TH", "VN")


def _seeded_key(seed: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(seed.encode()).digest())


class Sandbox:
    """A network of ``members`` with ``faulty`` and ``quorum``, all in memory.

    Args:
        members: member ids (sorted for the root).
        network: the network id.
        faulty: ``f``.
        quorum: cosignatures for finality (also the governance threshold).
        issued_at: the genesis root's time.
        seed: when given, every key is derived from it, so runs are repeatable.
    """

    def __init__(self, members: Sequence[str] = GMS_MEMBERS, network: str = "gms", faulty: int = 1,
                 quorum: int = 4, issued_at: int = 1_700_000_000, seed: str | None = None) -> None:
        self.network = network
        ids = sorted(members)

        def key(name: str) -> nacl.signing.SigningKey:
            return _seeded_key(f"{seed}/{name}") if seed is not None else nacl.signing.SigningKey.generate()

        self.admin_keys = {m: key(f"{m}/admin") for m in ids}
        self.node_keys = {m: key(f"{m}/node") for m in ids}
        self._key = key
        root = Root(network, 1, None, tuple(
            Member(m, f"Member {m}", (public_key_of(self.admin_keys[m]),), public_key_of(self.node_keys[m]),
                   (f"https://{m.lower()}.example",)) for m in ids), quorum, quorum, faulty, issued_at)
        self.chain = GovernanceChain.from_genesis(SignedRoot.create(root, self.admin_keys.values()))
        self.state = RegistryState(self.chain)
        self.trees: dict[str, MemoryTree] = {m: MemoryTree() for m in ids}
        self.maps: dict[str, MemoryState] = {m: MemoryState() for m in ids}
        self.finals: dict[str, list[FinalCheckpoint]] = {m: [] for m in ids}
        self.members = tuple(ids)
        self._issuer_keys = 0

    # ------------------------------------------------------------------ entries

    def append(self, log: str, type_name: str, time: int, body: object,
               signing_key: nacl.signing.SigningKey | None = None) -> int:
        """Sign one entry (with the log's admin key by default), apply it, and return its index.

        Raises:
            AuthorizationError: a ledger rule refuses it (nothing changes).
        """
        raw = make_entry(log, type_name, time, body, signing_key or self.admin_keys[log])  # type: ignore[arg-type]
        index = self.state.size(log)
        (entry,) = self.state.apply_batch(log, index, [raw])
        self.trees[log].append(leaf := leaf_hash(raw))
        self.maps[log].apply(index, [entry.body], [leaf])
        return index

    def new_key(self) -> nacl.signing.SigningKey:
        """A fresh (or, with a seed, the next derived) Ed25519 key."""
        self._issuer_keys += 1
        return self._key(f"issuer-key/{self._issuer_keys}")

    def register_issuer(self, issuer: str, document_types: Iterable[str], loa: str = "high", time: int = 0,
                        name: str | None = None) -> int:
        """``issuer.register`` in the issuer's member log."""
        log = issuer.partition("/")[0]
        return self.append(log, "issuer.register", time, IssuerRegister(
            issuer, name or issuer, tuple(document_types), loa, log))

    def update_issuer(self, issuer: str, time: int, *, document_types: Iterable[str] | None = None,
                      loa: str | None = None, status: str | None = None, reason: str = "") -> int:
        """``issuer.update``."""
        return self.append(issuer.partition("/")[0], "issuer.update", time, IssuerUpdate(
            issuer, None if document_types is None else tuple(document_types), loa, status, reason))

    def add_key(self, issuer: str, time: int, *, valid_from: int | None = None, valid_until: int | None = None,
                next_key: nacl.signing.SigningKey | None = None,
                key: nacl.signing.SigningKey | None = None) -> nacl.signing.SigningKey:
        """``issuer.key.add`` of a new (or the given) key; returns the signing key."""
        key = key or self.new_key()
        self.append(issuer.partition("/")[0], "issuer.key.add", time, IssuerKeyAdd(
            issuer, public_key_of(key), time if valid_from is None else valid_from, valid_until,
            None if next_key is None else next_key_digest(public_key_of(next_key))))
        return key

    def rotate_key(self, issuer: str, old: nacl.signing.SigningKey, new: nacl.signing.SigningKey, time: int, *,
                   next_key: nacl.signing.SigningKey | None = None, valid_until: int | None = None) -> int:
        """``issuer.key.rotate`` to the pre-committed ``new`` key, signed by it."""
        return self.append(issuer.partition("/")[0], "issuer.key.rotate", time, IssuerKeyRotate(
            issuer, key_id(public_key_of(old)), public_key_of(new), valid_until,
            None if next_key is None else next_key_digest(public_key_of(next_key))), new)

    def revoke_key(self, issuer: str, key: nacl.signing.SigningKey, reason: str, effective: int, time: int) -> int:
        """``issuer.key.revoke`` signed by the member's admin key."""
        return self.append(issuer.partition("/")[0], "issuer.key.revoke", time, IssuerKeyRevoke(
            issuer, key_id(public_key_of(key)), reason, effective))

    def anchor(self, issuer: str, key: nacl.signing.SigningKey, data: bytes, time: int,
               credential_id: bytes | None = None) -> int:
        """``credential.anchor`` of SHA-256 of ``data`` (a credential or signature), signed by an issuer key."""
        return self.append(issuer.partition("/")[0], "credential.anchor", time, CredentialAnchor(
            issuer, credential_digest(data), "sha-256", credential_id), key)

    def set_status(self, issuer: str, key: nacl.signing.SigningKey, credential_id: bytes, status: str, time: int,
                   reason: str = "") -> int:
        """``credential.status``, signed by an issuer key."""
        return self.append(issuer.partition("/")[0], "credential.status", time, CredentialStatus(
            issuer, credential_id, status, reason), key)

    def set_policy(self, member: str, rules: Iterable[tuple[str, Sequence[str], str]], time: int) -> int:
        """``member.policy`` from ``(member or "*", document types or ("*",), min_loa)`` triples."""
        return self.append(member, "member.policy", time, MemberPolicy(tuple(
            PolicyRule(m, tuple(types), loa) for m, types, loa in rules)))

    def next_root(self, members: Sequence[str], issued_at: int, *, quorum: int | None = None,
                  faulty: int | None = None) -> None:
        """Add a governance root listing only ``members`` (a subset), signed by every current member."""
        prev = self.chain.current
        root = Root(self.network, prev.version + 1, self.chain.signed(prev.version).root_hash,
                    tuple(m for m in prev.members if m.id in set(members)),
                    prev.quorum if quorum is None else quorum, prev.quorum if quorum is None else quorum,
                    prev.faulty if faulty is None else faulty, issued_at)
        self.chain.add(SignedRoot.create(root, [self.admin_keys[m.id] for m in prev.members]))

    # ------------------------------------------------------------------ checkpoints

    def finalize(self, log: str, times: Mapping[str, int] | int) -> FinalCheckpoint:
        """Checkpoint ``log`` at its current size and have witnesses cosign it.

        Args:
            log: the member log.
            times: witness member id -> cosignature timestamp; or one
                timestamp, used by the first ``quorum`` members (owner first).

        Returns:
            The checkpoint as the view sees it, after :func:`ledger.finality.open_signed` verified every signature.
        """
        root = self.chain.current
        if isinstance(times, int):
            order = [log] + [m for m in self.members if m != log]
            times = {m: times for m in order[:root.quorum]}
        tree = self.trees[log]
        cp = Checkpoint(log_origin(self.network, log), tree.size, tree.root(),
                        checkpoint_extensions(root, self.maps[log].root))
        note = sign_checkpoint(cp, NoteSigner(cp.origin, self.node_keys[log]))
        cosigners = {m: CosignatureSigner(witness_name(self.network, m), self.node_keys[m]) for m in times}
        note = add_signatures(note, [cosigners[m].cosign(cp, t) for m, t in times.items()])
        _, opened, fin = open_signed(note.to_bytes(), self.chain, log)
        final = FinalCheckpoint.of(log, opened.size, opened.root_hash, fin.cosigners)
        self.finals[log].append(final)
        return final

    def finalize_all(self, time: int) -> None:
        """Finalize every log holding entries, every cosignature at ``time``."""
        for log in self.members:
            if self.trees[log].size and (not self.finals[log] or self.finals[log][-1].size != self.trees[log].size):
                self.finalize(log, time)

    def view(self) -> RegistryView:
        """A verifier's view over the state and the final checkpoints so far."""
        return RegistryView(self.state, self.finals)
