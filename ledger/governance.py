"""Governance: the TUF-style chain of signed roots, from a pinned genesis (spec 5.3-5.5).

Genesis is signed by every founding member; each later version names its predecessor's hash and is signed
by ``threshold`` of the predecessor's members and by every member it adds. :func:`walk` follows the chain
from a pinned genesis and reports two valid roots of one version as an
:class:`~ledger.errors.EquivocationError`. The root documents themselves are :mod:`ledger.roots`.

This module only decides which roots are valid: fetching, storing and serving roots, acting on an expired
head, and counting checkpoint cosignatures belong to the node, storage and finality code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ledger.cose import HDR_KID
from ledger.errors import AuthorizationError, EquivocationError, VerificationError
from ledger.roots import Root, SignedRoot

__all__ = ["GovernanceChain", "check_thresholds", "verify_genesis", "verify_successor", "walk", "walk_prefix"]


def check_thresholds(n: int, faulty: int, quorum: int, threshold: int) -> None:
    """Check ``quorum`` and ``threshold`` for ``n`` members, ``faulty`` of them faulty (spec 5.3).

    Each value ``x`` must be safe, ``2*x - n > faulty``, and live, ``x <= n - faulty``.

    Raises:
        VerificationError: a value breaks a rule; the message shows the numbers.
    """
    if n < 1 or faulty < 0:
        raise VerificationError(f"need n >= 1 members and f >= 0, got n={n}, f={faulty}")
    low, high = (n + faulty) // 2 + 1, n - faulty
    allowed = f"allowed: {low} to {high}" if low <= high else f"none allowed, as n < 3f+1 = {3 * faulty + 1}"
    for name, x in (("quorum", quorum), ("threshold", threshold)):
        if 2 * x - n <= faulty:
            raise VerificationError(f"{name} {x} is unsafe for n={n}, f={faulty}: 2*{x} - {n} = {2 * x - n}"
                                    f" is not > {faulty} ({allowed})")
        if x > n - faulty:
            raise VerificationError(f"{name} {x} is not live for n={n}, f={faulty}: {x} > n - f = {n - faulty}"
                                    f" ({allowed})")


def _check_root_thresholds(root: Root) -> None:
    try:
        check_thresholds(len(root.members), root.faulty, root.quorum, root.threshold)
    except VerificationError as e:
        raise VerificationError(f"{root.network} root version {root.version}: {e}") from e


def _check_expiry(root: Root, now: int | None) -> None:
    # Spec 5.4.3: only the current head must be unexpired, and only when the caller gives now.
    if now is not None and root.expires is not None and now >= root.expires:
        raise VerificationError(f"{root.network} root version {root.version} expired at {root.expires}"
                                f" (now {now}); a newer root is needed")


def _signers(signed: SignedRoot, *roots: Root) -> list[set[str]]:
    """Verify each signature whose kid one of ``roots`` lists; per root, the members who signed."""
    good: set[bytes] = set()
    for i, sig in enumerate(signed._sign1s):
        kid = sig.headers[HDR_KID]
        # A kid no root lists is ignored and counts for nobody; a listed one must verify.
        for owner, key in {(r._kids[kid][0].id, r._kids[kid][1]) for r in roots if kid in r._kids}:
            try:
                sig.verify(key, detached_payload=signed.payload)
            except VerificationError as e:
                raise VerificationError(f"{signed.root.network} root version {signed.root.version}: signature {i}"
                                        f" by admin key {kid.hex()} of {owner} does not verify") from e
            good.add(kid)
    return [{r._kids[kid][0].id for kid in good if kid in r._kids} for r in roots]


def verify_genesis(signed: SignedRoot, pinned_hash: bytes | None = None, now: int | None = None, *,
                   pin_alone: bool = False) -> Root:
    """Verify a genesis root (spec 5.4.1) and return it.

    ``pinned_hash`` is the trusted genesis hash (None: trust ``signed`` as given); pass ``now`` only when
    the root is to be the current head. With ``pin_alone`` (a pinned hash required) the founders'
    signatures are neither needed nor read: they are by keys the genesis itself lists, so they prove
    nothing to a verifier that trusts the hash (a proof bundle carries the genesis without them, S.7.3).

    Raises:
        VerificationError: not the pinned hash, not version 1, thresholds broken, a bad signature, expired,
            or ``pin_alone`` without a pinned hash.
        AuthorizationError: a founding member did not sign.
    """
    root = signed.root
    if pin_alone and pinned_hash is None:
        raise VerificationError("a genesis without its founders' signatures needs the pinned genesis hash")
    # Spec 5.4.1 step 1: the payload hashes to the pinned hash.
    if pinned_hash is not None and signed.root_hash != pinned_hash:
        raise VerificationError(f"genesis hash {signed.root_hash.hex()} is not the pinned {pinned_hash.hex()}")
    # Spec 5.4.1 step 2: version 1 (and so previous is null, spec 5.1.1).
    if root.version != 1:
        raise VerificationError(f"a genesis root must be version 1, got version {root.version}")
    # Spec 5.4.1 step 3: quorum and threshold (spec 5.3).
    _check_root_thresholds(root)
    if not pin_alone:
        # Spec 5.4.1 step 4: every signature by an admin key the root lists verifies; others are ignored.
        (signers,) = _signers(signed, root)
        # Spec 5.4.1 step 5: every founding member signed.
        if missing := [m for m in root.member_ids if m not in signers]:
            raise AuthorizationError(f"{root.network} genesis lacks signatures from founding members"
                                     f" {', '.join(missing)}; all {len(root.members)} must sign")
    # Spec 5.4.1 step 6: expiry, for the head only (spec 5.4.3).
    _check_expiry(root, now)
    return root


def verify_successor(prev: Root, signed: SignedRoot, now: int | None = None) -> Root:
    """Verify the root of version n+1 against ``prev``, the verified version n (spec 5.4.2).

    Pass ``now`` only when the root is to be the current head.

    Raises:
        VerificationError: other network, version or previous hash, thresholds broken, a bad signature, expired.
        AuthorizationError: fewer than ``prev.threshold`` members of ``prev`` signed, or an added member did not.
    """
    root = signed.root
    # Spec 5.4.2 step 1: same network.
    if root.network != prev.network:
        raise VerificationError(f"root version {root.version} is for network {root.network}, not {prev.network}")
    # Spec 5.4.2 step 2: the next version.
    if root.version != prev.version + 1:
        raise VerificationError(f"root version {root.version} cannot follow version {prev.version}")
    # Spec 5.4.2 step 3: previous is the hash of version n's payload.
    if root.previous != prev.root_hash:
        raise VerificationError(f"root version {root.version} names previous {(root.previous or b'').hex()},"
                                f" but version {prev.version} hashes to {prev.root_hash.hex()}")
    # Spec 5.4.2 step 4: quorum and threshold of the new root (spec 5.3).
    _check_root_thresholds(root)
    # Spec 5.4.2 step 5: every signature by an admin key either root lists verifies; others are ignored.
    old, new = _signers(signed, prev, root)
    # Spec 5.4.2 step 6: at least prev.threshold distinct members of version n signed.
    if len(old) < prev.threshold:
        raise AuthorizationError(f"version {root.version} has signatures from {len(old)} of the {len(prev.members)}"
                                 f" members of version {prev.version} ({', '.join(sorted(old)) or 'none'});"
                                 f" threshold is {prev.threshold}")
    # Spec 5.4.2 step 7: every member that version n+1 adds signed, with a key version n+1 lists.
    if unsigned := [m for m in root.member_ids if m not in prev.member_ids and m not in new]:
        raise AuthorizationError(f"version {root.version} adds {', '.join(unsigned)} without their signature;"
                                 " every added member must sign")
    # Spec 5.4.2 step 8: expiry, for the head only (spec 5.4.3).
    _check_expiry(root, now)
    return root


class GovernanceChain:
    """A verified chain of roots from genesis to the current head (spec 5.5).

    The constructor raises what :func:`verify_genesis` raises for ``genesis`` and ``pinned_hash``.
    """

    __slots__ = ("_roots", "_signed")

    def __init__(self, genesis: SignedRoot, pinned_hash: bytes | None = None, *, pin_alone: bool = False) -> None:
        self._roots = [verify_genesis(genesis, pinned_hash, pin_alone=pin_alone)]
        self._signed = [genesis]

    @classmethod
    def from_genesis(cls, signed: SignedRoot, pinned_hash: bytes | None = None) -> GovernanceChain:
        """The same as the constructor: raises what :func:`verify_genesis` raises."""
        return cls(signed, pinned_hash)

    @classmethod
    def from_pin(cls, signed: SignedRoot, pinned_hash: bytes) -> GovernanceChain:
        """A chain whose genesis is trusted by its pinned hash alone, signed or not (spec 5.4.1).

        Raises:
            VerificationError: what :func:`verify_genesis` raises with ``pin_alone``.
        """
        return cls(signed, pinned_hash, pin_alone=True)

    @property
    def current(self) -> Root:
        """The head of the chain, expired or not."""
        return self._roots[-1]

    def current_at(self, now: int) -> Root:
        """The head of the chain; raises VerificationError if it has expired at ``now`` (spec 5.4.3)."""
        _check_expiry(self.current, now)
        return self.current

    @property
    def roots(self) -> tuple[Root, ...]:
        """Every verified root, version 1 first."""
        return tuple(self._roots)

    @property
    def members_ever(self) -> tuple[str, ...]:
        """The ids of every member any root of the chain lists, sorted: whose logs exist (spec 7.4.2)."""
        return tuple(sorted({m for r in self._roots for m in r.member_ids}))

    def departure(self, member: str) -> Root | None:
        """The root that removed ``member`` from the network: the first root, after one that listed it, that
        does not; None while the head lists it or no root ever did."""
        last = max((r.version for r in self._roots if member in r.member_ids), default=None)
        if last is None or last == self.current.version:
            return None
        return self._roots[last]  # version last + 1

    def signed(self, version: int) -> SignedRoot:
        """The signed root of ``version`` as added; raises VerificationError if the chain has none."""
        return self._signed[self._index(version)]

    def root_at(self, version: int) -> Root:
        """The verified root of ``version``; raises VerificationError if the chain has none."""
        return self._roots[self._index(version)]

    def _index(self, version: int) -> int:
        if type(version) is not int or not 1 <= version <= len(self._roots):
            raise VerificationError(f"no root version {version!r:.20} in this chain, which holds 1 to {len(self._roots)}")
        return version - 1

    def add(self, signed: SignedRoot) -> Root:
        """Verify ``signed`` and append it if it is the next version (spec 5.5).

        A root with the payload of one already held returns the held root.

        Raises:
            VerificationError: it does not verify, skips a version, or is another genesis.
            AuthorizationError: the wrong members, or too few, signed it.
            EquivocationError: a different valid root of a held version; ``evidence`` is (held, new).
        """
        v, head = signed.root.version, self.current.version
        if v > head + 1:
            raise VerificationError(f"root version {v} skips ahead: the chain is at version {head}")
        if v == head + 1:
            self._roots.append(verify_successor(self.current, signed))
            self._signed.append(signed)
            return self._roots[-1]
        held = self._signed[v - 1]
        if held.payload == signed.payload:
            return self._roots[v - 1]
        if v == 1:
            raise VerificationError(f"genesis {signed.root_hash.hex()} is not this chain's {held.root_hash.hex()}")
        verify_successor(self._roots[v - 2], signed)
        raise EquivocationError(f"two different valid roots for version {v}: {held.root_hash.hex()} and"
                                f" {signed.root_hash.hex()}", evidence=(held, signed))


def walk_prefix(genesis: SignedRoot, candidates: Iterable[SignedRoot],
                pinned_hash: bytes | None) -> tuple[GovernanceChain, list[tuple[SignedRoot, VerificationError]]]:
    """The longest chain that candidates in any order make from a pinned genesis, and those left out (spec 5.5).

    Copies of one payload are merged (the union of their signatures), then added by version and root hash,
    so the order given does not matter. A candidate that does not verify (or does not follow the chain
    built so far) is left out with its error, and the walk goes on; this is what a tool that shows drafts
    still waiting for signatures wants. :func:`walk` is the strict form.

    Raises:
        VerificationError: the genesis does not verify (against ``pinned_hash``).
        EquivocationError: two different valid roots for one version; ``evidence`` holds both SignedRoots.
    """
    chain = GovernanceChain(genesis, pinned_hash)
    merged: dict[bytes, SignedRoot] = {}
    for c in candidates:
        held = merged.get(c.root_hash)
        merged[c.root_hash] = c if held is None else replace(
            held, signatures=tuple(sorted(set(held.signatures) | set(c.signatures))))
    refused: list[tuple[SignedRoot, VerificationError]] = []
    for c in sorted(merged.values(), key=lambda s: (s.root.version, s.root_hash)):
        try:
            chain.add(c)
        except VerificationError as e:  # an EquivocationError is no VerificationError: it propagates
            refused.append((c, e))
    return chain, refused


def walk(genesis: SignedRoot, candidates: Iterable[SignedRoot], pinned_hash: bytes | None,
         now: int | None = None) -> GovernanceChain:
    """Build the chain from a pinned genesis and candidate roots in any order (spec 5.5).

    As :func:`walk_prefix`, but every candidate must verify: the first failure, in version order, is raised
    (equivocation within a version is reported even when an invalid candidate of that version is present
    too). When ``now`` is given, the resulting head must be unexpired.

    Raises:
        VerificationError: a candidate does not verify, a version is missing, or the head has expired.
        AuthorizationError: a candidate lacks the signatures it needs.
        EquivocationError: two different valid roots for one version; ``evidence`` holds both SignedRoots.
    """
    chain, refused = walk_prefix(genesis, candidates, pinned_hash)
    if refused:
        raise refused[0][1]
    if now is not None:
        chain.current_at(now)
    return chain
