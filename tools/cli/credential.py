"""``mekong credential`` and ``mekong sign``: what issuers and signers do.

- ``credential issue`` signs a profile (:mod:`credentials.profiles`) read from
  JSON as a CWT credential (:func:`credentials.issue.issue_credential`), offline.
- ``credential anchor`` puts its digest on the issuer's member log
  (``credential.anchor``), which later gives it a proof of existence;
  ``revoke``, ``suspend`` and ``reinstate`` publish its status
  (``credential.status``). These are entries signed with an issuer key and
  submitted like the administrators' (:func:`tools.cli.submit.submit_entry`).
- ``sign`` makes a detached document signature (:func:`credentials.docsig.sign_document`);
  ``mekong verify-signature`` (:mod:`tools.cli.verify`) checks one.

Claims files are JSON: the profile's fields by name, byte strings as hex (the
form verification reports print them in).
"""

from __future__ import annotations

import json
import mimetypes
import types
import typing
from pathlib import Path
from typing import Any

import click

from credentials.bundle import bundle_chain
from credentials.bundlenotes import trim_notes
from credentials.cwt import UnverifiedCredential, credential_digest
from credentials.docsig import UnverifiedDocumentSignature, sign_document
from credentials.examples import example
from credentials.fields import Record
from credentials.issue import issue_credential
from credentials.profiles import DOCUMENT_TYPE, PROFILES
from credentials.report import claims_json
from ledger.bodies import CredentialAnchor, CredentialStatus, check_issuer_id, member_of
from ledger.errors import DecodeError
from ledger.keys import key_id, public_key_of
from ledger.roots import SignedRoot
from ledger.state import StateKey
from tools.cli.lightverify import fetch_light, lookup_options, proof_line, proven_state
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
    json_option,
    load_key,
    now,
    passphrase_options,
    read_bytes,
    write_bytes,
)
from tools.client.http import NodeClient

__all__ = ["credential", "profile_from_json", "sign"]

_CTI = HashParam(16, "credential id")


# ---------------------------------------------------------------------------- claims JSON


def _json_to_cbor(tp: Any, value: Any, where: str) -> Any:
    """Turn a JSON value into the CBOR map form of type ``tp``: hex strings to bytes, by the type hints."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return value if value is None or len(args) != 1 else _json_to_cbor(args[0], value, where)
    if tp is bytes:
        if not isinstance(value, str):
            raise DecodeError(f"{where}: expected a hex string")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise DecodeError(f"{where}: {value[:40]!r} is not hex") from None
    if origin is tuple and isinstance(value, list):
        inner = typing.get_args(tp)[0]
        return [_json_to_cbor(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        return {k: _json_to_cbor(hints[k], v, f"{where}.{k}") if k in hints else v for k, v in value.items()}
    return value


def profile_from_json(profile: str, doc: Any) -> Any:
    """Build the profile object of type ``profile`` from its JSON form.

    Raises:
        DecodeError: a field missing, unknown or invalid (the message names it).
    """
    cls = PROFILES[profile]
    if not isinstance(doc, dict):
        raise DecodeError(f"{profile}: expected a JSON object of its fields")
    fields = {k: v for k, v in doc.items() if k != DOCUMENT_TYPE}
    return cls.from_map(_json_to_cbor(cls, fields, cls.__name__), profile)


def _read_claims(path: Path, profile: str | None) -> tuple[str, Any, dict[str, Any]]:
    try:
        doc = json.loads(read_bytes(path, "claims file", 1 << 22))
    except ValueError as e:
        raise ToolError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ToolError(f"{path}: expected a JSON object")
    outer: dict[str, Any] = {}
    if isinstance(doc.get("attestation"), dict):  # the "claims" object of a verification report
        outer, doc = doc, doc["attestation"]
    named = outer.get("type") or doc.get(DOCUMENT_TYPE)
    if profile is None:
        profile = named
    elif named is not None and named != profile:
        raise ToolError(f"{path} holds a {named} attestation, not {profile}")
    if profile not in PROFILES:
        raise click.UsageError(f"say which profile the claims are: --profile {{{','.join(sorted(PROFILES))}}}")
    try:
        return profile, profile_from_json(profile, doc), outer
    except DecodeError as e:
        raise ToolError(f"{path}: {e}") from None


@click.group()
def credential() -> None:
    """Issue credentials, anchor them on the ledger, and publish their status (issuers)."""


@credential.command("template")
@click.option("--profile", required=True, type=click.Choice(sorted(PROFILES)),
              help="The credential profile (document type) to show an example of.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it to this file instead.")
def template(profile: str, out: Path | None) -> None:
    """Print a complete example claims file for a profile, ready to edit and issue.

    Every field the profile has, with example values that validate: edit them,
    then 'mekong credential issue --claims FILE'. Profiles:
    aeo-status, authorised-signatory, certificate-of-origin,
    customs-declaration-summary, e-invoice, legal-entity, phytosanitary-certificate.
    """
    text = json.dumps(example(profile), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        write_bytes(out, text.encode("utf-8"))
        click.echo(f"wrote {out}: edit it, then: mekong credential issue --claims {out} --issuer ID --key KEY --out CRED")


@credential.command("issue")
@click.option("--profile", type=click.Choice(sorted(PROFILES)),
              help="The credential profile (document type); default: the claims file's 'type'.")
@click.option("--claims", "claims_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSON with the profile's fields (byte strings as hex).")
@click.option("--issuer", "issuer_id", required=True, type=IssuerParam(), help="Your issuer id, such as VN/customs-coo.")
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your issuer key file (its key must be on the ledger: issuer add-key).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The credential file to write.")
@click.option("--exp", type=TimeParam(), help="Expiry (Unix seconds or ISO date).")
@click.option("--nbf", type=TimeParam(), help="Not valid before.")
@click.option("--iat", type=TimeParam(), help="Issue time claimed (default: now).")
@click.option("--sub", help="Subject identifier.")
@click.option("--cti", type=_CTI, help="Credential id, 32 hex digits (default: random).")
@passphrase_options
@json_option
def issue(profile: str | None, claims_file: Path, issuer_id: str, key: Path, out: Path, exp: int | None,
          nbf: int | None, iat: int | None, sub: str | None, cti: bytes | None, passphrase_env: str | None,
          passphrase_fd: int | None, as_json: bool) -> None:
    """Sign a credential (a CWT in COSE_Sign1) from a claims file, offline.

    \b
    Example:
      mekong credential issue --profile certificate-of-origin --claims coo.json \\
        --issuer VN/customs-coo --key coo-issuer.key --exp 2027-01-01 --out coo.cbor
      mekong credential anchor coo.cbor --node http://127.0.0.1:7106 --key coo-issuer.key
    """
    profile, attestation, outer = _read_claims(claims_file, profile)
    sub = sub if sub is not None else outer.get("sub")
    exp = exp if exp is not None else outer.get("exp")
    nbf = nbf if nbf is not None else outer.get("nbf")
    signing_key = load_key(key, passphrase_env, passphrase_fd)
    try:
        raw = issue_credential(attestation, issuer_id, signing_key, now() if iat is None else iat, exp=exp, nbf=nbf,
                               sub=sub, cti=cti)
        cred = UnverifiedCredential.decode(raw)
    except DecodeError as e:
        raise click.UsageError(str(e)) from None
    write_bytes(out, raw)
    doc = {"file": str(out), "issuer": issuer_id, "type": profile, "cti": cred.claims.cti.hex(),
           "digest": credential_digest(raw).hex(), "kid": key_id(public_key_of(signing_key)).hex(),
           "iat": cred.claims.iat, "exp": cred.claims.exp}
    emit(as_json, doc, [f"wrote {out}: {profile} credential {doc['cti']} of {issuer_id}",
                        f"key id {doc['kid']}, digest {doc['digest']}",
                        "anchor it on the ledger for a proof of existence: mekong credential anchor"])


@credential.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def show(file: Path, as_json: bool) -> None:
    """Decode a credential and print its claims (nothing is verified: use mekong verify)."""
    try:
        cred = UnverifiedCredential.decode(read_bytes(file, "credential"))
    except DecodeError as e:
        raise ToolError(f"{file} is not a credential: {e}") from None
    doc = claims_json(cred.claims)
    doc.update(kid=cred.kid.hex(), digest=cred.digest.hex())
    title = f"{cred.claims.attestation.TYPE} credential {cred.claims.cti.hex()} (NOT verified: use mekong verify)"
    emit(as_json, doc, [title, *_text_lines(doc)])


def _text_lines(doc: Any, indent: str = "  ") -> list[str]:
    """A JSON document as indented ``key: value`` lines, for people."""
    lines: list[str] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, v in items:
        label = f"{k}" if isinstance(doc, dict) else f"[{k}]"
        if isinstance(v, dict | list) and v:
            lines.append(f"{indent}{label}:")
            lines += _text_lines(v, indent + "  ")
        else:
            lines.append(f"{indent}{label}: {'-' if v is None or v == [] or v == {} else v}")
    return lines


def _subject(path: Path) -> tuple[str | None, bytes | None, bytes, str]:
    """(issuer, credential id, digest, kind) of a credential or a document signature file."""
    data = read_bytes(path, "credential")
    try:
        cred = UnverifiedCredential.decode(data)
        return cred.claims.iss, cred.claims.cti, credential_digest(data), "credential"
    except DecodeError as cred_error:
        try:
            sig = UnverifiedDocumentSignature.decode(data)
            return None, None, sig.digest, "document signature"
        except DecodeError:
            raise ToolError(f"{path} is neither a credential nor a document signature: {cred_error}") from None


@credential.command("anchor")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--issuer", "issuer_id", type=IssuerParam(), help="The issuer (default: the credential's iss).")
@entry_options("An issuer key file of the issuer (a key on the ledger).")
def anchor(file: Path, issuer_id: str | None, node: str, key: Path, passphrase_env: str | None,
           passphrase_fd: int | None, root_version: int | None, wait_final: bool, as_json: bool) -> None:
    """Anchor a credential (or a document signature) on the issuer's member log.

    The first final checkpoint covering the anchor proves the credential existed by
    its witnessed time: it then survives a later revocation of the key for compromise.
    """
    iss, cti, digest, kind = _subject(file)
    issuer_id = issuer_id or iss
    if issuer_id is None:
        raise click.UsageError(f"{file} is a {kind}: give --issuer ID")
    if iss is not None and issuer_id != iss:
        raise click.UsageError(f"{file} was issued by {iss}, not {issuer_id}")
    check_issuer_id(issuer_id)
    body = CredentialAnchor(issuer_id, digest, "sha-256", cti)
    submit_entry(node, member_of(issuer_id), body, load_key(key, passphrase_env, passphrase_fd),
                 root_version=root_version, wait_final=wait_final, as_json=as_json,
                 extra={"issuer": issuer_id, "digest": digest.hex(), "cti": cti.hex() if cti else None})


def _status_command(name: str, status: str, summary: str) -> click.Command:
    @credential.command(name, help=summary)
    @click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--cti", type=_CTI, help="The credential id, instead of the credential FILE.")
    @click.option("--issuer", "issuer_id", type=IssuerParam(), help="The issuer (default: the credential's iss).")
    @click.option("--reason", default="", help="Why (recorded on the ledger).")
    @entry_options("An issuer key file of the credential's issuer.")
    def command(file: Path | None, cti: bytes | None, issuer_id: str | None, reason: str, node: str, key: Path,
                passphrase_env: str | None, passphrase_fd: int | None, root_version: int | None, wait_final: bool,
                as_json: bool) -> None:
        if (file is None) == (cti is None):
            raise click.UsageError("give the credential FILE or --cti HEX (with --issuer)")
        if file is not None:
            iss, cti, _, kind = _subject(file)
            if cti is None or iss is None:
                raise click.UsageError(f"{file} is a {kind}, not a credential")
            if issuer_id is not None and issuer_id != iss:
                raise click.UsageError(f"{file} was issued by {iss}, not {issuer_id}")
            issuer_id = iss
        if issuer_id is None:
            raise click.UsageError("give --issuer ID with --cti")
        assert cti is not None
        body = CredentialStatus(issuer_id, cti, status, reason)
        submit_entry(node, member_of(issuer_id), body, load_key(key, passphrase_env, passphrase_fd),
                     root_version=root_version, wait_final=wait_final, as_json=as_json,
                     extra={"issuer": issuer_id, "cti": cti.hex(), "status": status})

    return command


_status_command("revoke", "revoked", "Revoke a credential for good (verifiers then see TOTAL-FAILED/REVOKED).")
_status_command("suspend", "suspended", "Suspend a credential (verifiers see INDETERMINATE/SUSPENDED until reinstated).")
_status_command("reinstate", "active", "Reinstate a suspended credential.")


# ---------------------------------------------------------------------------- document signatures


@click.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An issuer key file, or your signatory key (with --signer-credential).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Signature file to write.")
@click.option("--document-type", required=True, help="What the document is, such as e-invoice.")
@click.option("--media-type", help="Its media type (default: guessed from the file name).")
@click.option("--file-name", help="The name recorded in the signature (default: FILE's name).")
@click.option("--signer-credential", type=click.Path(dir_okay=False, path_type=Path),
              help="Your authorised-signatory credential, when --key is not an issuer key.")
@click.option("--signed-at", type=TimeParam(), help="Signing time claimed (default: now).")
@click.option("--issuer", "issuer_id", type=IssuerParam(), help="Your issuer id (fills in the anchor command shown).")
@custom_type_option
@passphrase_options
@json_option
def sign(file: Path, key: Path, out: Path, document_type: str, media_type: str | None, file_name: str | None,
         signer_credential: Path | None, signed_at: int | None, issuer_id: str | None, custom_types: bool,
         passphrase_env: str | None, passphrase_fd: int | None, as_json: bool) -> None:
    """Sign a document (an e-invoice, a PDF) with a detached signature.

    The signature covers a hash envelope of FILE (its SHA-256, media type, name, type
    and signing time) and never contains the document. Check it with
    'mekong verify-signature FILE SIG'.
    """
    check_document_types([document_type], custom_types)
    document = read_bytes(file, "document")
    media = media_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    signer = read_bytes(signer_credential, "signer credential") if signer_credential else None
    signing_key = load_key(key, passphrase_env, passphrase_fd)
    try:
        sig = sign_document(document, signing_key, media_type=media, file_name=file_name or file.name,
                            document_type=document_type, signed_at=now() if signed_at is None else signed_at,
                            signer_credential=signer)
    except DecodeError as e:
        raise click.UsageError(str(e)) from None
    write_bytes(out, sig)
    decoded = UnverifiedDocumentSignature.decode(sig)
    doc = {"file": str(out), "document": str(file), "document_type": document_type, "media_type": media,
           "kid": decoded.kid.hex(), "digest": decoded.digest.hex(), "document_sha256": decoded.envelope.digest.hex()}
    emit(as_json, doc, [f"wrote {out}: signature of {file} ({media}) as {document_type}",
                        f"key id {doc['kid']}; signature digest {doc['digest']}",
                        (f"anchor it with: mekong credential anchor {out} --issuer {issuer_id or 'ISSUER'}"
                        f" --node URL --key {key}")])


@credential.command("bundle")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node", "nodes", multiple=True, required=True, metavar="URL",
              help="A node to fetch the proofs from (repeat for several; the first that answers wins). Nodes are "
                   "not trusted: every proof is checked before the bundle is written.")
@click.option("--as-member", required=True, type=MemberParam(), envvar="MEKONG_AS_MEMBER",
              help="The member whose recognition policy the verifier applies (the importer's), such as TH.")
@click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN",
              help="The genesis hash you trust (needed the first time).")
@click.option("--replica", "replica_dir", type=click.Path(file_okay=False, path_type=Path), envvar="MEKONG_REPLICA",
              help="Where the governance roots are cached [default: ~/.config/mekong/replica].")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The bundle file to write.")
def bundle(file: Path, nodes: tuple[str, ...], as_member: str, pin: bytes | None, replica_dir: Path | None,
           out: Path) -> None:
    """Write a proof bundle for a credential: everything 'mekong verify' needs, for a verifier with no network.

    The bundle (one CBOR file, specs/state.md S.7.3) holds the governance chain, the
    state proofs of the credential's issuer, key, anchor and status and of the
    verifier's member policy, and the anchor's proof of existence, all as a node
    served them and checked here. Attach it to the shipment's documents; the border
    post runs:

    \b
      mekong verify cred.cbor --bundle cred.bundle --offline --pin HASH --as-member TH
    """
    raw = read_bytes(file, "credential")
    made, _ = fetch_light([NodeClient(u) for u in nodes], replica_dir, pin, raw, as_member)
    if made is None:
        raise ToolError(f"{file} is not a credential: there is nothing to bundle")
    # each note cut to the lines a verdict reads (S.7.3); the chain is the one fetch_light just verified
    data = trim_notes(made, bundle_chain(made, SignedRoot.from_cbor(made.roots[0]).root_hash)).encode()
    write_bytes(out, data)
    click.echo(f"wrote {out} ({len(data)} bytes): proofs for {', '.join(log for log, _ in made.answers)}"
               f" under governance root v{len(made.roots)}")


@credential.command("status")
@click.argument("issuer_id", metavar="ISSUER", type=IssuerParam())
@click.argument("cti", metavar="CTI", type=_CTI)
@lookup_options
def status(issuer_id: str, cti: bytes, nodes: tuple[str, ...], pin: bytes | None, replica_dir: Path | None,
           as_json: bool) -> None:
    """Show a credential's status history, proven against a final checkpoint of its issuer's log.

    No status entry at all is proven too (a proof of absence): the credential is in force as anchored.
    """
    opened, view = proven_state([NodeClient(u) for u in nodes], replica_dir, pin, member_of(issuer_id),
                                [StateKey("status", (issuer_id, cti))])
    events = view.credential_status(issuer_id, cti)
    current = events[-1].status if events else "active"
    doc = {"issuer": issuer_id, "cti": cti.hex(), "status": current,
           "history": [{"status": e.status, "reason": e.reason, "time": e.time, "entry": e.index} for e in events],
           "proof": {"log": opened.log, "final_size": opened.checkpoint.size}}
    lines = [f"credential {cti.hex()} of {issuer_id}: {current}" + ("" if events else " (no status entry: proven)")]
    lines += [f"  {e.status} from {e.time}" + (f" ({e.reason})" if e.reason else "") + f", entry {e.index}"
              for e in events]
    emit(as_json, doc, [*lines, proof_line(opened, now())])
