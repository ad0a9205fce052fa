"""``mekong genesis``: the genesis ceremony of founders who do not trust each other (spec 5.4.1).

1. ``draft`` writes the unsigned genesis root from every founder's public keys
   and prints its hash; the founders compare the hash out of band.
2. ``sign`` is run by each founder, offline, with their own admin key file; it
   writes a file holding only that founder's signature.
3. ``assemble`` merges the signatures, runs :func:`ledger.governance.verify_genesis`
   and prints the hash every node and verifier pins; it refuses, naming them,
   while any founder's signature is missing.

Reading, describing, signing and merging signed root files is :mod:`tools.cli.roots`, which
``mekong governance`` uses too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from ledger.errors import DecodeError, VerificationError
from ledger.governance import check_thresholds, verify_genesis
from ledger.roots import Member, Root, SignedRoot
from tools.cli.roots import describe_root, load_signed_root, merge_signed, root_lines, sign_command, signers
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
    read_bytes,
    write_bytes,
)

__all__ = ["genesis"]

_HASH = HashParam(32, "root hash")


def _members_from_file(path: Path) -> list[Member]:
    try:
        doc = json.loads(read_bytes(path, "members file", 1 << 20))
    except ValueError as e:
        raise ToolError(f"{path} is not JSON: {e}") from None
    items = doc.get("members") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ToolError(f"{path}: expected a JSON array of members (or {{\"members\": [...]}})")
    out = []
    for i, m in enumerate(items):
        where = f"{path} member {i}"
        if not isinstance(m, dict):
            raise ToolError(f"{where}: expected an object")
        try:
            admin = m.get("admin_keys", [m["admin_key"]] if "admin_key" in m else None)
            endpoints = m.get("endpoints", [m["endpoint"]] if "endpoint" in m else None)
            if not isinstance(admin, list) or not isinstance(endpoints, list):
                raise KeyError("admin_keys or endpoints")
            out.append(Member(str(m["id"]), str(m["name"]), tuple(_key_in(path, k) for k in admin),
                              _key_in(path, m["node_key"]), tuple(str(e) for e in endpoints)))
        except KeyError as e:
            raise ToolError(f"{where}: missing field {e}; each member needs id, name, admin_keys, node_key, "
                            "endpoints") from None
        except DecodeError as e:
            raise ToolError(f"{where}: {e}") from None
    return out


def _key_in(base: Path, value: object) -> bytes:
    text = str(value)
    p = Path(text)
    if not p.is_absolute() and not p.exists() and (base.parent / p).exists():
        text = str(base.parent / p)
    return public_key_arg(text)


def _members_from_options(ids: Sequence[str], names: Sequence[str], admin: Sequence[str], node: Sequence[str],
                          endpoints: Sequence[str]) -> list[Member]:
    counts = {"--member": len(ids), "--name": len(names), "--admin-key": len(admin), "--node-key": len(node),
              "--endpoint": len(endpoints)}
    if len(set(counts.values())) != 1:
        raise click.UsageError("give --member, --name, --admin-key, --node-key and --endpoint once per member, "
                               "in the same order (got " + ", ".join(f"{k} x{v}" for k, v in counts.items())
                               + "); for several admin keys or endpoints per member use --members FILE.json")
    out = []
    for i, mid in enumerate(ids):
        try:
            out.append(Member(mid, names[i], (public_key_arg(admin[i]),), public_key_arg(node[i]),
                              (endpoints[i],)))
        except DecodeError as e:
            raise click.UsageError(f"member {mid}: {e}") from None
    return out


def _safe_default(n: int, faulty: int) -> int:
    return (n + faulty) // 2 + 1


@click.group()
def genesis() -> None:
    """Found a network: draft the genesis root, have every founder sign it, assemble it.

    \b
    1. One founder runs 'genesis draft' with everyone's PUBLIC keys and shares draft.cbor.
    2. All founders compare the printed root hash with each other out of band
       (phone, video call): it must be the same for everyone.
    3. Each founder runs 'genesis sign draft.cbor --key MY-admin.key --expect-hash H' offline.
    4. Anyone runs 'genesis assemble draft.cbor signed-*.cbor --out genesis.cbor';
       every node and verifier then pins the hash it prints.
    """


@genesis.command("draft")
@click.option("--network", required=True, help="Network id, such as gms.")
@click.option("--member", "ids", multiple=True, type=MemberParam(), help="A founder's member id (repeat per member).")
@click.option("--name", "names", multiple=True, help="The founder's name (repeat per member, same order).")
@click.option("--admin-key", "admin_keys", multiple=True, metavar="FILE",
              help="The founder's admin key: its key file, a .pub file or 64 hex digits (repeat per member).")
@click.option("--node-key", "node_keys", multiple=True, metavar="FILE",
              help="The founder's node key: key file, .pub file or hex (repeat per member).")
@click.option("--endpoint", "endpoints", multiple=True, metavar="URL",
              help="The founder's node URL, such as https://node.customs.gov.vn (repeat per member).")
@click.option("--members", "members_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON list of members: {id, name, admin_keys: [...], node_key, endpoints: [...]};"
                   " key paths are relative to the file.")
@click.option("--faulty", type=click.IntRange(min=0), default=1, show_default=True,
              help="f: how many members may be faulty, even malicious.")
@click.option("--quorum", type=click.IntRange(min=1),
              help="Cosignatures that make a checkpoint final. Default: the smallest safe value, floor((n+f)/2)+1.")
@click.option("--threshold", type=click.IntRange(min=1),
              help="Member signatures needed on the next root. Default: the smallest safe value.")
@click.option("--issued-at", type=TimeParam(), help="The root's time (default: now).")
@click.option("--expires", type=TimeParam(), help="When the root stops being valid as the head (default: never).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Draft file to write.")
@json_option
def draft(network: str, ids: tuple[str, ...], names: tuple[str, ...], admin_keys: tuple[str, ...],
          node_keys: tuple[str, ...], endpoints: tuple[str, ...], members_file: Path | None, faulty: int,
          quorum: int | None, threshold: int | None, issued_at: int | None, expires: int | None, out: Path,
          as_json: bool) -> None:
    """Write the unsigned genesis root and print its hash for the founders to compare.

    Give each founder's --member, --name, --admin-key, --node-key and --endpoint (once
    per member, in the same order), or a --members FILE.json. Only public keys are read.

    \b
    Example:
      mekong genesis draft --network gms --faulty 1 --quorum 4 --threshold 4 \\
        --member VN --name "Viet Nam Customs" --admin-key VN-admin.key.pub \\
        --node-key VN-node.key.pub --endpoint https://vn.example:7101 \\
        --member TH ... --out draft.cbor
    """
    members = _members_from_options(ids, names, admin_keys, node_keys, endpoints)
    if members_file is not None:
        members += _members_from_file(members_file)
    if not members:
        raise click.UsageError("no members: give --member ... for each founder, or --members FILE.json")
    n = len(members)
    quorum = quorum or _safe_default(n, faulty)
    threshold = threshold or _safe_default(n, faulty)
    try:
        check_thresholds(n, faulty, quorum, threshold)
    except VerificationError as e:
        raise click.UsageError(str(e)) from None
    try:
        root = Root(network=network, version=1, previous=None, members=tuple(sorted(members, key=lambda m: m.id)),
                    quorum=quorum, threshold=threshold, faulty=faulty,
                    issued_at=now() if issued_at is None else issued_at, expires=expires)
    except DecodeError as e:
        raise click.UsageError(str(e)) from None
    signed = SignedRoot.create(root)
    write_bytes(out, signed.to_cbor())
    doc = describe_root(signed)
    doc["file"] = str(out)
    emit(as_json, doc, root_lines(doc) + [
        f"wrote {out}",
        f"ROOT HASH {signed.root_hash.hex()}",
        "Compare this hash with every founder out of band before anyone signs."])


@genesis.command("sign")
@click.argument("draft_file", metavar="DRAFT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your admin key file (encrypted); stays on this machine.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write your signature to, such as signed-VN.cbor.")
@click.option("--expect-hash", type=_HASH, help="Refuse to sign unless the draft has this root hash.")
@passphrase_options
@json_option
def sign(draft_file: Path, key: Path, out: Path, expect_hash: bytes | None, passphrase_env: str | None,
         passphrase_fd: int | None, as_json: bool) -> None:
    """Sign the genesis draft with your admin key (offline).

    Check the draft first ('mekong governance show --chain DRAFT'), and pass the hash the
    founders agreed on as --expect-hash so that a swapped file is refused.
    """
    signed = load_signed_root(draft_file, "draft root")
    if signed.root.version != 1:
        raise ToolError(f"{draft_file} is root version {signed.root.version}, not a genesis draft; "
                        "use 'mekong governance sign'")
    sign_command(draft_file, key, out, expect_hash, passphrase_env, passphrase_fd, as_json)


@genesis.command("assemble")
@click.argument("draft_file", metavar="DRAFT", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("signed_files", metavar="SIGNED...", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The genesis file to write.")
@json_option
def assemble(draft_file: Path, signed_files: tuple[Path, ...], out: Path, as_json: bool) -> None:
    """Merge every founder's signature into the genesis root and check it.

    Runs every genesis rule (spec 5.4.1): thresholds, each signature, and a signature
    from every founding member. Refuses, naming the founders whose signatures are
    missing, and writes nothing until all are there. Prints the hash to pin.
    """
    base = load_signed_root(draft_file, "draft root")
    merged = merge_signed(base, signed_files)
    who = signers(merged, merged.root)
    try:
        verify_genesis(merged)
    except VerificationError as e:
        missing = [m for m in merged.root.member_ids if m not in who["valid"]]
        if missing:
            raise ToolError(f"cannot assemble the genesis: no signature yet from founding members "
                            f"{', '.join(missing)}; all {len(merged.root.members)} must sign (signed so far: "
                            f"{', '.join(who['valid']) or 'none'})") from None
        raise ToolError(f"cannot assemble the genesis: {e}") from None
    write_bytes(out, merged.to_cbor())
    doc = describe_root(merged)
    doc["file"] = str(out)
    emit(as_json, doc, root_lines(doc) + [f"wrote {out}", f"GENESIS HASH {merged.root_hash.hex()}",
                                          "Every node and verifier pins this hash (--pin)."])
