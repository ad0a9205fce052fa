"""``mekong issuer`` and ``mekong policy``: member administrators' entries on their own log.

Each command builds one entry body (:mod:`ledger.bodies`), signs it with
:func:`ledger.entries.make_entry` under the key the rules require (spec 6.3),
and submits it to the member's own node (``POST /logs/{M}/entries``), by
default waiting until a final checkpoint covers it. The node checks every rule
again; its refusal names the rule. :func:`submit_entry` and
:func:`tools.cli.submit.entry_options` are shared with :mod:`tools.cli.credential`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from ledger.bodies import (
    LOAS,
    REVOCATION_REASONS,
    WILDCARD,
    Body,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
    PolicyRule,
    member_of,
)
from ledger.errors import DecodeError
from ledger.keys import key_id, next_key_digest, public_key_of
from ledger.roots import SignedRoot
from ledger.state import StateKey
from tools.cli.lightverify import lookup_options, proof_line, proven_state
from tools.cli.submit import entry_options, submit_entry
from tools.cli.util import (
    HashParam,
    IssuerParam,
    MemberParam,
    TimeParam,
    ToolError,
    check_document_types,
    custom_type_option,
    emit,
    load_key,
    now,
    public_key_arg,
    read_bytes,
)
from tools.client.http import ClientError, NodeClient

__all__ = ["issuer", "policy"]

F = TypeVar("F", bound=Callable[..., Any])
_KID = HashParam(16, "key id")


def _check_member(member: str | None, issuer_id: str) -> str:
    log = member_of(issuer_id)
    if member is not None and member != log:
        raise click.BadParameter(f"issuer {issuer_id} belongs to member {log}, not {member}", param_hint="--member")
    return log


# ---------------------------------------------------------------------------- issuer


@click.group()
def issuer() -> None:
    """Register issuers and manage their keys (member administrators).

    Entries are signed with the member's admin key (issuer rotate-key: with the new
    issuer key; revoke-key: admin or issuer key) and submitted to the member's own node.
    """


@issuer.command("register")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.option("--name", required=True, help="The issuer's name, such as 'VN Customs CO office'.")
@click.option("--document-type", "document_types", multiple=True, required=True,
              help="A document type it is accredited for, such as certificate-of-origin (repeat).")
@click.option("--loa", type=click.Choice(LOAS), default="high", show_default=True, help="Level of assurance.")
@click.option("--jurisdiction", required=True, help="Where it operates, such as VN or VN-SG.")
@click.option("--member", type=MemberParam(), help="Your member id (default: the issuer id's prefix).")
@custom_type_option
@entry_options("Your member's admin key file.")
def register(issuer_id: str, name: str, document_types: tuple[str, ...], loa: str, jurisdiction: str,
             member: str | None, custom_types: bool, node: str, key: Path, passphrase_env: str | None,
             passphrase_fd: int | None, root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Register ISSUER (such as VN/customs-coo) on your member's log."""
    check_document_types(document_types, custom_types)
    log = _check_member(member, issuer_id)
    body = _body(lambda: IssuerRegister(issuer_id, name, tuple(document_types), loa, jurisdiction))
    submit_entry(node, log, body, load_key(key, passphrase_env, passphrase_fd), root_version=root_version,
                 wait_final=wait_final, as_json=as_json, extra={"issuer": issuer_id})


@issuer.command("update")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.option("--document-type", "document_types", multiple=True, help="Replace the accredited document types.")
@click.option("--loa", type=click.Choice(LOAS), help="New level of assurance.")
@click.option("--status", type=click.Choice(["active", "suspended"]), help="Suspend or reactivate the issuer.")
@click.option("--reason", default="", help="Why (recorded on the ledger).")
@click.option("--member", type=MemberParam(), help="Your member id (default: the issuer id's prefix).")
@custom_type_option
@entry_options("Your member's admin key file.")
def update(issuer_id: str, document_types: tuple[str, ...], loa: str | None, status: str | None, reason: str,
           member: str | None, custom_types: bool, node: str, key: Path, passphrase_env: str | None,
           passphrase_fd: int | None, root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Change an issuer's accreditation, level of assurance or status."""
    check_document_types(document_types, custom_types)
    log = _check_member(member, issuer_id)
    if not document_types and loa is None and status is None:
        raise click.UsageError("nothing to change: give --document-type, --loa or --status")
    body = _body(lambda: IssuerUpdate(issuer_id, tuple(document_types) or None, loa, status, reason))
    submit_entry(node, log, body, load_key(key, passphrase_env, passphrase_fd), root_version=root_version,
                 wait_final=wait_final, as_json=as_json, extra={"issuer": issuer_id})


@issuer.command("add-key")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.option("--issuer-key", required=True, metavar="FILE",
              help="The issuer's new signing key: its key file, .pub file or hex (public half only).")
@click.option("--valid-from", type=TimeParam(), help="Start of validity (default: now).")
@click.option("--valid-until", type=TimeParam(), help="End of validity (default: none).")
@click.option("--next-key", metavar="FILE",
              help="Pre-rotation: commit now to the key that may later replace this one (key file, .pub or hex).")
@click.option("--member", type=MemberParam(), help="Your member id (default: the issuer id's prefix).")
@entry_options("Your member's admin key file.")
def add_key(issuer_id: str, issuer_key: str, valid_from: int | None, valid_until: int | None,
            next_key: str | None, member: str | None, node: str, key: Path, passphrase_env: str | None,
            passphrase_fd: int | None, root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Give ISSUER a signing key, optionally committing to its successor (pre-rotation)."""
    log = _check_member(member, issuer_id)
    pub = public_key_arg(issuer_key)
    digest = next_key_digest(public_key_arg(next_key)) if next_key else None
    body = _body(lambda: IssuerKeyAdd(issuer_id, pub, now() if valid_from is None else valid_from, valid_until,
                                      digest))
    submit_entry(node, log, body, load_key(key, passphrase_env, passphrase_fd), root_version=root_version,
                 wait_final=wait_final, as_json=as_json, extra={"issuer": issuer_id, "kid": key_id(pub).hex()})


@issuer.command("rotate-key")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.option("--old-kid", type=_KID, help="Key id of the key being replaced.")
@click.option("--old-key", metavar="FILE", help="Or the key being replaced (key file, .pub or hex).")
@click.option("--valid-until", type=TimeParam(), help="End of validity of the new key.")
@click.option("--next-key", metavar="FILE", help="Commit to the key that may replace the new one.")
@click.option("--member", type=MemberParam(), help="Your member id (default: the issuer id's prefix).")
@entry_options("The NEW issuer key file, the one the old key committed to: a rotation is signed by it.")
def rotate_key(issuer_id: str, old_kid: bytes | None, old_key: str | None, valid_until: int | None,
               next_key: str | None, member: str | None, node: str, key: Path, passphrase_env: str | None,
               passphrase_fd: int | None, root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Replace an issuer key by the key it committed to (pre-rotation), signed by the new key.

    Works even when the old key is lost or stolen: the new key was committed to when
    the old one was added, so only its holder can rotate.
    """
    log = _check_member(member, issuer_id)
    if (old_kid is None) == (old_key is None):
        raise click.UsageError("give the key being replaced: --old-kid HEX or --old-key FILE")
    old = old_kid if old_kid is not None else key_id(public_key_arg(old_key or ""))
    signing_key = load_key(key, passphrase_env, passphrase_fd)
    new_pub = public_key_of(signing_key)
    digest = next_key_digest(public_key_arg(next_key)) if next_key else None
    body = _body(lambda: IssuerKeyRotate(issuer_id, old, new_pub, valid_until, digest))
    submit_entry(node, log, body, signing_key, root_version=root_version, wait_final=wait_final, as_json=as_json,
                 extra={"issuer": issuer_id, "old_kid": old.hex(), "kid": key_id(new_pub).hex()})


@issuer.command("revoke-key")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.option("--kid", type=_KID, help="Key id of the key to revoke.")
@click.option("--issuer-key", metavar="FILE", help="Or the key to revoke (key file, .pub or hex).")
@click.option("--reason", type=click.Choice(REVOCATION_REASONS), required=True,
              help="compromised allows a revocation from a past time; superseded and ceased do not.")
@click.option("--effective", type=TimeParam(), help="From when the key is revoked (default: now).")
@click.option("--member", type=MemberParam(), help="Your member id (default: the issuer id's prefix).")
@entry_options("Your member's admin key file, or a usable key of the issuer.")
def revoke_key(issuer_id: str, kid: bytes | None, issuer_key: str | None, reason: str, effective: int | None,
               member: str | None, node: str, key: Path, passphrase_env: str | None, passphrase_fd: int | None,
               root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Stop trusting an issuer key from --effective on.

    Credentials signed before that time stay valid when the ledger proves they existed
    before it (their anchors); without such proof they become INDETERMINATE.
    """
    log = _check_member(member, issuer_id)
    if (kid is None) == (issuer_key is None):
        raise click.UsageError("give the key to revoke: --kid HEX or --issuer-key FILE")
    target = kid if kid is not None else key_id(public_key_arg(issuer_key or ""))
    t = now()
    body = _body(lambda: IssuerKeyRevoke(issuer_id, target, reason, t if effective is None else effective))
    submit_entry(node, log, body, load_key(key, passphrase_env, passphrase_fd), root_version=root_version,
                 wait_final=wait_final, as_json=as_json, time=t, extra={"issuer": issuer_id, "kid": target.hex()})


def _body(make: Callable[[], Body]) -> Body:
    try:
        return make()
    except DecodeError as e:
        raise click.UsageError(str(e)) from None


# ---------------------------------------------------------------------------- policy


def parse_rule(text: str) -> PolicyRule:
    """``MEMBER:TYPES:MIN_LOA`` (``TYPES`` comma-separated; ``*`` for any) as a policy rule.

    Raises:
        click.BadParameter: malformed.
    """
    parts = text.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r}: expected MEMBER:TYPES:MIN_LOA such as "
                                 "TH:certificate-of-origin,phytosanitary-certificate:substantial or *:*:high",
                                 param_hint="--recognise")
    member, types, loa = (p.strip() for p in parts)
    member = member.upper()  # vn means VN
    try:
        return PolicyRule(member, tuple(t.strip() for t in types.split(",")) if types != WILDCARD else (WILDCARD,),
                          loa)
    except DecodeError as e:
        raise click.BadParameter(f"{text!r}: {e}", param_hint="--recognise") from None


def _rules_from_file(path: Path) -> list[PolicyRule]:
    try:
        doc = json.loads(read_bytes(path, "policy rules file", 1 << 20))
        items = doc["rules"] if isinstance(doc, dict) else doc
        return [PolicyRule(r["member"], tuple(r["document_types"]), r["min_loa"]) for r in items]
    except (ValueError, KeyError, TypeError, DecodeError) as e:
        raise ToolError(f"{path}: expected [{{\"member\", \"document_types\": [...], \"min_loa\"}}, ...]: "
                        f"{e}") from None


def _check_rule_members(node: str, rules: list[PolicyRule]) -> None:
    # The members a policy names must be members of the network (as the node's current root lists them: a
    # guard against typos, not a trust decision; the rules themselves are checked by every node).
    named = {r.member for r in rules if r.member != WILDCARD}
    if not named:
        return
    client = NodeClient(node)
    try:
        members = SignedRoot.from_cbor(client.root(client.current_root_version())).root.member_ids
    except (ClientError, DecodeError) as e:
        raise ToolError(f"cannot read the current governance root from {node} to check the members named: {e}") \
            from None
    unknown = sorted(named - set(members))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a member of the"
                                 f" network (members: {', '.join(sorted(members))})", param_hint="--recognise")


@click.group()
def policy() -> None:
    """Say which other members' issuers your member recognises (member administrators)."""


@policy.command("set")
@click.option("--member", required=True, type=MemberParam(), help="Your member id.")
@click.option("--recognise", "rules", multiple=True, metavar="MEMBER:TYPES:MIN_LOA",
              help="A rule, such as TH:certificate-of-origin:substantial or *:*:high (repeat).")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON list of rules {member, document_types, min_loa}.")
@custom_type_option
@entry_options("Your member's admin key file.")
def set_policy(member: str, rules: tuple[str, ...], rules_file: Path | None, custom_types: bool, node: str,
               key: Path, passphrase_env: str | None, passphrase_fd: int | None, root_version: int | None,
               wait_final: bool, as_json: bool) -> None:
    """Replace your member's recognition policy.

    Your own issuers are always recognised. With no rule at all, no other member's
    issuer is recognised. Verifiers acting as your member (mekong verify --as-member)
    apply this policy.
    """
    parsed = [parse_rule(r) for r in rules] + (_rules_from_file(rules_file) if rules_file else [])
    for r in parsed:
        check_document_types(r.document_types, custom_types, "--recognise")
    _check_rule_members(node, parsed)
    body = _body(lambda: MemberPolicy(tuple(parsed)))
    submit_entry(node, member, body, load_key(key, passphrase_env, passphrase_fd), root_version=root_version,
                 wait_final=wait_final, as_json=as_json,
                 extra={"rules": [f"{r.member}:{','.join(r.document_types)}:{r.min_loa}" for r in parsed]})


# ---------------------------------------------------------------------------- verified lookups


@issuer.command("show")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@lookup_options
def show(issuer_id: str, nodes: tuple[str, ...], pin: bytes | None, replica_dir: Path | None, as_json: bool) -> None:
    """Show an issuer: status, accreditation history and keys, each proven against a final checkpoint.

    The node names the issuer's keys; every record shown is then proven by a state proof
    (specs/state.md) and the entries it lists, so nothing is taken on the node's word.
    """
    log = member_of(issuer_id)
    clients = [NodeClient(u) for u in nodes]
    kids: list[bytes] = []
    for c in clients:  # a hint of which keys to prove; a key left out is simply not shown
        try:
            answer = c.get_json(f"/registry/issuers/{quote(issuer_id, safe='')}").get("answer") or {}
            kids = [bytes.fromhex(k) for k in answer.get("keys", [])][:15]
            break
        except (ClientError, ValueError, AttributeError, TypeError):
            continue
    keys = [StateKey("issuer", (issuer_id,))] + [StateKey("key", (k,)) for k in kids]
    opened, view = proven_state(clients, replica_dir, pin, log, keys)
    info = view.issuer(issuer_id)
    if info is None:
        raise ToolError(f"no issuer {issuer_id} on the ledger ({proof_line(opened, now())}: proven absent)")
    key_infos = [k for k in (view.key(kid, issuer_id) for kid in kids) if k is not None]
    doc = {"issuer": info.issuer_id, "member": info.member, "name": info.name, "status": info.status, "loa": info.loa,
           "document_types": list(info.document_types),
           "history": [{"time": p.time, "status": p.status, "loa": p.loa, "document_types": list(p.document_types),
                        "entry": p.index} for p in info.history],
           "keys": [{"kid": k.kid.hex(), "valid_from": k.valid_from, "valid_until": k.valid_until,
                     "events": [{"reason": r.reason, "effective": r.effective, "entry": r.index}
                                for r in k.revocations]} for k in key_infos],
           "proof": {"log": opened.log, "final_size": opened.checkpoint.size}}
    lines = [(f"{info.issuer_id} ({info.name}), member {info.member}: {info.status}, level {info.loa},"
             f" accredited for {', '.join(info.document_types)}"), "history:"]
    lines += [f"  from {p.time}: {p.status}, {p.loa}, {', '.join(p.document_types)} (entry {p.index})"
              for p in info.history]
    lines += ["keys:"] + [f"  {k.kid.hex()}: valid from {k.valid_from} until {k.valid_until or 'open'}"
                          + "".join(f"; {r.reason} from {r.effective}" for r in k.revocations) for k in key_infos]
    emit(as_json, doc, [*lines, proof_line(opened, now())])


@issuer.command("list")
@click.option("--member", required=True, type=MemberParam(), help="Whose issuers: a member id such as VN.")
@lookup_options
def list_issuers(member: str, nodes: tuple[str, ...], pin: bytes | None, replica_dir: Path | None,
                 as_json: bool) -> None:
    """List a member's issuers with their status and accreditation, each proven against a final checkpoint.

    The node names the issuers (an issuer it leaves out is not shown); every one shown is proven.
    """
    clients = [NodeClient(u) for u in nodes]
    ids: list[str] = []
    for c in clients:
        try:
            ids = [str(i) for i in c.get_json(f"/registry/issuers?member={member}")["issuers"]]
            break
        except (ClientError, KeyError, TypeError):
            continue
    rows = []
    for start in range(0, len(ids), 16):  # at most 16 keys per state request (api A.13)
        chunk = ids[start:start + 16]
        _opened, view = proven_state(clients, replica_dir, pin, member, [StateKey("issuer", (i,)) for i in chunk])
        rows += [{"issuer": i.issuer_id, "name": i.name, "status": i.status, "loa": i.loa,
                  "document_types": list(i.document_types)} for i in (view.issuer(x) for x in chunk) if i is not None]
    lines = [f"{r['issuer']}: {r['status']}, {r['loa']}, {', '.join(r['document_types'])} ({r['name']})" for r in rows]
    emit(as_json, {"member": member, "issuers": rows}, lines or [f"{member} has registered no issuer"])


@policy.command("show")
@click.argument("member", type=MemberParam())
@lookup_options
def show_policy(member: str, nodes: tuple[str, ...], pin: bytes | None, replica_dir: Path | None,
                as_json: bool) -> None:
    """Show a member's recognition policy, proven against a final checkpoint of its log."""
    opened, view = proven_state([NodeClient(u) for u in nodes], replica_dir, pin, member, [StateKey("policy")])
    rules = view.recognition(member)
    doc = {"member": member, "rules": None if rules is None else [
        {"member": r.member, "document_types": list(r.document_types), "min_loa": r.min_loa} for r in rules],
        "proof": {"log": opened.log, "final_size": opened.checkpoint.size}}
    lines = [f"{member} has set no policy: it recognises its own issuers only" if rules is None else
             f"{member} recognises:"] + [f"  {r.member}: {', '.join(r.document_types)} at {r.min_loa} or above"
                                         for r in rules or ()]
    emit(as_json, doc, [*lines, proof_line(opened, now())])
