"""Signing and submitting one entry, for the commands of member administrators and issuers (no commands here).

:func:`entry_options` are the options every such command shares (node, key file, passphrase, root version,
waiting for finality, ``--json``); :func:`submit_entry` signs the entry, submits it to the member's own node
and prints what happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nacl.signing

from ledger.bodies import Body
from ledger.entries import make_entry
from ledger.keys import key_id, public_key_of
from ledger.merkle import leaf_hash
from tools.cli.util import emit, json_option, now, passphrase_options
from tools.client.http import NodeClient

__all__ = ["entry_options", "submit_entry"]

F = TypeVar("F", bound=Callable[..., Any])


def entry_options(key_help: str) -> Callable[[F], F]:
    """The options of every command that signs and submits an entry: node, key, root version, waiting."""

    def deco(f: F) -> F:
        f = json_option(f)
        f = click.option("--wait-final/--no-wait-final", default=True, show_default=True,
                         help="Wait until a final (quorum-cosigned) checkpoint covers the entry.")(f)
        f = click.option("--root-version", type=click.IntRange(min=1),
                         help="Governance root version you act under (default: the node's current one).")(f)
        f = passphrase_options(f)
        f = click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
                         help=key_help)(f)
        f = click.option("--node", required=True, metavar="URL",
                         help="The member's own node, such as http://127.0.0.1:7101.")(f)
        return f

    return deco


def submit_entry(node: str, log: str, body: Body, signing_key: nacl.signing.SigningKey, *,
                 root_version: int | None, wait_final: bool, as_json: bool, time: int | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sign ``body`` as an entry of ``log``, submit it to ``node``, and report the result.

    Returns:
        The JSON document printed (also printed as text unless ``as_json``).

    Raises:
        ClientError: the node is unreachable or refused the entry (its message names the rule).
        DecodeError: a field of the entry is malformed.
    """
    client = NodeClient(node)
    version = root_version or client.current_root_version()
    raw = make_entry(log, body.TYPE, now() if time is None else time, body, signing_key, root=version)
    answer = client.submit_entries(log, [raw], wait_final=wait_final)
    index = answer["indices"][0] if answer.get("indices") else None
    doc: dict[str, Any] = {
        "node": client.url, "log": log, "type": body.TYPE, "index": index, "size": answer.get("size"),
        "root_version": version, "signer_key_id": key_id(public_key_of(signing_key)).hex(),
        "leaf_hash": leaf_hash(raw).hex(), "entry_sha256": hashlib.sha256(raw).hexdigest(),
        "final_size": answer.get("final_size"), "final": bool(answer.get("final_size")),
        **(extra or {}),
    }
    lines = [f"{body.TYPE} stored in log {log} at index {index} by node {client.url}"]
    lines += [f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in (extra or {}).items()
              if v is not None]
    if wait_final:
        lines.append(f"final: a checkpoint of size {doc['final_size']} covers it" if doc["final"] else
                     "not final yet: the witness quorum did not answer in time; it will become final later")
    emit(as_json, doc, lines)
    return doc
