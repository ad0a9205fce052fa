"""``mekong verify`` and ``mekong verify-signature``: check a credential or a signed document against a
local verified replica of the ledger, trusting no node.

The replica (:mod:`tools.client.replica`) is synced from the nodes given (or those of
the last sync) before each verification unless ``--offline``; then
:func:`credentials.verify.verify` judges the credential against the replica's
final state and the verifier's policy. The exit code is the verdict: 0
TOTAL-PASSED, 1 TOTAL-FAILED, 2 INDETERMINATE (3 usage, 4 tool errors).
:func:`verification_options` and :func:`run_verification` serve both commands.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from credentials.bundle import ProofBundle
from credentials.docsig import SignedDocument
from credentials.report import INDETERMINATE, TOTAL_FAILED, TOTAL_PASSED
from credentials.steps import VerificationPolicy
from credentials.verify import verify as verify_subject
from credentials.view import fresh_time
from ledger.bodies import LOAS
from ledger.errors import MekongError
from tools.cli.lightverify import fetch_light, open_bundle_file
from tools.cli.roots import load_signed_root
from tools.cli.util import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INDETERMINATE,
    EXIT_OK,
    ClickProgress,
    HashParam,
    MemberParam,
    TimeParam,
    ToolError,
    default_replica_dir,
    now,
    read_bytes,
)
from tools.client.http import ClientError, NodeClient
from tools.client.replica import Replica, ReplicaError
from tools.client.sync import SyncReport

__all__ = ["ago", "open_replica", "run_verification", "verification_options", "verify",
           "verify_signature"]

F = TypeVar("F", bound=Callable[..., Any])
_EXIT = {TOTAL_PASSED: EXIT_OK, TOTAL_FAILED: EXIT_FAILED, INDETERMINATE: EXIT_INDETERMINATE}
#: Default oldest acceptable final checkpoint when syncing from nodes: a few heartbeats (spec 7.4.4).
ONLINE_MAX_AGE = 120
_POLICY_KEYS = {"as_member", "min_loa", "max_age_seconds", "document_types", "clock_skew_seconds"}


def ago(seconds: int | None) -> str:
    """A rough age for people: ``"45 s"``, ``"12 min"``, ``"5 h"``, ``"3 d"``."""
    if seconds is None:
        return "unknown age"
    for unit, size, below in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800)):
        if seconds < below:
            return f"{seconds // size} {unit}"
    return f"{seconds // 86400} d"


def _when(t: int | None) -> str:
    if t is None:
        return "never"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def replica_options(f: F) -> F:
    """``--node``, ``--replica``, ``--genesis``, ``--pin``: where the verified replica comes from."""
    f = click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN",
                     help="The genesis hash you trust (needed to start a new replica).")(f)
    f = click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="The genesis file you trust (else fetched from a node and checked against --pin).")(f)
    f = click.option("--replica", "replica_dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="MEKONG_REPLICA", help="Replica directory [default: ~/.config/mekong/replica "
                     "or $MEKONG_REPLICA].")(f)
    f = click.option("--node", "nodes", multiple=True, metavar="URL",
                     help="A node to sync from (repeat for several; default: those of the last sync). "
                          "Nodes are not trusted: everything is verified.")(f)
    return f


def verification_options(f: F) -> F:
    """The options of ``verify`` and ``verify-signature``."""
    f = click.option("--now", "at", type=TimeParam(), hidden=True, help="Verify as of this time (tests).")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")(f)
    f = click.option("--offline", is_flag=True,
                     help="Do not contact any node: use the replica as it is, and show its age.")(f)
    f = click.option("--max-age", type=click.IntRange(min=0), metavar="SECONDS",
                     help="Oldest acceptable final checkpoint (by its (f+1)-th newest cosignature) before the "
                          f"answer is INDETERMINATE/TRY_LATER (default {ONLINE_MAX_AGE} after a sync, 86400 "
                          "with --offline).")(f)
    f = click.option("--min-loa", type=click.Choice(LOAS), help="Lowest level of assurance accepted "
                     "(default substantial).")(f)
    f = click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSON policy: as_member, min_loa, max_age_seconds, document_types, clock_skew_seconds.")(f)
    f = click.option("--as-member", type=MemberParam(), envvar="MEKONG_AS_MEMBER",
                     help="The member whose recognition policy you apply, such as TH for a Thai importer.")(f)
    return replica_options(f)


def load_policy(policy_file: Path | None, as_member: str | None, min_loa: str | None,
                max_age: int | None, default_max_age: int | None = None) -> VerificationPolicy:
    """The verifier's policy from ``--policy`` and the options (which win).

    Raises:
        ToolError: the policy file is not valid.
        click.UsageError: no member to act as.
    """
    doc: dict[str, Any] = {}
    if policy_file is not None:
        try:
            doc = json.loads(read_bytes(policy_file, "policy file", 1 << 20))
        except ValueError as e:
            raise ToolError(f"{policy_file} is not JSON: {e}") from None
        if not isinstance(doc, dict) or set(doc) - _POLICY_KEYS:
            raise ToolError(f"{policy_file}: expected an object with keys among {', '.join(sorted(_POLICY_KEYS))}")
    if as_member is not None:
        doc["as_member"] = as_member
    if min_loa is not None:
        doc["min_loa"] = min_loa
    if max_age is not None:
        doc["max_age_seconds"] = max_age
    elif default_max_age is not None:
        doc.setdefault("max_age_seconds", default_max_age)
    if not doc.get("as_member"):
        raise click.UsageError("say whose recognition policy to apply: --as-member M (for example TH), "
                               "or as_member in --policy FILE")
    if doc.get("document_types") is not None:
        doc["document_types"] = frozenset(doc["document_types"])
    try:
        return VerificationPolicy(**doc)
    except (TypeError, ValueError) as e:
        raise ToolError(f"invalid policy: {e}") from None


def open_replica(nodes: tuple[str, ...], replica_dir: Path | None, genesis_file: Path | None, pin: bytes | None,
                 offline: bool, at: int, quiet: bool = False) -> tuple[Replica, SyncReport | None]:
    """Open (and unless ``offline``, create if needed and sync) the replica.

    Raises:
        ReplicaError, ClientError, VerificationError: as :meth:`Replica.bootstrap` and :meth:`Replica.sync`.
        click.UsageError: no node to sync from.
    """
    directory = replica_dir or default_replica_dir()
    genesis = load_signed_root(genesis_file, "genesis") if genesis_file else None
    if offline:
        if nodes:
            raise click.UsageError("--offline contacts no node: drop --node, or drop --offline")
        if not Replica.exists(directory):
            raise ReplicaError(f"no replica in {directory} to verify offline against; run once without --offline "
                               "(with --node URL and --pin HASH) to make one")
        replica = Replica.open(directory, pin)
        if genesis is not None and genesis.payload != replica.genesis.payload:
            replica.close()
            raise ReplicaError(f"the replica in {directory} is pinned to another genesis than {genesis_file}")
        return replica, None
    urls = list(nodes)
    if not urls:
        urls = Replica.saved_nodes(directory)
    if not urls:
        raise click.UsageError("give a node to sync from: --node URL (or --offline to use the replica as it is)")
    clients = [NodeClient(u) for u in urls]
    replica = Replica.bootstrap(directory, clients, pin, genesis)
    try:
        report = replica.sync(clients, at, ClickProgress(quiet))
    except ClientError as e:
        last = replica.last_sync
        replica.close()
        if last is None:
            raise
        raise ToolError(f"{e}; to verify against the replica as it is (last synced {ago(max(0, at - last))} ago), "
                        "add --offline") from None
    except BaseException:
        replica.close()
        raise
    return replica, report


def replica_lines(st: dict[str, Any], sync: SyncReport | None) -> list[str]:
    """Text lines saying what the verification rested on: the replica (:meth:`Replica.status`), what the sync found."""
    lines = [f"ledger replica {st['directory']}",
             f"  network {st['network']}, genesis {st['genesis_hash'][:16]}..., root version {st['root_version']}"]
    if sync is None:
        lines.append(f"  OFFLINE: last synced {_when(st['last_sync'])} ({ago(st['last_sync_age_seconds'])} ago)"
                     f" from {', '.join(st['nodes']) or 'no node'}")
    else:
        lines.append(f"  synced now from {', '.join(sync.answered)}"
                     + (f"; unreachable: {', '.join(sync.failed)}" if sync.failed else ""))
    for m, lg in sorted(st["logs"].items()):
        if lg["final_size"] is not None:
            lines.append(f"  log {m}: final size {lg['final_size']}, witnessed {ago(lg['age_seconds'])} ago")
    if sync is not None:
        lines += [f"  lagging: {x}" for x in sync.lagging]
        lines += [f"  warning: {p}" for p in sync.problems]
        lines += [f"  EVIDENCE: {e}" for e in sync.evidence]
    return lines


def run_verification(ctx: click.Context, subject: bytes | SignedDocument, opts: dict[str, Any]) -> None:
    """Open or sync the replica, verify ``subject``, print the report and exit with the verdict's code.

    ``opts`` holds the values of :func:`verification_options`.
    """
    at = opts["at"] if opts["at"] is not None else now()
    policy = load_policy(opts["policy_file"], opts["as_member"], opts["min_loa"], opts["max_age"],
                         None if opts["offline"] else ONLINE_MAX_AGE)
    replica, sync = open_replica(opts["nodes"], opts["replica_dir"], opts["genesis_file"], opts["pin"],
                                 opts["offline"], at, quiet=opts["as_json"])
    try:
        root = replica.chain.current
        if policy.as_member not in root.member_ids:  # no verdict can help: a wrong option, not a stale ledger
            raise click.UsageError(f"{policy.as_member} is not a member of network {replica.network} (governance "
                                   f"root v{root.version}: {', '.join(root.member_ids)}); verify --as-member "
                                   "one of them")
        report = verify_subject(subject, replica.view(), policy, at)
        status = replica.status(at)
    finally:
        replica.close()
    code = _EXIT.get(report.indication, EXIT_INDETERMINATE)
    distrust = report.sub_indication == "EQUIVOCATION"  # check 8.1: the same verdict in text, JSON and exit code
    if opts["as_json"]:
        doc = report.to_dict()
        doc["replica"] = status
        doc["offline"] = opts["offline"]
        doc["sync"] = sync.to_dict() if sync else None
        doc["exit_code"] = code
        click.echo(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(report.render_text(), nl=False)
        click.echo("\n".join(replica_lines(status, sync)))
        if distrust:
            click.echo("NOT TRUSTED: the replica holds evidence that members showed different histories (kept in"
                       " its evidence table); report it to the network's members.")
    ctx.exit(code)


def run_light(ctx: click.Context, credential: bytes | SignedDocument, opts: dict[str, Any],
              bundle_file: Path | None) -> None:
    """Light verification (specs/state.md S.7): from state proofs a node serves, or from a proof bundle (a
    credential only)."""
    at = opts["at"] if opts["at"] is not None else now()
    offline = bundle_file is not None and opts["offline"]
    policy = load_policy(opts["policy_file"], opts["as_member"], opts["min_loa"], opts["max_age"],
                         None if offline else ONLINE_MAX_AGE)
    bundle: ProofBundle | None
    if bundle_file is not None:
        if opts["nodes"] and opts["offline"]:
            raise click.UsageError("--offline contacts no node: drop --node, or drop --offline")
        assert isinstance(credential, bytes)  # verify-signature takes no --bundle
        bundle, view = open_bundle_file(bundle_file, opts["pin"], opts["replica_dir"], credential, policy.as_member)
        source = f"proof bundle {bundle_file} ({len(bundle.encode())} bytes), verified offline"
    else:
        if opts["offline"]:
            raise click.UsageError("light verification asks a node; with no network give --bundle FILE, or use"
                                   " --full --offline for the local replica")
        urls = list(opts["nodes"]) or Replica.saved_nodes(opts["replica_dir"] or default_replica_dir())
        if not urls:
            raise click.UsageError("give a node to ask: --node URL")
        clients = [NodeClient(u) for u in urls]
        bundle, view = fetch_light(clients, opts["replica_dir"], opts["pin"], credential, policy.as_member)
        what = "signature" if isinstance(credential, SignedDocument) else "credential"
        fetched = f"nothing needed: the file is no {what}" if bundle is None else f"{len(bundle.encode())} bytes"
        source = f"light verification: state proofs from {', '.join(urls)}, {fetched}"
    try:
        report = verify_subject(credential, view, policy, at)
    except MekongError as e:  # the view lacks a proof the engine asked for (credentials.bundle.ProvenView)
        raise ToolError(f"{e}; verify with --full") from None
    code = _EXIT.get(report.indication, EXIT_INDETERMINATE)
    logs = {log: {"final_size": view.positions.get(log), "witnessed_age_seconds": _age(view, log, at)}
            for log, _ in (bundle.answers if bundle is not None else ())}
    if opts["as_json"]:
        doc = report.to_dict()
        doc.update(mode="bundle" if bundle_file else "light", source=source, logs=logs, exit_code=code)
        click.echo(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(report.render_text(), nl=False)
        click.echo(source)
        for log, st in sorted(logs.items()):
            click.echo(f"  log {log}: final size {st['final_size']}, witnessed {ago(st['witnessed_age_seconds'])} ago")
    ctx.exit(code)


def _age(view: Any, log: str, at: int) -> int | None:
    cp = view.latest_checkpoint(log)
    t = None if cp is None else fresh_time(cp, view.governance.faulty, at)
    return None if t is None else max(0, at - t)


@click.command("verify", epilog=EXIT_CODES_HELP)
@click.argument("credential", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--full", is_flag=True, help="Verify against a local replica of the whole ledger, synced and replayed"
              " (for auditors and heavy users) instead of light state proofs.")
@click.option("--bundle", "bundle_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify from this proof bundle ('mekong credential bundle'); with --offline, with no network.")
@verification_options
@click.pass_context
def verify(ctx: click.Context, credential: Path, full: bool, bundle_file: Path | None, **opts: Any) -> None:
    """Verify a credential against the ledger, trusting no single node.

    By default the verification is light: a node is asked for proofs of the few
    registry records the credential needs (its issuer, its key, its anchor, its
    status, your member's policy) against the state root of a final checkpoint
    (cosigned by a quorum of members, each of whom recomputed that state), and
    every proof is checked here. The credential is then checked: signature, issuer
    registration and accreditation, your member's recognition policy (--as-member),
    key validity at signing time with proof of existence, expiry, status, freshness.

    \b
    First time (pin the genesis hash your network published):
      mekong verify cred.cbor --node http://127.0.0.1:7101 --pin HASH --as-member TH
    At a border post with no network, from a bundle the exporter attached:
      mekong verify cred.cbor --bundle cred.bundle --offline --pin HASH --as-member TH
    Against a full local replica (synced, replayed; --offline uses it as it is):
      mekong verify cred.cbor --full --node URL --pin HASH --as-member TH
    """
    raw = read_bytes(credential, "credential")
    if full:
        if bundle_file is not None:
            raise click.UsageError("--bundle and --full are two ways to verify: give one")
        run_verification(ctx, raw, opts)
    else:
        run_light(ctx, raw, opts, bundle_file)


@click.command("verify-signature", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("signature", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--full", is_flag=True, help="Verify against a local replica of the whole ledger, synced and replayed"
              " (for auditors and heavy users) instead of light state proofs.")
@verification_options
@click.pass_context
def verify_signature(ctx: click.Context, file: Path, signature: Path, full: bool, **opts: Any) -> None:
    """Verify a document's detached signature against the ledger, trusting no single node.

    Checks the signature and the document's digest, then the signer: an issuer key on
    the ledger, or a key certified by an authorised-signatory credential carried in
    the signature (itself verified). By default the verification is light: every
    member's log is asked, with proofs, for the signature's key id and anchor, then
    for the records the signer needs (specs/state.md S.7.4); --full and --offline use
    the local replica as 'mekong verify --full' does. Options as for 'mekong verify'.
    """
    subject = SignedDocument(signature=read_bytes(signature, "signature"), document=read_bytes(file, "document"))
    if full or opts["offline"]:  # no proof bundles for documents: offline is the replica as it is
        run_verification(ctx, subject, opts)
    else:
        run_light(ctx, subject, opts, None)
