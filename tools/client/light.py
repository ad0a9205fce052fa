"""Fetch what a light verification of one credential needs, from any node, as a proof bundle.

The light verifier (specs/state.md S.7) asks a node for the state keys a credential needs (its issuer,
its key and any key it was rotated from, its anchor, its status; the verifying member's policy), the
first final checkpoint covering its anchor, and a consistency proof from it; everything is checked with
:mod:`credentials.bundle` before it is believed, and put in a :class:`~credentials.bundle.ProofBundle`
that can be verified again offline. Nodes are tried in turn; a node that is momentarily between
checkpoints (503) or whose newest checkpoint is not final yet is asked again for a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence

from credentials.bundle import (
    ExistenceProof,
    OpenedAnswer,
    ProofBundle,
    bundle_roots,
    key_issuers,
    open_answer,
    open_existence,
    required_document_keys,
    required_keys,
)
from credentials.steps import CLOCK_SKEW_SECONDS
from credentials.view import FinalCheckpoint, fresh_time
from ledger import merkle
from ledger.bodies import IssuerKeyRotate
from ledger.checkpoint import Checkpoint
from ledger.errors import DecodeError, MekongError, VerificationError
from ledger.finality import open_signed
from ledger.governance import GovernanceChain
from ledger.note import Note
from ledger.state import StateKey
from tools.client.http import ClientError, NodeClient, NodeRefused

__all__ = ["LightError", "fetch_bundle", "fetch_document_bundle", "log_answer"]

#: How long, in all, to keep asking one node whose state is between checkpoints or not final yet: one deadline
#: per node and verification, however many logs it is asked about, so a node that stalls every answer holds a
#: verifier up this long once, not once per log.
PATIENCE = 8.0
_MAX_ROUNDS = 8  # rotations followed back from a key
#: Seconds by which another node's final checkpoint of the same size must be fresher (spec 7.4.4) for an
#: answer to be passed over for it: honest nodes differ by up to a heartbeat interval, a frozen one by more
#: and more.
FRESHER_BY = 30


class LightError(MekongError):
    """No node gave a complete, verifiable answer; the message says what each one got wrong."""


def _rotated_from(answer: OpenedAnswer) -> set[StateKey]:
    # Keys a proven key was rotated from: the registry needs the old key to take in the rotation.
    wanted = set()
    for key, value in answer.values.items():
        if key.kind == "key" and value is not None:
            for index, _ in value.entries:
                body = answer.entries[index].body
                if isinstance(body, IssuerKeyRotate):
                    wanted.add(StateKey("key", (body.old_kid,)))
    return wanted - set(answer.values)


def _answer(client: NodeClient, chain: GovernanceChain, log: str, keys: list[StateKey],
            sleep: Callable[[float], None], deadline: float) -> tuple[bytes, OpenedAnswer]:
    while True:
        try:
            data = client.state(log, [k.encode() for k in keys])
            opened = open_answer(data, chain, log)
            if set(opened.values) != set(keys):
                raise VerificationError(f"the state answer of log {log} does not answer exactly the keys asked")
            return data, opened
        except NodeRefused as e:
            if e.status != 503 or time.monotonic() > deadline:
                raise
        except VerificationError as e:
            if "final needs" not in str(e) or time.monotonic() > deadline:
                raise
        sleep(0.25)


def log_answer(client: NodeClient, chain: GovernanceChain, log: str, keys: list[StateKey],
               sleep: Callable[[float], None], deadline: float | None = None) -> tuple[bytes, OpenedAnswer]:
    """``client``'s verified state answer for ``keys`` of ``log``, and the keys they were rotated from.

    A node whose state is between checkpoints (503) or not final yet is asked again until ``deadline``
    (``time.monotonic()``; by default :data:`PATIENCE` from now).

    Raises:
        ClientError, DecodeError, VerificationError: the node's answer, or its refusal, past the deadline.
        LightError: a key rotated more than a few times back.
    """
    deadline = time.monotonic() + PATIENCE if deadline is None else deadline
    asked = list(keys)
    for _ in range(_MAX_ROUNDS):
        data, opened = _answer(client, chain, log, asked, sleep, deadline)
        more = _rotated_from(opened)
        if not more:
            return data, opened
        asked += sorted(more, key=lambda k: k.encode())
    raise LightError(f"log {log}: a key was rotated more than {_MAX_ROUNDS} times back; use --full")


def _existence(client: NodeClient, log: str, answer: OpenedAnswer, digest: bytes) -> list[ExistenceProof]:
    value = answer.values.get(StateKey("anchor", (digest,)))
    if value is None:
        return []
    index = value.entries[0][0]  # the first anchor is the one that proves existence earliest
    newest = answer.checkpoint.size
    note = client.checkpoint(log, covering=index)
    size = None if note is None else Checkpoint.parse(Note.parse(note).text).size
    if note is None or size is None or size >= newest:  # the answer's own checkpoint is the one to use
        note, size = b"", newest
    consistency = client.consistency_proof(log, size, newest) if size != newest else []
    return [ExistenceProof(log, index, note, tuple(consistency))]


def _earliest(nodes: Sequence[NodeClient], asked: NodeClient, chain: GovernanceChain, answer: OpenedAnswer,
              proof: ExistenceProof, digests: Sequence[bytes]) -> ExistenceProof:
    # The anchor's existence is bounded by the first final checkpoint covering it; a node that serves a later
    # one makes the entry look younger than it is. Each other node is asked for its first covering checkpoint
    # (with a consistency proof to the answer's checkpoint): the smallest that checks out is kept.
    best, size = proof, open_existence(proof, chain, answer).size
    for other in nodes:
        if other is asked:
            continue
        for digest in digests:
            try:
                for found in _existence(other, proof.log, answer, digest):
                    if found.index == proof.index and (at := open_existence(found, chain, answer).size) < size:
                        best, size = found, at
            except (ClientError, DecodeError, VerificationError):
                continue
    return best


def _freshness(checkpoint: FinalCheckpoint, faulty: int) -> int:
    # How fresh a final checkpoint is (spec 7.4.4: its (f+1)-th newest cosignature time), 0 if unknown.
    return fresh_time(checkpoint, faulty, int(time.time()) + CLOCK_SKEW_SECONDS) or 0


def _finals_elsewhere(nodes: Sequence[NodeClient], asked: NodeClient | None, chain: GovernanceChain,
                      log: str) -> list[tuple[int, bytes, int, str]]:
    # (size, root hash, freshness, node URL) of the newest final checkpoint of ``log`` that each other node
    # shows (verified); nodes that show none, or nothing that verifies, are left out.
    out = []
    for other in nodes:
        if other is asked:
            continue
        try:
            note = other.checkpoint(log)
            if note is not None:
                _, cp, fin = open_signed(note, chain, log)
                if fin.final:
                    seen = FinalCheckpoint.of(log, cp.size, cp.root_hash, fin.cosigners)
                    out.append((cp.size, cp.root_hash, _freshness(seen, chain.current.faulty), other.url))
        except (ClientError, DecodeError, VerificationError):
            continue
    return out


def _check_against(client: NodeClient, log: str, held: FinalCheckpoint,
                   others: Sequence[tuple[int, bytes, int, str]]) -> None:
    # ``held`` (an answer's final checkpoint, from ``client``) against the final checkpoints other nodes show.
    # One of its size with another root is a split view: two histories both final, so more than f members
    # colluded and no answer from this ledger holds (LightError). Every smaller one must be a prefix of its
    # tree, proven by ``client`` (VerificationError, ClientError: this answer is not to be used).
    for size, root, _, url in others:
        if size == held.size and root != held.root_hash:
            raise LightError(f"SPLIT VIEW: log {log}: two final checkpoints of size {size} with different roots"
                             f" ({held.root_hash.hex()[:16]}... from {client.url} and {root.hex()[:16]}... from"
                             f" {url}): more than f members colluded; no answer from this ledger holds (verify"
                             " --full keeps the evidence)")
    for size, root in sorted({(size, root) for size, root, _, _ in others if size < held.size}):
        merkle.verify_consistency(size, held.size, client.consistency_proof(log, size, held.size), root,
                                  held.root_hash)


def _settled(nodes: Sequence[NodeClient], client: NodeClient, chain: GovernanceChain,
             answers: Mapping[str, tuple[bytes, OpenedAnswer]], existence: Sequence[ExistenceProof],
             digests: Sequence[bytes]) -> ProofBundle:
    # The bundle of the answers chosen, each existence proof the earliest any node given shows.
    if len(nodes) > 1:  # a node may serve a later covering checkpoint than the first
        existence = [_earliest(nodes, client, chain, answers[e.log][1], e, digests) for e in existence]
    return ProofBundle(chain.current.network, bundle_roots(chain), tuple((log, a[0]) for log, a in answers.items()),
                       tuple(existence))


def fetch_bundle(nodes: Sequence[NodeClient], chain: GovernanceChain, credential: bytes, as_member: str,
                 sleep: Callable[[float], None] = time.sleep) -> ProofBundle:
    """Fetch and check everything the light verification of ``credential`` needs.

    Nodes are asked in turn. An answer that does not verify, or that does not cover the keys asked, rules its
    node out. An answer that verifies but rests on an older final checkpoint than another node shows (a node
    that froze, or lags) is kept only as a fallback: the next node is asked, and the freshest answer wins.

    Raises:
        DecodeError: the credential does not decode (no node is asked).
        LightError: every node failed; the message names each node and what went wrong.
    """
    wanted, digest = required_keys(credential, as_member)
    issuer_log = next(iter(wanted))
    return _fetch(nodes, chain, wanted, [digest], lambda answers: issuer_log, sleep)


def fetch_document_bundle(nodes: Sequence[NodeClient], chain: GovernanceChain, signature: bytes, as_member: str,
                          sleep: Callable[[float], None] = time.sleep) -> ProofBundle:
    """Fetch and check everything the light verification of a document signature needs (specs/state.md S.7.4).

    Every log is asked for the signature's key id and anchor, then the log holding the key for its issuer's
    record; a signer credential's records as for :func:`fetch_bundle`. A log of which no node given shows a
    final checkpoint (a member that has written nothing yet) is left out, as a replica's view leaves it out.
    Nodes are tried as there; the freshness of the log holding the key is compared across them, and a node
    that holds none of the keys asked is kept only as a fallback.

    Raises:
        DecodeError: the signature does not decode (no node is asked).
        LightError: every node failed; the message names each node and what went wrong.
    """
    wanted, digests = required_document_keys(signature, as_member, chain.members_ever)
    return _fetch(nodes, chain, wanted, digests, _key_log, sleep, optional=set(chain.members_ever) - {as_member})


def _key_log(answers: Mapping[str, tuple[bytes, OpenedAnswer]]) -> str | None:
    # The first log whose state holds one of the keys asked: whose freshness decides between nodes.
    for log, (_, opened) in sorted(answers.items()):
        if any(k.kind == "key" and v is not None for k, v in opened.values.items()):
            return log
    return None


def _fetch(nodes: Sequence[NodeClient], chain: GovernanceChain, wanted: Mapping[str, list[StateKey]],
           digests: Sequence[bytes], main_log: Callable[[Mapping[str, tuple[bytes, OpenedAnswer]]], str | None],
           sleep: Callable[[float], None], optional: Collection[str] = ()) -> ProofBundle:
    failures = []
    # the best answer passed over, kept as a fallback: (size, freshness), its node, answers, existence proofs
    best: tuple[tuple[int, int], NodeClient, dict[str, tuple[bytes, OpenedAnswer]], list[ExistenceProof]] | None
    best = None
    # a log is left out only when no node given shows a final checkpoint of it: one node cannot hide a log
    empty = {log for log in optional if not any(_finals_elsewhere([c], None, chain, log) for c in nodes)}
    for client in nodes:
        deadline = time.monotonic() + PATIENCE  # one for all the logs this node is asked about
        try:
            answers = {log: log_answer(client, chain, log, keys, sleep, deadline) for log, keys in wanted.items()
                       if log not in empty}
            for log, (_, opened) in list(answers.items()):
                more = key_issuers(opened)  # the issuer of a key found, when it was not asked
                if more:
                    asked = [*opened.values, *sorted(more, key=lambda k: k.encode())]
                    answers[log] = log_answer(client, chain, log, asked, sleep, deadline)
            existence = [e for log, (_, opened) in answers.items() for digest in digests
                         for e in _existence(client, log, opened, digest)]
            for e in existence:
                open_existence(e, chain, answers[e.log][1])
        except (ClientError, DecodeError, VerificationError, LightError) as e:
            failures.append(f"{client.url}: {e}")
            continue
        main = main_log(answers)
        if len(nodes) == 1:
            return _settled(nodes, client, chain, answers, existence, digests)
        if main is None:  # nothing found here: another node may show what this one does not
            failures.append(f"{client.url}: holds none of the keys asked")
            best = best or ((0, 0), client, answers, existence)
            continue
        held = answers[main][1].checkpoint
        others = _finals_elsewhere(nodes, client, chain, main)
        try:
            _check_against(client, main, held, others)
        except (ClientError, DecodeError, VerificationError) as e:
            failures.append(f"{client.url}: its final checkpoint of log {main} (size {held.size}) is not shown to"
                            f" extend a final checkpoint another node shows: {e}")
            continue
        mine = (held.size, _freshness(held, chain.current.faulty))
        size, fresh = max(((size, fresh) for size, _, fresh, _ in others), default=(0, 0))
        if mine[0] > size or (mine[0] == size and mine[1] + FRESHER_BY >= fresh):
            return _settled(nodes, client, chain, answers, existence, digests)
        failures.append(f"{client.url}: its state of log {main} rests on size {mine[0]}, witnessed fresh at"
                        f" {mine[1]}; another node shows a final checkpoint of size {size}, fresh at {fresh}")
        if best is None or mine > best[0]:
            best = (mine, client, answers, existence)
    if best is not None:
        _, client, answers, existence = best
        return _settled(nodes, client, chain, answers, existence, digests)
    raise LightError("no node gave a verifiable answer: " + "; ".join(failures))
