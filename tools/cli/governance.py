"""``mekong governance``: propose, sign, submit and show governance roots after genesis (spec 5.4.2).

A new root version n+1 names the hash of version n and needs signatures from
``threshold`` of version n's members and from every member it adds.
``propose`` builds the draft from the current root and a list of changes,
``sign`` adds one member's signature offline, ``submit`` merges signatures and
posts the root to a node, which verifies it, adopts it and forwards it.
``show`` walks a chain from its genesis with :func:`ledger.governance.walk`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ledger.errors import ConflictError, DecodeError, VerificationError
from ledger.governance import check_thresholds, walk_prefix
from ledger.keys import key_id
from ledger.roots import Member, Root, SignedRoot
from tools.cli.roots import describe_root, load_signed_root, merge_signed, root_lines, sign_command
from tools.cli.util import (
    HashParam,
    MemberParam,
    TimeParam,
    ToolError,
    emit,
    json_option,
    now,
    passphrase_options,
    public_key_arg,
    write_bytes,
)
from tools.client.http import NodeClient, fetch_roots

__all__ = ["governance"]

_HASH = HashParam(32, "root hash")


@click.group()
def governance() -> None:
    """Change the network after genesis: members, keys, endpoints, quorum, threshold.

    \b
    1. 'governance propose --from CURRENT.cbor ... --out next.cbor' writes a draft.
    2. Members check it ('governance show --chain ...') and 'governance sign' it offline.
    3. 'governance submit next.cbor signed-*.cbor --node URL' merges and submits it.
    The next version needs signatures from 'threshold' current members and from every
    member it adds.
    """


def _kid_or_key(value: str) -> bytes:
    text = value.strip()
    if len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    return key_id(public_key_arg(value))


def _member(members: dict[str, Member], mid: str, option: str) -> Member:
    if mid not in members:
        raise click.BadParameter(f"{mid} is not a member of the current root ({', '.join(sorted(members))})",
                                 param_hint=option)
    return members[mid]


@governance.command("propose")
@click.option("--from", "current_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The current root (a signed root file, for example saved by 'governance show --save').")
@click.option("--add-member", "add", multiple=True, type=(MemberParam(), str, str, str, str),
              metavar="ID NAME ADMIN_KEY NODE_KEY URL", help="Add a member (it must sign the new root too).")
@click.option("--remove-member", "remove", multiple=True, type=MemberParam(), metavar="ID", help="Remove a member.")
@click.option("--rotate-admin-key", "rotate", multiple=True, type=(MemberParam(), str, str),
              metavar="M OLD NEW", help="Replace admin key OLD (key, .pub or key id hex) of M with NEW.")
@click.option("--add-admin-key", "add_admin", multiple=True, type=(MemberParam(), str), metavar="M KEY",
              help="Give member M another admin key.")
@click.option("--remove-admin-key", "remove_admin", multiple=True, type=(MemberParam(), str), metavar="M KEY",
              help="Remove an admin key (key, .pub or key id hex) of M.")
@click.option("--set-node-key", "node_key", multiple=True, type=(MemberParam(), str), metavar="M KEY",
              help="Give member M a new node key.")
@click.option("--set-endpoints", "set_endpoints", multiple=True, type=(MemberParam(), str), metavar="M URLS",
              help="Set member M's node URLs (comma-separated).")
@click.option("--set-name", "set_name", multiple=True, type=(MemberParam(), str), metavar="M NAME",
              help="Rename member M.")
@click.option("--set-quorum", type=click.IntRange(min=1), help="New quorum.")
@click.option("--set-threshold", type=click.IntRange(min=1), help="New governance threshold.")
@click.option("--set-faulty", type=click.IntRange(min=0), help="New f.")
@click.option("--issued-at", type=TimeParam(), help="The new root's time (default: now).")
@click.option("--expires", type=TimeParam(), help="When the new root stops being valid as the head.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Draft file to write.")
@json_option
def propose(current_file: Path, add: tuple[tuple[str, str, str, str, str], ...], remove: tuple[str, ...],
            rotate: tuple[tuple[str, str, str], ...], add_admin: tuple[tuple[str, str], ...],
            remove_admin: tuple[tuple[str, str], ...], node_key: tuple[tuple[str, str], ...],
            set_endpoints: tuple[tuple[str, str], ...], set_name: tuple[tuple[str, str], ...],
            set_quorum: int | None, set_threshold: int | None, set_faulty: int | None, issued_at: int | None,
            expires: int | None, out: Path, as_json: bool) -> None:
    """Write the draft of the next root version: the current root with the changes given.

    \b
    Example: rotate VN's stolen admin key and raise the quorum
      mekong governance propose --from root-v1.cbor \\
        --rotate-admin-key VN VN-admin-old.key.pub VN-admin-new.key.pub \\
        --set-quorum 5 --out next.cbor
    """
    current = load_signed_root(current_file, "current root")
    prev = current.root
    try:
        members, changes = _apply_member_changes(prev, add, remove, rotate, add_admin, remove_admin, node_key,
                                                 set_endpoints, set_name)
    except DecodeError as e:
        raise click.UsageError(str(e)) from None
    quorum = set_quorum or prev.quorum
    threshold = set_threshold or prev.threshold
    faulty = prev.faulty if set_faulty is None else set_faulty
    for what, old_v, new_v in (("quorum", prev.quorum, quorum), ("threshold", prev.threshold, threshold),
                               ("faulty", prev.faulty, faulty)):
        if old_v != new_v:
            changes.append(f"set {what} {old_v} -> {new_v}")
    if expires is not None:
        changes.append(f"expires at {expires}")
    if not changes:
        raise click.UsageError("no change given; see --help for --add-member, --rotate-admin-key, --set-quorum, ...")
    try:
        check_thresholds(len(members), faulty, quorum, threshold)
        root = Root(network=prev.network, version=prev.version + 1, previous=current.root_hash,
                    members=tuple(members[m] for m in sorted(members)), quorum=quorum, threshold=threshold,
                    faulty=faulty, issued_at=now() if issued_at is None else issued_at, expires=expires)
    except (DecodeError, VerificationError) as e:
        raise click.UsageError(str(e)) from None
    signed = SignedRoot.create(root)
    write_bytes(out, signed.to_cbor())
    added = sorted(set(members) - set(prev.member_ids))
    doc = describe_root(signed, root, prev)
    doc.update(file=str(out), changes=changes,
               needs={"from_current_members": prev.threshold, "current_members": list(prev.member_ids),
                      "added_members": added})
    emit(as_json, doc, root_lines(doc) + ["changes:"] + [f"  - {c}" for c in changes] + [
        f"needs signatures from {prev.threshold} of {', '.join(prev.member_ids)}"
        + (f", and from {', '.join(added)} (added)" if added else ""),
        f"wrote {out}", f"ROOT HASH {signed.root_hash.hex()}"])


def _apply_member_changes(prev: Root, add: tuple[tuple[str, str, str, str, str], ...], remove: tuple[str, ...],
                          rotate: tuple[tuple[str, str, str], ...], add_admin: tuple[tuple[str, str], ...],
                          remove_admin: tuple[tuple[str, str], ...], node_key: tuple[tuple[str, str], ...],
                          set_endpoints: tuple[tuple[str, str], ...],
                          set_name: tuple[tuple[str, str], ...]) -> tuple[dict[str, Member], list[str]]:
    """The members of the next root after the options' changes, and a line per change, in the order applied.

    Raises:
        click.BadParameter: a change names a member or key that is not there.
        DecodeError: a changed member is not well formed.
    """
    members = {m.id: m for m in prev.members}
    changes: list[str] = []
    for mid in remove:
        _member(members, mid, "--remove-member")
        del members[mid]
        changes.append(f"remove member {mid}")
    for mid, name, admin, node, url in add:
        if mid in members:
            raise click.BadParameter(f"{mid} is already a member", param_hint="--add-member")
        members[mid] = Member(mid, name, (public_key_arg(admin),), public_key_arg(node), (url,))
        changes.append(f"add member {mid} ({name})")
    changes += _key_changes(members, rotate, add_admin, remove_admin, node_key)
    for mid, urls in set_endpoints:
        m = _member(members, mid, "--set-endpoints")
        members[mid] = replace(m, endpoints=tuple(u.strip() for u in urls.split(",") if u.strip()))
        changes.append(f"set endpoints of {mid} to {urls}")
    for mid, name in set_name:
        members[mid] = replace(_member(members, mid, "--set-name"), name=name)
        changes.append(f"rename {mid} to {name!r}")
    return members, changes


def _key_changes(members: dict[str, Member], rotate: tuple[tuple[str, str, str], ...],
                 add_admin: tuple[tuple[str, str], ...], remove_admin: tuple[tuple[str, str], ...],
                 node_key: tuple[tuple[str, str], ...]) -> list[str]:
    """Apply the admin and node key changes to ``members`` in place; a line per change."""
    changes = []
    for mid, old, new in rotate:
        m = _member(members, mid, "--rotate-admin-key")
        old_kid = _kid_or_key(old)
        if old_kid not in {key_id(k) for k in m.admin_keys}:
            raise click.BadParameter(f"{old} is not an admin key of {mid}", param_hint="--rotate-admin-key")
        new_key = public_key_arg(new)
        members[mid] = replace(m, admin_keys=tuple(new_key if key_id(k) == old_kid else k for k in m.admin_keys))
        changes.append(f"rotate admin key {old_kid.hex()} of {mid} to {key_id(new_key).hex()}")
    for mid, key in add_admin:
        m = _member(members, mid, "--add-admin-key")
        k = public_key_arg(key)
        members[mid] = replace(m, admin_keys=(*m.admin_keys, k))
        changes.append(f"add admin key {key_id(k).hex()} to {mid}")
    for mid, key in remove_admin:
        m = _member(members, mid, "--remove-admin-key")
        kid = _kid_or_key(key)
        kept = tuple(k for k in m.admin_keys if key_id(k) != kid)
        if len(kept) == len(m.admin_keys):
            raise click.BadParameter(f"{key} is not an admin key of {mid}", param_hint="--remove-admin-key")
        members[mid] = replace(m, admin_keys=kept)
        changes.append(f"remove admin key {kid.hex()} of {mid}")
    for mid, key in node_key:
        m = _member(members, mid, "--set-node-key")
        k = public_key_arg(key)
        members[mid] = replace(m, node_key=k)
        changes.append(f"set node key of {mid} to {key_id(k).hex()}")
    return changes


@governance.command("sign")
@click.argument("draft_file", metavar="DRAFT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your admin key file (encrypted).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write your signature to.")
@click.option("--previous", "previous_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The current root, when your admin key is one this draft removes or rotates.")
@click.option("--expect-hash", type=_HASH, help="Refuse to sign unless the draft has this root hash.")
@passphrase_options
@json_option
def sign(draft_file: Path, key: Path, out: Path, previous_file: Path | None, expect_hash: bytes | None,
         passphrase_env: str | None, passphrase_fd: int | None, as_json: bool) -> None:
    """Sign a proposed root with your admin key (offline)."""
    previous = load_signed_root(previous_file, "previous root") if previous_file else None
    sign_command(draft_file, key, out, expect_hash, passphrase_env, passphrase_fd, as_json, previous)


@governance.command("submit")
@click.argument("files", metavar="DRAFT [SIGNED...]", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node", required=True, metavar="URL", help="A member node, such as http://127.0.0.1:7101.")
@json_option
def submit(files: tuple[Path, ...], node: str, as_json: bool) -> None:
    """Merge the signatures of FILES and submit the root to a node.

    The node verifies it against its current root (threshold, added members' signatures),
    adopts it and forwards it to its peers. A refusal names the rule that failed.
    """
    client = NodeClient(node)
    merged = merge_signed(load_signed_root(files[0]), files[1:])
    answer = client.submit_root(merged.to_cbor())
    doc = {"node": client.url, "version": answer.get("version"), "hash": merged.root_hash.hex()}
    emit(as_json, doc, f"node {client.url} adopted {merged.root.network} root version {answer.get('version')} "
                       f"(hash {merged.root_hash.hex()})")


@governance.command("show")
@click.option("--node", metavar="URL", help="Fetch the chain from this node.")
@click.option("--chain", "chain_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Signed root files (repeat); one must be version 1 unless --genesis is given.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file you trust.")
@click.option("--pin", type=_HASH, help="The genesis hash you trust; without it the genesis is taken as given.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each verified root to DIR/root-v<N>.cbor (input for 'propose --from').")
@json_option
def show(node: str | None, chain_files: tuple[Path, ...], genesis_file: Path | None, pin: bytes | None,
         save_dir: Path | None, as_json: bool) -> None:
    """Walk and show a governance chain, from a node or from files.

    Every root is verified from the genesis on (spec 5.5): signatures, threshold, added
    members. A single unsigned draft is shown as it is, with who has signed it so far.
    """
    if (node is None) == (not chain_files):
        raise click.UsageError("give --node URL or --chain FILE... (one of them)")
    if node is not None:
        genesis_root, rest = fetch_roots(NodeClient(node))
    else:
        loaded = [load_signed_root(f) for f in chain_files]
        if len(loaded) == 1 and genesis_file is None and not loaded[0].signatures:
            doc = describe_root(loaded[0])
            emit(as_json, {"roots": [doc], "verified": False},
                 root_lines(doc) + ["(an unsigned draft: nothing verified)"])
            return
        ones = [r for r in loaded if r.root.version == 1]
        if genesis_file is None and not ones:
            raise click.UsageError("no version 1 among --chain files: give --genesis FILE")
        genesis_root = ones[0] if genesis_file is None else load_signed_root(genesis_file, "genesis")
        rest = [r for r in loaded if r.root.version != 1]
    if genesis_file is not None and node is not None:
        pinned_genesis = load_signed_root(genesis_file, "genesis")
        if pinned_genesis.payload != genesis_root.payload:
            raise ToolError(f"node {node} serves genesis {genesis_root.root_hash.hex()}, not the genesis in "
                            f"{genesis_file} ({pinned_genesis.root_hash.hex()})")
    try:
        chain, refused = walk_prefix(genesis_root, rest, pin)
    except ConflictError as e:
        raise ToolError(f"EQUIVOCATION: {e}") from None
    pending = [(signed, str(e)) for signed, e in refused]
    docs: list[dict[str, Any]] = []
    for r in chain.roots:
        signed = chain.signed(r.version)
        prev = chain.root_at(r.version - 1) if r.version > 1 else None
        docs.append(describe_root(signed, *((r, prev) if prev is not None else (r,))))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            write_bytes(save_dir / f"root-v{r.version}.cbor", signed.to_cbor())
    lines = []
    for d in docs:
        lines += root_lines(d)
    lines.append(f"current: version {chain.current.version}, hash {chain.current.root_hash.hex()}"
                 + ("" if pin else " (genesis not pinned: pass --pin HASH to check it)"))
    pending_docs = []
    for signed, why in pending:
        d = describe_root(signed, signed.root, chain.current)
        d["not_valid"] = why
        pending_docs.append(d)
        lines += ["NOT VALID (yet):"] + root_lines(d) + [f"  why: {why}"]
    emit(as_json, {"roots": docs, "current": chain.current.version, "pinned": pin is not None, "verified": True,
                   "pending": pending_docs}, lines)
