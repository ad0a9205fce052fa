"""``mekong keys``: make encrypted Ed25519 key files and show their public halves.

Key files are the format of :mod:`node.keystore` (specs/08-keyfiles-config.md
section 8.1): the seed sealed under an Argon2id-derived key, the public key and
a label in the clear. ``keys show`` reads only the clear part, so it needs no
passphrase, and prints the identifiers other people need: the ledger key id
(:func:`ledger.keys.key_id`) and the C2SP verifier keys of a node key
(:func:`ledger.checkpoint.log_origin`, :func:`ledger.checkpoint.witness_name`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.checkpoint import CosignatureVerifier, log_origin, witness_name
from ledger.keys import key_id, next_key_digest
from ledger.note import NoteVerifier
from node import keystore
from tools.cli.util import (
    MemberParam,
    ToolError,
    emit,
    json_option,
    passphrase_options,
    public_key_arg,
    read_passphrase,
)

__all__ = ["key_identifiers", "keys"]

_STRENGTHS = {
    "moderate": (keystore.OPSLIMIT_MODERATE, keystore.MEMLIMIT_MODERATE),
    "interactive": (keystore.OPSLIMIT_INTERACTIVE, keystore.MEMLIMIT_INTERACTIVE),
}


@click.group()
def keys() -> None:
    """Make encrypted key files and show their public keys and identifiers.

    One Ed25519 key per role: a member's admin key (signs issuer registrations,
    policies and governance roots), a node key (signs the member's checkpoints and
    its witness cosignatures), and each issuer's signing keys.
    """


@keys.command("generate")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The key file to create (it must not exist). FILE.pub gets the public key in hex.")
@click.option("--label", default="", help="A name stored in the clear, such as 'VN admin key'.")
@click.option("--kdf", type=click.Choice(sorted(_STRENGTHS)), default="moderate", show_default=True,
              help="Argon2id strength: moderate (about a second to open) or interactive (faster, weaker).")
@click.option("--insecure-fast-kdf", is_flag=True, hidden=True,
              help="Use libsodium's minimum Argon2id limits. Tests only: offers almost no protection.")
@passphrase_options
@json_option
def generate(out: Path, label: str, kdf: str, insecure_fast_kdf: bool, passphrase_env: str | None,
             passphrase_fd: int | None, as_json: bool) -> None:
    """Generate a new Ed25519 key and write it as an encrypted key file.

    The passphrase comes from --passphrase-env VAR, --passphrase-fd N, or is asked
    for twice. The file is written with mode 0600; nothing secret is printed.
    FILE.pub receives the public key (64 hex digits) to hand to other people.

    \b
    Example:
      mekong keys generate --out VN-admin.key --label "VN admin key"
    """
    if out.exists():
        raise ToolError(f"{out} already exists; refusing to overwrite a key file")
    ops, mem = (keystore.OPSLIMIT_MIN, keystore.MEMLIMIT_MIN) if insecure_fast_kdf else _STRENGTHS[kdf]
    pp = read_passphrase(passphrase_env, passphrase_fd, prompt=f"New passphrase for {out}", confirm=True)
    public = keystore.generate_key_file(out, pp, label, opslimit=ops, memlimit=mem)
    pub_file = out.with_name(out.name + ".pub")
    try:
        pub_file.write_text(f"{public.hex()}\n")
    except OSError as e:
        raise ToolError(f"wrote {out} but cannot write {pub_file}: {e.strerror or e}") from None
    doc = {"file": str(out), "public_key_file": str(pub_file), "label": label, "public_key": public.hex(),
           "key_id": key_id(public).hex()}
    emit(as_json, doc, [f"wrote {out} (encrypted) and {pub_file}",
                        f"public key: {public.hex()}", f"key id:     {key_id(public).hex()}"])


def key_identifiers(public: bytes, network: str | None, member: str | None) -> dict[str, Any]:
    """The identifiers of a public key: hex, ledger key id, pre-rotation digest, and C2SP verifier keys.

    The verifier keys are given only when both ``network`` and ``member`` are:
    they name the member's log (type 0x01, checkpoints) and witness (type 0x04, cosignatures).
    """
    doc: dict[str, Any] = {"public_key": public.hex(), "key_id": key_id(public).hex(),
                           "next_key_digest": next_key_digest(public).hex()}
    if network is not None and member is not None:
        try:
            origin, witness = log_origin(network, member), witness_name(network, member)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--network/--member") from None
        doc["network"], doc["member"] = network, member
        doc["checkpoint_vkey"] = NoteVerifier(origin, public).verifier_key
        doc["cosignature_vkey"] = CosignatureVerifier(witness, public).verifier_key
    return doc


@keys.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--network", default="gms", show_default=True, help="Network id used to name the verifier keys.")
@click.option("--member", type=MemberParam(),
              help="Member whose node key this is; adds its C2SP checkpoint and cosignature verifier keys.")
@json_option
def show(file: Path, network: str, member: str | None, as_json: bool) -> None:
    """Show a key file's public key and identifiers; no passphrase needed.

    FILE is an encrypted key file or a .pub file. Printed: the public key, the
    ledger key id (what entries, credentials and root signatures name as kid), the
    pre-rotation digest (what issuer add-key --next-key commits to) and, with
    --member, the C2SP verifier keys of the member's log (checkpoints, type 0x01)
    and witness (cosignatures, type 0x04) for transparency-log tooling.
    """
    label: str | None = None
    kdf: dict[str, int] | None = None
    try:
        kf = keystore.read_key_file(file)
        public, label, kdf = kf.public_key, kf.label, {"opslimit": kf.opslimit, "memlimit": kf.memlimit}
    except keystore.KeyFileError as e:
        try:
            public = public_key_arg(str(file))
        except ToolError:
            raise e from None
    doc = {"file": str(file), "label": label, "kdf": kdf, **key_identifiers(public, network, member)}
    lines = [f"file:            {file}" + (f" (encrypted key file, label {label!r})" if kdf else " (public key)"),
             f"public key:      {doc['public_key']}",
             f"key id:          {doc['key_id']}",
             f"next-key digest: {doc['next_key_digest']}"]
    if "checkpoint_vkey" in doc:
        lines += [f"checkpoint vkey:  {doc['checkpoint_vkey']}", f"cosignature vkey: {doc['cosignature_vkey']}"]
    else:
        lines.append("(add --member M [--network N] for the C2SP verifier keys of a node key)")
    emit(as_json, doc, lines)
