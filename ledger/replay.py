"""Replay: rebuild the registry from a database and report every byte that does not check out.

Specified in specs/07-storage.md section 7.5. :func:`replay` starts from the
pinned genesis only, re-verifies every stored governance root, every entry
(decoding, rules, signatures), every leaf and tree hash, every checkpoint
(log signature, origin, size, root) and every cosignature, and returns a
:class:`ReplayReport` listing all problems, each a
:class:`~ledger.errors.TamperError` whose ``location`` names the row.

A node runs it at start-up (the report's ``state`` is the registry state a
:class:`~ledger.memberlog.MemberLog` needs); an auditor runs it on a copy.
Deciding what to do about a problem is the caller's business:
:meth:`ReplayReport.raise_on_problem` is the strict choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

from ledger import merkle
from ledger.checkpoint import Checkpoint, log_origin
from ledger.entries import UnverifiedEntry
from ledger.errors import ConflictError, DecodeError, MekongError, StorageError, TamperError, VerificationError
from ledger.evidencecheck import check_evidence
from ledger.finality import Finality, Witnesses, log_verifier, named_root
from ledger.governance import GovernanceChain
from ledger.memberlog import ParallelVerifier
from ledger.note import Note, NoteSignature, verify_note
from ledger.registry import RegistryState
from ledger.replaystate import StateReplay
from ledger.roots import SignedRoot
from ledger.storage import Storage

__all__ = ["ReplayReport", "replay"]

#: Entries applied to the registry per batch while replaying.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What :func:`replay` found (spec 7.5.2).

    Attributes:
        logs: member ids of the logs in the database, sorted.
        sizes: stored size of each log.
        verified: how many entries of each log passed every check and are in ``state``.
        roots: the root hash of each log at its stored size, from the trusted leaf hashes.
        entries_checked: entries decoded and applied (or refused).
        nodes_checked: stored tree hashes compared, leaf hashes included.
        checkpoints_checked: stored checkpoints examined.
        cosignatures_checked: stored cosignatures examined.
        problems: every finding, in the order found; empty when the database checks out.
        state: the registry state rebuilt from the verified entries.
        chain: the governance chain rebuilt from the genesis and the stored roots.
    """

    logs: tuple[str, ...]
    sizes: Mapping[str, int]
    verified: Mapping[str, int]
    roots: Mapping[str, bytes]
    entries_checked: int
    nodes_checked: int
    checkpoints_checked: int
    cosignatures_checked: int
    problems: tuple[TamperError, ...]
    state: RegistryState = field(repr=False, compare=False)
    chain: GovernanceChain = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when replay found no problem."""
        return not self.problems

    def raise_on_problem(self) -> None:
        """Raise the first problem, if any.

        Raises:
            TamperError: the first of ``problems``; the others stay in the report.
        """
        if self.problems:
            raise self.problems[0]


class _Findings:
    def __init__(self) -> None:
        self.problems: list[TamperError] = []

    def add(self, location: str, message: str, cause: BaseException | None = None) -> None:
        message = message.replace(f"{location}: ", "")  # the rules' messages start with it too
        err = TamperError(message, location)
        err.__cause__ = cause
        self.problems.append(err)


def _loc(log: str) -> str:
    return f"log {log}"


# --------------------------------------------------------------------------- step 1: roots


def _replay_roots(storage: Storage, genesis: SignedRoot, pinned_hash: bytes | None,
                  found: _Findings) -> GovernanceChain:
    chain = GovernanceChain.from_genesis(genesis, pinned_hash)  # the caller's input: raises
    candidates: list[tuple[int, SignedRoot]] = []
    for row in storage.roots():
        where = f"root version {row.version}"
        if hashlib.sha256(row.signed).digest() != row.digest:
            found.add(where, "stored bytes do not match their digest")
            continue
        try:
            signed = SignedRoot.from_cbor(row.signed)
        except DecodeError as e:
            found.add(where, f"does not decode: {e}", e)
            continue
        if signed.root.version != row.version:
            found.add(where, f"row holds a root of version {signed.root.version}")
            continue
        if row.version == 1 and signed.payload != genesis.payload:
            found.add(where, "stored genesis is not the pinned genesis")
            continue
        candidates.append((row.version, signed))
    for version, signed in sorted(candidates, key=lambda c: c[0]):
        try:
            chain.add(signed)
        except (VerificationError, ConflictError, DecodeError) as e:
            found.add(f"root version {version}", f"does not verify in the chain: {e}", e)
    return chain


# --------------------------------------------------------------------------- step 2: entries


def _apply_pending(state: RegistryState, log: str, pending: list[tuple[int, bytes]], verify: ParallelVerifier,
                   found: _Findings, state_map: StateReplay) -> int:
    """Decode and apply consecutive entries; return how many were applied, stopping at the first failure."""
    unverified = _apply_registry(state, log, pending, verify, found)
    state_map.add(pending[0][0], unverified, [raw for _, raw in pending[:len(unverified)]])
    return len(unverified)


def _apply_registry(state: RegistryState, log: str, pending: list[tuple[int, bytes]], verify: ParallelVerifier,
                    found: _Findings) -> list[UnverifiedEntry]:
    """The entries applied, in order: those before the first that does not decode or is refused."""
    start = pending[0][0]
    unverified = []
    for idx, raw in pending:
        try:
            unverified.append(UnverifiedEntry.decode(raw))
        except DecodeError as e:
            found.add(f"{_loc(log)} entry {idx}", f"does not decode: {e}", e)
            break
    try:
        if unverified:
            state.apply_batch(log, start, unverified, verify_signatures=verify)
        return unverified
    except MekongError:
        pass
    for i, u in enumerate(unverified):  # find the first failing entry by applying one at a time
        try:
            state.apply_batch(log, start + i, [u], verify_signatures=verify)
        except MekongError as e:
            found.add(f"{_loc(log)} entry {start + i}", f"refused: {e}", e)
            return unverified[:i]
    return unverified


def _apply_log(storage: Storage, log: str, state: RegistryState, verify: ParallelVerifier,
               found: _Findings, state_map: StateReplay) -> tuple[int, int, list[bytes], list[bytes]]:
    """Apply a log's entries; return (size, verified count, raw leaf hashes, stored leaf hashes)."""
    size = storage.size(log)
    computed: list[bytes] = []
    stored: list[bytes] = []
    verified = 0
    stopped = False
    pending: list[tuple[int, bytes]] = []

    def flush() -> None:
        nonlocal verified, stopped
        if not stopped and pending:
            verified += _apply_pending(state, log, pending, verify, found, state_map)
            if verified != pending[-1][0] + 1:
                stopped = True
        pending.clear()

    expect = rows = 0
    seen: dict[bytes, int] = {}
    for idx, raw, lh in storage.iter_entries(log):
        rows += 1
        if idx != expect:
            if expect == len(computed):  # the first gap; later rows are only counted
                found.add(f"{_loc(log)} entry {expect}", f"missing (next stored index is {idx})")
                stopped = True
            continue
        expect += 1
        computed.append(leaf := merkle.leaf_hash(raw))
        stored.append(lh)
        if leaf in seen and not stopped:  # spec 6.3.18: a log holds each entry once
            flush()
            found.add(f"{_loc(log)} entry {idx}", f"refused: spec 6.3.18: the same entry as entry {seen[leaf]}")
            stopped = True
        seen.setdefault(leaf, idx)
        pending.append((idx, raw))
        if len(pending) >= BATCH:
            flush()
    flush()
    if rows != size or expect != size:
        found.add(_loc(log), f"logs.size is {size}, {rows} entries are stored, {expect} of them consecutive from 0")
    return expect, verified, computed, stored


# --------------------------------------------------------------------------- steps 3-4: leaves, tree


def _check_tree(storage: Storage, log: str, verified: int, computed: list[bytes], stored: list[bytes],
                wanted: set[tuple[int, int]], found: _Findings) -> tuple[int, dict[tuple[int, int], bytes]]:
    """Compare stored hashes with recomputed ones; return (nodes checked, wanted nodes)."""
    level_hashes: list[bytes] = []
    for i, (c, s) in enumerate(zip(computed, stored)):
        if c == s:
            level_hashes.append(c)
        elif i < verified:  # the entry verified: trust its bytes
            found.add(f"{_loc(log)} tree node level 0 index {i}", "leaf hash does not match the entry")
            level_hashes.append(c)
        else:  # the entry failed: trust the stored leaf hash, blame the entry
            found.add(f"{_loc(log)} entry {i}", "bytes do not match the stored leaf hash")
            level_hashes.append(s)
    n = len(level_hashes)
    picked = {k: level_hashes[k[1]] for k in wanted if k[0] == 0 and k[1] < n}
    checked = n
    stored_nodes = storage.iter_nodes(log)
    nxt = next(stored_nodes, None)
    level = 0
    while len(level_hashes) >= 2:
        level += 1
        level_hashes = [merkle.node_hash(a, b) for a, b in zip(level_hashes[0::2], level_hashes[1::2])]
        for k in wanted:
            if k[0] == level and k[1] < len(level_hashes):
                picked[k] = level_hashes[k[1]]
        for idx, h in enumerate(level_hashes):
            while nxt is not None and (nxt[0], nxt[1]) < (level, idx):
                found.add(f"{_loc(log)} tree node level {nxt[0]} index {nxt[1]}", "stored but not a complete subtree")
                nxt = next(stored_nodes, None)
            where = f"{_loc(log)} tree node level {level} index {idx}"
            if nxt is not None and (nxt[0], nxt[1]) == (level, idx):
                checked += 1
                if nxt[2] != h:
                    found.add(where, "hash does not match the recomputed subtree")
                nxt = next(stored_nodes, None)
            else:
                found.add(where, "missing")
    for extra in _rest(nxt, stored_nodes):
        found.add(f"{_loc(log)} tree node level {extra[0]} index {extra[1]}", "stored but not a complete subtree")
    return checked, picked


def _rest(first: tuple[int, int, bytes] | None, it: Iterator[tuple[int, int, bytes]]) -> Iterator[Any]:
    if first is not None:
        yield first
    yield from it


def _reader(nodes: dict[tuple[int, int], bytes]) -> merkle.NodeReader:
    return lambda level, idx: nodes[(level, idx)]


def _root_nodes(size: int) -> list[tuple[int, int]]:
    # The complete subtrees whose hashes make the root of ``size`` (spec 3.2.3).
    out, pos = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, pos >> level))
            pos += 1 << level
    return out


# --------------------------------------------------------------------------- steps 5-6: checkpoints


def _replay_checkpoints(storage: Storage, log: str, network: str, chain: GovernanceChain, size: int,
                        roots: dict[int, bytes], found: _Findings, state_map: StateReplay) -> tuple[int, int]:
    """Steps 5 and 6 of spec 7.5.1 for one log; returns (checkpoints, cosignatures) examined."""
    texts: dict[int, tuple[Checkpoint, Witnesses]] = {}
    damaged: set[int] = set()
    n_cp = 0
    for cp_size, data in storage.checkpoints(log):
        n_cp += 1
        damaged.add(cp_size)
        try:
            texts[cp_size] = _replay_checkpoint(storage, data, log, network, chain, cp_size, size,
                                                  roots.get(cp_size))
            state_map.check_checkpoint(texts[cp_size][0])
            damaged.discard(cp_size)
        except (DecodeError, VerificationError) as e:
            found.add(f"{_loc(log)} checkpoint size {cp_size}", str(e), e)
    n_cs = 0
    valid: dict[int, dict[str, int]] = {}
    for c in storage.cosignatures(log):
        n_cs += 1
        ts = _judge_line(texts, damaged, c.size, c.witness, c.line,
                         f"{_loc(log)} checkpoint size {c.size} cosignature {c.witness}", found)
        if ts is not None:
            valid.setdefault(c.size, {})[c.witness] = ts
    # each witness's fresh line (7.1.10) is judged as a cosignature
    for witness, fresh_size, line in storage.fresh_rows(log):
        _judge_line(texts, damaged, fresh_size, witness, line, f"{_loc(log)} fresh line of {witness}", found)
    _replay_finals(storage, log, texts, valid, found)
    return n_cp, n_cs


def _judge_line(texts: Mapping[int, tuple[Checkpoint, Witnesses]], damaged: set[int], size: int, witness: str,
                line: bytes, where: str, found: _Findings) -> int | None:
    """Spec 7.5.1 step 6: a stored cosignature line cosigns the stored checkpoint of ``size`` as ``witness``;
    its timestamp, or None once reported (not at all if that checkpoint is damaged: it is reported once)."""
    if size in damaged:
        return None
    try:
        if size not in texts:
            raise VerificationError(f"cosigns size {size}, of which no checkpoint is stored within the log")
        cp, witnesses = texts[size]
        member, ts = witnesses.verify(cp, NoteSignature.parse_line(line.decode("utf-8")))
        if member != witness:
            raise VerificationError(f"not by the witness key of {witness} but of {member}")
        return ts
    except UnicodeDecodeError as e:
        found.add(where, "line is not UTF-8", e)
    except (DecodeError, VerificationError) as e:
        found.add(where, str(e), e)
    return None


def _replay_finals(storage: Storage, log: str, texts: Mapping[int, tuple[Checkpoint, Witnesses]],
                   valid: Mapping[int, Mapping[str, int]], found: _Findings) -> None:
    """Spec 7.5.1 step 7: every recorded final checkpoint is final by its own stored cosignatures."""
    for size, root_version, witnessed in storage.finals(log):
        where = f"{_loc(log)} final checkpoint size {size}"
        if size not in texts:
            found.add(where, "recorded as final, but no valid checkpoint of this size is stored")
            continue
        root = texts[size][1].root
        fin = Finality.of(log, size, root, valid.get(size, {}))
        if not fin.final or root.version != root_version or fin.witnessed_time != witnessed:
            found.add(where, f"recorded as final under root version {root_version} at {witnessed}, but its stored"
                      f" cosignatures give {len(fin.cosigners)} of {fin.quorum} under version {root.version},"
                      f" witnessed at {fin.witnessed_time}")


def _replay_checkpoint(storage: Storage, data: bytes, log: str, network: str, chain: GovernanceChain, cp_size: int, size: int,
                       recomputed: bytes | None) -> tuple[Checkpoint, Witnesses]:
    """One stored checkpoint (spec 7.5.1 step 5): the owner's only signature, under the root it names."""
    note = Note.parse(data)
    if len(note.signatures) != 1:
        raise VerificationError(f"holds {len(note.signatures)} signature lines, not only the log's")
    cp = Checkpoint.parse(note.text)
    if cp.origin != log_origin(network, log):
        raise VerificationError(f"origin {cp.origin!r} is not {log_origin(network, log)!r}")
    root = named_root(cp, chain)
    try:
        verify_note(note, (log_verifier(network, log, root),))
    except VerificationError as e:
        raise VerificationError(f"not signed by the node key of the log's owner in governance root version"
                                f" {root.version}") from e
    if cp.size != cp_size:
        raise VerificationError(f"note is for size {cp.size}")
    if cp_size > size:
        raise VerificationError(f"covers {cp_size} entries but the log holds {size}")
    if cp.root_hash != recomputed:
        raise VerificationError("root hash is not the recomputed root")
    # spec 7.4.1: it names the root its newest covered entry was made under (a damaged or missing entry is
    # reported in step 2 or 3, and cannot be judged here)
    if cp_size:
        try:
            at = UnverifiedEntry.decode(storage.read_entries(log, cp_size - 1, cp_size)[0]).root
        except (DecodeError, StorageError):
            at = root.version
        if at != root.version:
            raise VerificationError(f"names governance root version {root.version}, but the log writes under"
                                    f" version {at} at that size")
    elif root.version != 1:
        raise VerificationError(f"an empty log writes under version 1, not {root.version}")
    return cp, Witnesses(network, root)


# --------------------------------------------------------------------------- replay


def _replay_log(storage: Storage, log: str, network: str, chain: GovernanceChain, state: RegistryState,
                pool: ParallelVerifier, found: _Findings,
                ) -> tuple[int, bytes, tuple[int, int, int, int], Mapping[int, bytes]]:
    """Steps 2-8 for one log: (entries verified, recomputed root, (entries, nodes, checkpoints, cosignatures),
    recomputed state roots by size)."""
    state_map = StateReplay(storage, log)
    size, ok, computed, stored = _apply_log(storage, log, state, pool, found, state_map)
    cp_sizes = [s for s, _ in storage.checkpoints(log) if 0 < s <= size]
    wanted = {k for s in {*cp_sizes, size} for k in _root_nodes(s)}
    checked, picked = _check_tree(storage, log, ok, computed, stored, wanted, found)
    cp_roots = {s: merkle.tree_root(s, _reader(picked)) for s in {*cp_sizes, size}}
    cp_roots[0] = merkle.EMPTY_ROOT
    n_cp, n_cs = _replay_checkpoints(storage, log, network, chain, size, cp_roots, found, state_map)
    state_map.check_stored(storage, found.add)
    return ok, cp_roots[size], (size, checked, n_cp, n_cs), state_map.roots


def replay(storage: Storage, genesis: SignedRoot, pinned_hash: bytes | None = None,
           verifier: ParallelVerifier | None = None, now: int | None = None) -> ReplayReport:
    """Rebuild state from ``genesis`` and check every stored byte (spec 7.5).

    Args:
        storage: the database to check (read only).
        genesis: the genesis root the caller trusts.
        pinned_hash: its pinned hash, or None to trust ``genesis`` as given.
        verifier: the signature pool; by default a private 2-thread pool.
        now: when given, a head root that has expired at ``now`` is a problem (spec 5.4.3): the
            database has missed a newer root, or is being kept from one.

    Returns:
        The report; its ``problems`` list every finding. Problems in the
        database never raise.

    Raises:
        VerificationError: ``genesis`` does not verify (against ``pinned_hash``).
        StorageError: SQLite itself failed.
    """
    found = _Findings()
    chain = _replay_roots(storage, genesis, pinned_hash, found)
    head = chain.current
    if now is not None and head.expires is not None and now >= head.expires:
        found.add(f"root version {head.version}", f"the newest governance root expired at {head.expires}"
                  f" (now {now}): a newer root is missing")
    network = genesis.root.network
    state = RegistryState(chain)
    pool = verifier or ParallelVerifier()
    members = set(chain.members_ever)
    sizes: dict[str, int] = {}
    verified: dict[str, int] = {}
    roots: dict[str, bytes] = {}
    state_roots: dict[str, Mapping[int, bytes]] = {}
    counts = [0, 0, 0, 0]  # entries, nodes, checkpoints, cosignatures
    try:
        for log in storage.logs(every_table=True):
            if log not in members:
                found.add(_loc(log), "no root of the governance chain lists this member")
                continue
            sizes[log] = storage.size(log)
            verified[log], roots[log], n, state_roots[log] = _replay_log(storage, log, network, chain, state, pool,
                                                                         found)
            counts = [a + b for a, b in zip(counts, n)]
    finally:
        if verifier is None:
            pool.close()

    def evidence_roots(log: str, size: int) -> tuple[bytes | None, bytes | None]:  # step 9
        tree = None
        if 0 < size <= verified.get(log, 0):
            tree = merkle.tree_root(size, partial(storage.get_node, log))  # the nodes step 4 checked
        return tree, state_roots.get(log, {}).get(size)

    for where, problem in check_evidence(storage.evidence(), chain, evidence_roots):
        found.add(where, problem)
    n_entries, n_nodes, n_cp, n_cs = counts
    return ReplayReport(
        logs=tuple(sorted(sizes)), sizes=MappingProxyType(sizes), verified=MappingProxyType(verified),
        roots=MappingProxyType(roots), entries_checked=n_entries, nodes_checked=n_nodes,
        checkpoints_checked=n_cp, cosignatures_checked=n_cs, problems=tuple(found.problems),
        state=state, chain=chain)
