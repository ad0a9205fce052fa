"""Syncing a verified replica from nodes while trusting none (the steps :meth:`tools.client.replica.Replica.sync` runs).

1. Fetch every governance root the nodes hold and add each one to the chain only if it verifies as the
   successor of the last (spec 5.4.2); a second valid root of a held version is kept as evidence.
2. Fetch each log's newest final checkpoint from every node and open it with
   :func:`ledger.finality.open_signed` (owner signature and cosignatures under the governance root it
   names); only final ones are candidates. Two verified checkpoints of one size with different roots are a
   split view, kept as evidence and reported.
3. Fetch the entries up to the largest candidate, check that the root recomputed from the stored tree plus
   the new entries equals the checkpoint's root *before* storing anything, then append them through
   :meth:`ledger.memberlog.MemberLog.append_replicated` (every entry checked under the rules, every
   signature verified), and store the checkpoint, its cosignatures and the oldest final checkpoints that
   cover the new entries (for proof-of-existence bounds).

Left to others: the replica directory, its lock and queries (:mod:`tools.client.replica`), HTTP
(:mod:`tools.client.http`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledger.checkpoint import Checkpoint
from ledger.errors import ConflictError, DecodeError, EquivocationError, StorageError, VerificationError
from ledger.evidencecheck import GOVERNANCE_EVIDENCE, note_key
from ledger.finality import Witnesses, count_cosignatures, log_verifier, open_signed, root_reference
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog, TargetTree
from ledger.note import Note, verify_note
from ledger.roots import SignedRoot
from ledger.storage import Storage
from tools.client.http import ENTRIES_PAGE, ClientError, NodeClient

__all__ = ["MAX_COVERING", "LogSync", "Progress", "SyncReport", "Syncer"]


#: Covering checkpoints fetched per log and sync for proof-of-existence bounds (:meth:`Syncer._add_covering`).
MAX_COVERING = 64

class Progress(Protocol):
    """Where a sync reports how many entries it fetches (a progress bar, or nothing)."""

    def start(self, total: int, label: str) -> None:
        """``total`` entries are about to be fetched."""

    def advance(self, n: int) -> None:
        """``n`` more entries were fetched and stored."""

    def finish(self) -> None:
        """Fetching is over."""


class _NoProgress:
    def start(self, total: int, label: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(slots=True)
class LogSync:
    """What a sync did to one log.

    Attributes:
        log: member id.
        before: entries held before.
        after: entries held after.
        final_size: size of the newest final checkpoint held after.
        source: the node the checkpoint and entries came from, if any.
        cosigners: members whose cosignatures on that checkpoint verified.
    """

    log: str
    before: int
    after: int
    final_size: int | None
    source: str | None = None
    cosigners: tuple[str, ...] = ()


@dataclass(slots=True)
class SyncReport:
    """What a sync found.

    Attributes:
        answered: nodes that answered.
        failed: node URL -> why it could not be used.
        roots_added: governance root versions newly verified and stored.
        logs: per log, what changed.
        problems: invalid data served by a node (refused, not stored).
        evidence: split views and equivocation: two verified, conflicting
            statements; more than ``f`` members misbehaved.
        withheld_root: the newest governance root version that a checkpoint cosigned by a quorum of the
            current root's members names, when no node served that root (a node may be withholding it).
        lagging: nodes that serve an older final checkpoint of a log than another node does (behind, or
            frozen to hide what came later); the newest verified checkpoint wins.
    """

    answered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    roots_added: list[int] = field(default_factory=list)
    logs: dict[str, LogSync] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    withheld_root: int | None = None
    lagging: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"answered": self.answered, "failed": self.failed, "roots_added": self.roots_added,
                "logs": {m: {"before": s.before, "after": s.after, "final_size": s.final_size, "source": s.source,
                             "cosigners": list(s.cosigners)} for m, s in sorted(self.logs.items())},
                "problems": self.problems, "evidence": self.evidence, "withheld_root": self.withheld_root,
                "lagging": self.lagging}


@dataclass(frozen=True, slots=True)
class _Candidate:
    client: NodeClient
    data: bytes
    checkpoint: Checkpoint
    cosigners: dict[str, int]


class Syncer:
    """One sync of a replica's logs: the replica's storage, chain and member logs, and the steps above.

    Args:
        storage: the replica's database.
        chain: its verified governance chain; roots that verify are added to it.
        logs: member id -> member log, kept current by ``open_logs`` when the chain grows.
        open_logs: opens member logs for members of a newly added root.
    """

    def __init__(self, storage: Storage, chain: GovernanceChain, logs: dict[str, MemberLog],
                 open_logs: Callable[[], None]) -> None:
        self.storage = storage
        self.chain = chain
        self.logs = logs
        self._open_logs = open_logs
        self._flagged: set[bytes] = set()  # checkpoints already kept as evidence in this sync

    def run(self, clients: Sequence[NodeClient], progress: Progress | None = None) -> SyncReport:
        """Sync every log of the current root from ``clients``.

        Raises:
            ClientError: no node answered at all.
            StorageError: the database failed.
        """
        progress = progress or _NoProgress()
        report = SyncReport()
        live = self._sync_roots(clients, report)
        if not live:
            raise ClientError(clients[0].url if clients else "", "no node answered: " + "; ".join(
                report.failed.values()) if report.failed else "no node given")
        self._open_logs()
        plans: list[tuple[MemberLog, list[_Candidate]]] = []
        for m in self.chain.members_ever:  # a removed member's log stays, frozen (spec 7.4.2)
            lg = self.logs[m]
            report.logs[m] = LogSync(m, lg.size, lg.size, self._final_size(m))
            candidates = self._candidates(lg, live, report)
            if candidates:
                plans.append((lg, candidates))
        total = sum(max(0, c[0].checkpoint.size - lg.size) for lg, c in plans)
        progress.start(2 * total, "fetching and verifying entries")
        try:
            for lg, candidates in plans:
                self._sync_log(lg, candidates, live, report, progress)
        finally:
            progress.finish()
        for m, s in report.logs.items():
            s.after, s.final_size = self.logs[m].size, self._final_size(m)
        return report

    def _final_size(self, log: str) -> int | None:
        return self.storage.latest_final(log)

    def _sync_roots(self, clients: Sequence[NodeClient], report: SyncReport) -> list[NodeClient]:
        live = []
        for c in clients:
            try:
                versions, _ = c.root_versions()
            except ClientError as e:
                report.failed[c.url] = str(e)
                continue
            live.append(c)
            report.answered.append(c.url)
            for v in sorted(set(versions)):
                if v < 2:
                    continue  # genesis is pinned; held versions are fetched again to notice equivocation
                try:
                    data = c.root(v)
                    signed = SignedRoot.from_cbor(data)
                    if signed.root.version != v:
                        raise DecodeError(f"asked for version {v}, got version {signed.root.version}")
                    added = v > self.chain.current.version
                    self.chain.add(signed)
                except EquivocationError as e:
                    msg = f"governance equivocation seen via node {c.url}: {e}"
                    report.evidence.append(msg)  # the other root stays out of the chain, kept as evidence
                    self.storage.put_evidence(GOVERNANCE_EVIDENCE, "root-equivocation", data, msg,
                                              self.chain.current.issued_at)
                    break
                except (ClientError, DecodeError, VerificationError) as e:
                    report.problems.append(f"node {c.url}: root version {v} refused: {e}")
                    break
                if added:
                    self.storage.put_root(v, signed.to_cbor())
                    report.roots_added.append(v)
        return live

    def _candidates(self, lg: MemberLog, live: Sequence[NodeClient], report: SyncReport) -> list[_Candidate]:
        """Every node's verified final checkpoint of ``lg``, largest first (:meth:`_sync_log` compares them)."""
        found: list[_Candidate] = []
        for c in live:
            try:
                data = c.checkpoint(lg.member_id)
            except ClientError as e:
                report.problems.append(f"log {lg.member_id}: {e}")
                continue
            if data is None:
                continue
            if self._names_a_withheld_root(lg.member_id, data, c, report):
                continue
            try:
                _, cp, fin = open_signed(data, self.chain, lg.member_id)
            except (DecodeError, VerificationError) as e:
                report.problems.append(f"node {c.url} serves an invalid checkpoint of log {lg.member_id}: {e}")
                continue
            if not fin.final:
                report.problems.append(f"node {c.url} serves a checkpoint of log {lg.member_id} (size {cp.size}) "
                                       f"with {len(fin.cosigners)} valid cosignatures; quorum is {fin.quorum}")
                continue
            found.append(_Candidate(c, data, cp, dict(fin.cosigners)))
        found.sort(key=lambda x: x.checkpoint.size, reverse=True)
        if found:
            newest = found[0]
            report.lagging += [f"node {x.client.url} serves log {lg.member_id} final at size {x.checkpoint.size},"
                               f" behind size {newest.checkpoint.size} at {newest.client.url}"
                               for x in found if x.checkpoint.size < newest.checkpoint.size]
        return found

    def _names_a_withheld_root(self, log: str, data: bytes, client: NodeClient, report: SyncReport) -> bool:
        """Whether the checkpoint names a governance root newer than any node served (spec 4.3.5).

        It is believed only when the current root's keys vouch for it: the owner's signature and a quorum of
        cosignatures by the current members' witness keys. Then a newer root exists and the verifier must not
        judge under the old one as if it were the newest (a node withholding roots is not trusted for it).
        """
        head = self.chain.current
        try:
            note = Note.parse(data)
            cp = Checkpoint.parse(note.text)
            version, _ = root_reference(cp)
        except DecodeError:
            return False  # open_signed reports it
        if version <= head.version:
            return False
        try:
            verify_note(note, (log_verifier(head.network, log, head),))
            times = count_cosignatures(cp, note.signatures, Witnesses(head.network, head))
        except (VerificationError, DecodeError):
            times = {}
        if len(times) >= head.quorum:
            report.withheld_root = max(version, report.withheld_root or 0)
            report.problems.append(f"node {client.url} serves a final checkpoint of log {log} made under governance"
                                   f" root version {version}, which no node served (the newest held is"
                                   f" {head.version}): a node may be withholding it")
        else:
            report.problems.append(f"node {client.url} serves a checkpoint of log {log} naming governance root"
                                   f" version {version}, unknown here and not vouched for by the current members")
        return True

    def _sync_log(self, lg: MemberLog, candidates: list[_Candidate], live: Sequence[NodeClient],
                  report: SyncReport, progress: Progress) -> None:
        """Sync to the largest candidate that works, and compare every candidate with every other.

        Every candidate is quorum-cosigned, so any two that cannot both be true are evidence, whatever the
        order the nodes were given in: two roots at one size, or a checkpoint whose root is not that of the
        verified entries at its size (checked once the entries are held, also for candidates whose own
        entries could not be fetched).
        """
        log = lg.member_id
        synced = False
        before = lg.size
        self._same_size_splits(lg, candidates, report)
        unsynced: list[_Candidate] = []
        for cand in candidates:  # largest first
            cp = cand.checkpoint
            try:
                if cp.size > lg.size:
                    self._fetch_and_append(lg, cand, live, report, progress)
                    self._add_covering(lg, cand, before, report)
                elif lg.root_hash(cp.size) != cp.root_hash:
                    self._split_view(lg, cand, report, report.logs[log].source or "an earlier sync")
                    continue
                lg.add_checkpoint(cand.data)
            except ConflictError as e:
                if cand.data not in self._flagged:
                    self._flagged.add(cand.data)
                    report.evidence.append(f"SPLIT VIEW: {e}")
                    self.storage.put_evidence(log, "split-view", cand.data, str(e), max(cand.cosigners.values()),
                                              note_key(cand.data))
                continue
            except (ClientError, DecodeError, VerificationError, StorageError) as e:
                report.problems.append(f"log {log}: could not sync to size {cp.size} from {cand.client.url}: {e}")
                unsynced.append(cand)
                continue
            if not synced:
                s = report.logs[log]
                s.source, s.cosigners = cand.client.url, tuple(sorted(cand.cosigners))
                synced = True
        for cand in unsynced:  # a final checkpoint whose entries were not served, against those that were
            if cand.checkpoint.size <= lg.size and lg.root_hash(cand.checkpoint.size) != cand.checkpoint.root_hash:
                self._split_view(lg, cand, report, report.logs[log].source or "an earlier sync")

    def _same_size_splits(self, lg: MemberLog, candidates: list[_Candidate], report: SyncReport) -> None:
        seen: dict[tuple[int, bytes], _Candidate] = {}
        for cand in candidates:
            cp = cand.checkpoint
            other = next((c for (size, root), c in seen.items() if size == cp.size and root != cp.root_hash), None)
            if other is not None:
                self._split_view(lg, cand, report, other.client.url)
            seen.setdefault((cp.size, cp.root_hash), cand)

    def _split_view(self, lg: MemberLog, cand: _Candidate, report: SyncReport, held: str) -> None:
        cp = cand.checkpoint
        msg = (f"log {lg.member_id}: node {cand.client.url} serves a final checkpoint of size {cp.size} whose root "
               f"differs from that of the final checkpoint or verified entries of that size from {held}")
        if cand.data not in self._flagged:
            self._flagged.add(cand.data)
            report.evidence.append(f"SPLIT VIEW: {msg}")
            self.storage.put_evidence(lg.member_id, "split-view", cand.data, msg, max(cand.cosigners.values()),
                                      note_key(cand.data))

    def _add_covering(self, lg: MemberLog, cand: _Candidate, start: int, report: SyncReport) -> None:
        """Store the oldest final checkpoints covering the new entries ``start..`` (specs/api.md A.7.2).

        A replica that syncs late would otherwise know only the newest checkpoint, whose witnessed
        time is a later proof-of-existence bound than the network can prove for older entries.
        Each checkpoint is verified like the newest one (owner signature, quorum, root of the
        verified entries); at most :data:`MAX_COVERING` are fetched per log and sync.
        """
        at, end = start, cand.checkpoint.size
        for _ in range(MAX_COVERING):
            if at >= end:
                return
            try:
                data = cand.client.checkpoint(lg.member_id, covering=at)
                if data is None:
                    return
                _, cp, fin = open_signed(data, self.chain, lg.member_id)
                if not at < cp.size <= end or not fin.final:
                    raise VerificationError(f"node {cand.client.url} answered a checkpoint of size {cp.size} "
                                            f"with {len(fin.cosigners)} cosigners for entry {at}")
                if cp.size < end:
                    lg.add_checkpoint(data)
            except (ClientError, DecodeError, VerificationError, ConflictError, StorageError) as e:
                report.problems.append(f"log {lg.member_id}: no covering checkpoint for entry {at}: {e}")
                return
            at = cp.size

    def _fetch_and_append(self, lg: MemberLog, cand: _Candidate, live: Sequence[NodeClient],
                          report: SyncReport, progress: Progress) -> None:
        # Page by page, each stored only if it leads to the checkpoint's root (spec 7.3 step 3, the serving
        # node's consistency proof): memory does not grow with the range, and a node whose page is refused
        # is passed over for the next.
        log, end, root = lg.member_id, cand.checkpoint.size, cand.checkpoint.root_hash
        sources = [cand.client] + [c for c in live if c is not cand.client]
        while lg.size < end:
            at = lg.size
            errors: list[str] = []
            for c in sources:
                try:
                    page = c.entries(log, at, min(end, at + ENTRIES_PAGE))
                    upto = at + len(page)
                    proof = tuple(c.consistency_proof(log, upto, end)) if upto < end else ()
                    lg.append_replicated(page, at, TargetTree(end, root, proof))
                    progress.advance(2 * len(page))  # fetched and verified
                    report.problems += [f"log {log}: passed over {e}" for e in errors]
                    break
                except (ClientError, DecodeError, VerificationError) as e:
                    errors.append(f"{c.url}: {e}")
            else:
                raise ClientError(cand.client.url, f"entries {at}.. of log {log}: no node served those of the final"
                                                   f" checkpoint of size {end}: " + "; ".join(errors))
