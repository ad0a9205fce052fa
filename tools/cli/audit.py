"""``mekong audit``: replay a whole ledger from its genesis, and compare what different nodes show.

``audit replay`` re-verifies every root, entry, tree hash, checkpoint and
cosignature of a database (:func:`ledger.replay.replay`): a node's database
(``--db``), or a fresh replica synced from nodes (``--node``). ``audit compare``
fetches every log's final checkpoint from several nodes, verifies each, and
looks for split views: two roots at one size, or checkpoints that no
consistency proof joins (:func:`ledger.merkle.verify_consistency`).
Exit codes: 0 nothing wrong, 1 problems found, 3 usage, 4 could not check.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import ConflictError, DecodeError, VerificationError
from ledger.evidence import SplitViewEvidence, verify_split_view
from ledger.finality import open_signed
from ledger.governance import GovernanceChain, walk
from ledger.replay import ReplayReport, replay
from ledger.roots import SignedRoot
from ledger.storage import Storage
from tools.cli.exportdb import export_ledger
from tools.cli.roots import load_signed_root
from tools.cli.util import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TOOL,
    ClickProgress,
    HashParam,
    MemberParam,
    ToolError,
    default_replica_dir,
    emit,
    json_option,
    now,
    read_bytes,
    write_bytes,
)
from tools.client.evidence import export_split_view
from tools.client.http import ClientError, NodeClient, fetch_roots
from tools.client.replica import DB_FILE, Replica

__all__ = ["audit"]

_EPILOG = ("\b\nExit codes:\n  0  nothing wrong found\n  1  problems found (tampering, split views, invalid data)\n"
           "  3  usage error\n  4  could not check (node unreachable, unreadable database)")


@click.group()
def audit() -> None:
    """Check a ledger end to end (auditors)."""


def _report_doc(report: Any) -> dict[str, Any]:
    return {"ok": report.ok, "logs": {m: {"size": report.sizes[m], "verified": report.verified.get(m, 0),
                                          "root": report.roots[m].hex() if m in report.roots else None}
                                      for m in report.logs},
            "root_version": report.chain.current.version, "entries_checked": report.entries_checked,
            "nodes_checked": report.nodes_checked, "checkpoints_checked": report.checkpoints_checked,
            "cosignatures_checked": report.cosignatures_checked,
            "problems": [{"location": p.location, "message": str(p)} for p in report.problems]}


def _report_lines(doc: dict[str, Any], source: str) -> list[str]:
    lines = [f"replayed {source} from the pinned genesis: governance root version {doc['root_version']}"]
    for m, lg in sorted(doc["logs"].items()):
        lines.append(f"  log {m}: {lg['verified']} of {lg['size']} entries verified, root {lg['root'] or '-'}")
    lines.append(f"  checked {doc['entries_checked']} entries, {doc['nodes_checked']} tree hashes, "
                 f"{doc['checkpoints_checked']} checkpoints, {doc['cosignatures_checked']} cosignatures")
    if doc["problems"]:
        lines.append(f"PROBLEMS ({len(doc['problems'])}):")
        lines += [f"  {p['message']}" for p in doc["problems"]]
    else:
        lines.append("OK: every stored byte checks out")
    return lines


@audit.command("replay", epilog=_EPILOG)
@click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path),
              help="A node's database file (audit a copy; the node should not be writing to it).")
@click.option("--node", "nodes", multiple=True, metavar="URL",
              help="Sync a fresh replica from this node (repeat for several) and replay it.")
@click.option("--replica", "replica_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the synced replica in DIR (default: a temporary directory, deleted afterwards).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file you trust.")
@click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN", help="The genesis hash you trust.")
@json_option
@click.pass_context
def replay_command(ctx: click.Context, db: Path | None, nodes: tuple[str, ...], replica_dir: Path | None,
                   genesis_file: Path | None, pin: bytes | None, as_json: bool) -> None:
    """Re-verify a whole ledger from its genesis: every root, entry, hash, checkpoint, cosignature.

    With --db, the genesis is --genesis FILE (checked against --pin if given) or the
    database's own version 1, which must then hash to --pin. With --node, a fresh
    replica is synced from the nodes first (in a temporary directory unless --replica)
    and replayed.
    """
    if db is None and not nodes:
        raise click.UsageError("give --db FILE, --node URL, or both (a database checked against the network)")
    if db is not None:
        with _replayed(db, genesis_file, pin, as_json) as (storage, genesis, report):
            missing = _behind_the_network(storage, report, nodes, genesis, pin) if nodes else []
        doc = _report_doc(report)
        doc["missing"] = missing
        lines = _report_lines(doc, str(db)) + [f"MISSING: {m}" for m in missing]
        if missing and report.ok:
            lines.append(f"the database is behind or missing what the network proves ({len(missing)} finding(s))")
        emit(as_json, doc, lines)
        ctx.exit(EXIT_OK if report.ok and not missing else EXIT_FAILED)
    trusted = load_signed_root(genesis_file, "genesis") if genesis_file else None
    clients = [NodeClient(u) for u in nodes]
    with tempfile.TemporaryDirectory(prefix="mekong-audit-") as tmp:
        directory = replica_dir or Path(tmp) / "replica"
        with Replica.bootstrap(directory, clients, pin, trusted) as replica:
            sync = replica.sync(clients, now(), ClickProgress(as_json))
        storage = Storage.open(directory / DB_FILE)
        try:
            if not as_json:
                click.echo("replaying the replica ...", err=True)
            report = replay(storage, replica.genesis, replica.pin, now=now())
        finally:
            storage.close()
    doc = _report_doc(report)
    doc["sync"] = sync.to_dict()
    lines = _report_lines(doc, "a replica synced from " + ", ".join(sync.answered))
    lines += [f"warning: {p}" for p in sync.problems] + [f"EVIDENCE: {e}" for e in sync.evidence]
    emit(as_json, doc, lines)
    ctx.exit(EXIT_OK if report.ok and not sync.evidence and not sync.problems else EXIT_FAILED)


@audit.group("evidence")
def evidence_group() -> None:
    """Export split-view evidence a replica found, and verify such a file offline (spec 7.6)."""


@evidence_group.command("export")
@click.option("--replica", "replica_dir", type=click.Path(file_okay=False, path_type=Path), envvar="MEKONG_REPLICA",
              help="The replica that found it [default: ~/.config/mekong/replica or $MEKONG_REPLICA].")
@click.option("--log", "log", type=MemberParam(), help="Only evidence about this member's log.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Evidence file to write.")
def evidence_export(replica_dir: Path | None, log: str | None, out: Path) -> None:
    """Write the two final checkpoints of a split view (and the proof joining them) as one CBOR file."""
    with Replica.open(replica_dir or default_replica_dir()) as replica:
        evidence = export_split_view(replica, log)
    write_bytes(out, evidence.to_cbor())
    click.echo(f"wrote {out}: split view of log {evidence.log}; anyone can check it with "
               f"'mekong audit evidence verify {out} --genesis GENESIS --pin HASH'")


@evidence_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genesis", "genesis_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file you trust.")
@click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN", help="The genesis hash you trust.")
@click.pass_context
def evidence_verify(ctx: click.Context, file: Path, genesis_file: Path, pin: bytes | None) -> None:
    """Check an evidence file offline: exit 0 when it proves a split view, 1 when it proves nothing."""
    genesis = load_signed_root(genesis_file, "genesis")
    try:
        proven = verify_split_view(SplitViewEvidence.from_cbor(read_bytes(file, "evidence file")), genesis, pin)
    except (DecodeError, VerificationError) as e:
        click.echo(f"NOT PROVEN: {e}")
        ctx.exit(EXIT_FAILED)
    click.echo(f"PROVEN: {proven}")


def _behind_the_network(storage: Storage, report: Any, nodes: tuple[str, ...], genesis: SignedRoot,
                        pin: bytes | None) -> list[str]:
    """What the nodes prove existed that the replayed database lacks (Trust II item 6).

    Replay alone cannot see rows deleted cleanly from the end (the newest entries, checkpoints, their
    cosignatures, a governance root): the database is then consistent, only shorter. Every final checkpoint
    the nodes serve is verified under the network's chain; the database must hold its entries with the same
    root and hold it final, and every root of the chain.
    """
    problems: list[str] = []
    unreachable: dict[str, str] = {}
    chain, live = _chain_of([NodeClient(u) for u in nodes], genesis, pin or genesis.root_hash, problems,
                            unreachable)
    out = [f"node {u} unreachable: {e}" for u, e in unreachable.items()] + problems
    held_version = report.chain.current.version
    if chain.current.version > held_version:
        out.append(f"governance roots {held_version + 1} to {chain.current.version} exist, the database holds up"
                   f" to version {held_version}")
    for m in chain.members_ever:
        best = None
        for c in live:
            try:
                data = c.checkpoint(m)
                if data is None:
                    continue
                _, cp, fin = open_signed(data, chain, m)
            except (ClientError, DecodeError, VerificationError) as e:
                out.append(f"node {c.url}: log {m}: {e}")
                continue
            if fin.final and (best is None or cp.size > best[1].size):
                best = (c.url, cp)
        if best is None:
            continue
        url, cp = best
        size = storage.size(m)
        if size < cp.size:
            out.append(f"log {m}: the database holds {size} entries; {url} proves {cp.size} final")
        elif merkle.tree_root(cp.size, lambda lv, i, m=m: storage.get_node(m, lv, i)) != cp.root_hash:  # type: ignore[misc]
            out.append(f"log {m}: the database's root at size {cp.size} is not the final one {url} proves")
        elif (storage.latest_final(m) or 0) < cp.size:
            out.append(f"log {m}: the database lacks the final checkpoint of size {cp.size} ({url} proves it):"
                       " its checkpoint or cosignatures are missing")
    return out


@audit.command("export", epilog=_EPILOG)
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A node's database file, or a replica's replica.sqlite (a copy nobody is writing to).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file you trust.")
@click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN", help="The genesis hash you trust.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The SQLite file to write (must not exist).")
@json_option
@click.pass_context
def export_command(ctx: click.Context, db: Path, genesis_file: Path | None, pin: bytes | None, out: Path,
                   as_json: bool) -> None:
    """Replay a database, then export the registry and the logs' metadata as plain SQL tables.

    The export (specs/07-storage.md 7.7) holds issuers, keys, credentials and their
    status history, anchors, policies, checkpoints, cosignatures, finals and evidence,
    with foreign keys and indexes, each row naming the entry it comes from; open it
    with Datasette or any SQL tool. Only a database that replays cleanly is exported.
    """
    if out.exists():
        raise ToolError(f"{out} exists; give a new file to export to")
    with _replayed(db, genesis_file, pin, as_json) as (storage, _, report):
        if not report.ok:
            emit(as_json, _report_doc(report), _report_lines(_report_doc(report), str(db))
                 + ["NOT EXPORTED: the database does not replay cleanly"])
            ctx.exit(EXIT_FAILED)
        counts = export_ledger(storage, report.chain, out)
    emit(as_json, {"out": str(out), "tables": counts},
         [f"exported {db} (replayed: every stored byte checks out) to {out}:"]
         + [f"  {table}: {n} rows" for table, n in counts.items()])


@contextmanager
def _replayed(db: Path, genesis_file: Path | None, pin: bytes | None,
              quiet: bool) -> Iterator[tuple[Storage, SignedRoot, ReplayReport]]:
    """Open ``db`` and replay it from the trusted genesis; the storage stays open inside the block."""
    if not db.is_file():
        raise ToolError(f"no database file {db}")
    storage = Storage.open(db)
    try:
        genesis = _db_genesis(storage, genesis_file, pin)
        if not quiet:
            click.echo(f"replaying {db} ...", err=True)
        yield storage, genesis, replay(storage, genesis, pin, now=now())
    finally:
        storage.close()


def _db_genesis(storage: Storage, genesis_file: Path | None, pin: bytes | None) -> SignedRoot:
    if genesis_file is not None:
        return load_signed_root(genesis_file, "genesis")
    if pin is None:
        raise click.UsageError("say which genesis you trust: --genesis FILE or --pin HASH")
    for row in storage.roots(1):
        try:
            signed = SignedRoot.from_cbor(row.signed)
        except DecodeError:
            continue
        if signed.root_hash == pin:
            return signed
    raise ToolError(f"the database holds no genesis with the pinned hash {pin.hex()}")


# ---------------------------------------------------------------------------- compare


@dataclass(frozen=True, slots=True)
class _Seen:
    node: str
    checkpoint: Checkpoint
    cosigners: tuple[str, ...]
    final: bool


def _chain_of(clients: list[NodeClient], genesis: SignedRoot | None, pin: bytes | None,
              problems: list[str], unreachable: dict[str, str]) -> tuple[GovernanceChain, list[NodeClient]]:
    fetched: list[SignedRoot] = []
    live = []
    genesis_seen: SignedRoot | None = genesis
    for c in clients:
        try:
            first, rest = fetch_roots(c)
        except ClientError as e:
            unreachable[c.url] = str(e)
            continue
        live.append(c)
        if pin is not None and first.root_hash != pin:
            problems.append(f"node {c.url} serves genesis {first.root_hash.hex()}, not the pinned {pin.hex()}")
            continue
        if genesis_seen is None:
            genesis_seen = first
        elif first.payload != genesis_seen.payload:
            problems.append(f"node {c.url} serves genesis {first.root_hash.hex()}, others "
                            f"{genesis_seen.root_hash.hex()}")
            continue
        fetched += rest
    if genesis_seen is None:
        raise ToolError("no node served a usable genesis: " + "; ".join([*unreachable.values(), *problems]))
    try:
        chain = walk(genesis_seen, fetched, pin)
    except ConflictError as e:
        problems.append(f"GOVERNANCE EQUIVOCATION: {e}")
        chain = GovernanceChain(genesis_seen, pin)
    except VerificationError as e:
        problems.append(f"a governance root served does not verify: {e}")
        chain = GovernanceChain(genesis_seen, pin)
    return chain, live


@audit.command("compare", epilog=_EPILOG)
@click.option("--node", "nodes", multiple=True, required=True, metavar="URL", help="A node to ask (repeat).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file you trust.")
@click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN", help="The genesis hash you trust.")
@json_option
@click.pass_context
def compare(ctx: click.Context, nodes: tuple[str, ...], genesis_file: Path | None, pin: bytes | None,
            as_json: bool) -> None:
    """Ask several nodes for every log's final checkpoint and look for split views.

    Each checkpoint is verified (owner signature, member cosignatures, quorum). Two
    different roots at one size, or two sizes whose roots no consistency proof joins,
    are evidence that the log showed different histories to different nodes.
    """
    if len(nodes) < 2:
        raise click.UsageError("give at least two --node URLs to compare")
    clients = [NodeClient(u) for u in nodes]
    problems: list[str] = []
    evidence: list[str] = []
    unreachable: dict[str, str] = {}
    genesis = load_signed_root(genesis_file, "genesis") if genesis_file else None
    chain, live = _chain_of(clients, genesis, pin, problems, unreachable)
    root = chain.current
    logs: dict[str, list[_Seen]] = {}
    for m in chain.members_ever:
        seen = logs[m] = []
        for c in live:
            try:
                data = c.checkpoint(m)
            except ClientError as e:
                problems.append(f"log {m}: {e}")
                continue
            if data is None:
                continue
            try:
                _, cp, fin = open_signed(data, chain, m)
            except (DecodeError, VerificationError) as e:
                problems.append(f"node {c.url} serves an invalid checkpoint of log {m}: {e}")
                continue
            seen.append(_Seen(c.url, cp, tuple(sorted(fin.cosigners)), fin.final))
            if not fin.final:
                problems.append(f"node {c.url} serves a checkpoint of log {m} (size {cp.size}) with "
                                f"{len(fin.cosigners)} member cosignatures; quorum is {fin.quorum}")
        evidence += _split_views(m, seen, live)
    lagging = [x for m, seen in sorted(logs.items()) for x in _lagging(m, seen)]
    doc = {"nodes": [c.url for c in live], "unreachable": unreachable, "root_version": root.version,
           "lagging": lagging,
           "logs": {m: [{"node": s.node, "size": s.checkpoint.size, "root": s.checkpoint.root_hash.hex(),
                         "cosigners": list(s.cosigners), "final": s.final} for s in seen]
                    for m, seen in logs.items()},
           "split_views": evidence, "problems": problems}
    lines = [f"compared {len(live)} node(s) under governance root version {root.version}"]
    for m, seen in sorted(logs.items()):
        sizes = ", ".join(f"{s.checkpoint.size}@{s.node}" for s in seen) or "no final checkpoint anywhere"
        lines.append(f"  log {m}: {sizes}")
    lines += [f"unreachable: {u}: {e}" for u, e in unreachable.items()] + [f"lagging: {x}" for x in lagging]
    lines += [f"problem: {p}" for p in problems] + [f"SPLIT VIEW: {e}" for e in evidence]
    if not evidence and not problems:
        lines.append("OK: every node " + ("that answered " if unreachable else "") +
                     "shows one consistent history of every log")
    emit(as_json, doc, lines)
    if evidence or problems:
        ctx.exit(EXIT_FAILED)
    ctx.exit(EXIT_TOOL if unreachable else EXIT_OK)


def _lagging(log: str, seen: list[_Seen]) -> list[str]:
    """The nodes serving an older final checkpoint of ``log`` than another node: behind, or frozen."""
    final = [s for s in seen if s.final]
    if not final:
        return []
    top = max(final, key=lambda s: s.checkpoint.size)
    return [f"node {s.node} serves log {log} final at size {s.checkpoint.size}, behind size {top.checkpoint.size}"
            f" at {top.node}" for s in final if s.checkpoint.size < top.checkpoint.size]


def _split_views(log: str, seen: list[_Seen], live: list[NodeClient]) -> list[str]:
    """Evidence that the checkpoints of ``log`` in ``seen`` are not all one history."""
    out = []
    ordered = sorted(seen, key=lambda s: s.checkpoint.size)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            ca, cb = a.checkpoint, b.checkpoint
            if ca.size == cb.size:
                if ca.root_hash != cb.root_hash:
                    out.append(f"log {log} at size {ca.size}: {a.node} shows root {ca.root_hash.hex()}, "
                               f"{b.node} shows {cb.root_hash.hex()}")
                continue
            if ca.size == 0:
                continue
            if not _consistent(log, ca, cb, [c for c in live if c.url == b.node] + live):
                out.append(f"log {log}: the checkpoint of size {ca.size} at {a.node} and of size {cb.size} at "
                           f"{b.node} are not consistent (no valid consistency proof)")
    return out


def _consistent(log: str, small: Checkpoint, large: Checkpoint, sources: list[NodeClient]) -> bool:
    """Whether some node gives a consistency proof from ``small`` to ``large`` that verifies."""
    for c in sources:
        try:
            proof = c.consistency_proof(log, small.size, large.size)
            merkle.verify_consistency(small.size, large.size, proof, small.root_hash, large.root_hash)
            return True
        except (ClientError, VerificationError):
            continue
    return False
