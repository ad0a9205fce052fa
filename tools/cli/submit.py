"""Signing and submitting one entry, for the commands of member administrators and issuers (no commands here).

:func:`entry_options` are the options every such command shares (node, key file, passphrase, root version,
waiting for finality, ``--json``); :func:`submit_entry` signs the entry, submits it to the member's own node
and prints what happened.
"""

from __future__ import annotations

import hashlib
import re
import time as _time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nacl.signing

from ledger.bodies import Body
from ledger.checkpoint import Checkpoint
from ledger.entries import make_entry
from ledger.keys import key_id, public_key_of
from ledger.merkle import leaf_hash
from ledger.note import Note
from tools.cli.util import EXIT_INDETERMINATE, ToolError, emit, json_option, now, passphrase_options
from tools.client.http import NodeClient, NodeRefused

__all__ = ["entry_options", "submit_entry"]

F = TypeVar("F", bound=Callable[..., Any])


#: Default seconds a submission waits for finality.
WAIT_TIMEOUT = 30.0


def entry_options(key_help: str) -> Callable[[F], F]:
    """The options of every command that signs and submits an entry: node, key, root version, waiting."""

    def deco(f: F) -> F:
        f = json_option(f)
        f = click.option("--wait-final/--no-wait-final", default=True, show_default=True,
                         help="Wait until a final (quorum-cosigned) checkpoint covers the entry; exit status 2"
                              " if it is stored but not final within --wait-timeout.")(f)
        f = click.option("--wait-timeout", type=click.FloatRange(min=0), default=WAIT_TIMEOUT, show_default=True,
                         expose_value=False, callback=_remember_timeout,
                         help="Seconds to wait for finality, with progress on stderr.")(f)
        f = click.option("--root-version", type=click.IntRange(min=1),
                         help="Governance root version you act under (default: the node's current one).")(f)
        f = passphrase_options(f)
        f = click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
                         help=key_help)(f)
        f = click.option("--node", required=True, metavar="URL",
                         help="The member's own node, such as http://127.0.0.1:7101.")(f)
        return f

    return deco


def _remember_timeout(ctx: click.Context, _param: click.Parameter, value: float) -> float:
    ctx.meta["mekong.wait_timeout"] = value
    return value


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
    ctx = click.get_current_context(silent=True)
    wait_timeout = float(ctx.meta.get("mekong.wait_timeout", WAIT_TIMEOUT)) if ctx is not None else WAIT_TIMEOUT
    client = NodeClient(node)
    version = root_version or client.current_root_version()
    raw = make_entry(log, body.TYPE, now() if time is None else time, body, signing_key, root=version)
    try:
        answer = client.submit_entries(log, [raw], wait_final=False)
    except NodeRefused as e:
        if e.status in (403, 409, 422):  # a ledger rule: say that nothing was written, and which rule
            detail = re.sub(r"^log [A-Z]{2} entry \d+: ", "", e.detail)
            raise ToolError(f"{body.TYPE} refused by node {client.url}, nothing was written: {detail}") from None
        raise
    index = answer["indices"][0] if answer.get("indices") else None
    if wait_final and index is not None:
        answer["final_size"] = _wait_final(client, log, index, wait_timeout)
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
                     f"STORED, NOT FINAL YET: no quorum of witnesses cosigned it within {wait_timeout:g} s; it becomes"
                     " final when enough witnesses answer (check with mekong node status); exit status 2")
    emit(as_json, doc, lines)
    if wait_final and not doc["final"]:
        raise click.exceptions.Exit(EXIT_INDETERMINATE)
    return doc


def _wait_final(client: NodeClient, log: str, index: int, timeout: float) -> int | None:
    """The size of the first final checkpoint covering entry ``index``; None after ``timeout`` seconds.

    Long polls of at most 2 s (api A.7.2 ``wait``): answered as soon as the checkpoint is final, with a
    progress line on stderr between polls.
    """
    started = _time.monotonic()
    while True:
        left = timeout - (_time.monotonic() - started)
        note = client.checkpoint(log, covering=index, wait=max(0, min(2, int(left))))
        if note is not None:
            return Checkpoint.parse(Note.parse(note).text).size
        waited = _time.monotonic() - started
        if waited >= timeout:
            return None
        click.echo(f"waiting for a final checkpoint covering entry {index} of log {log} ({waited:.0f} s of"
                   f" {timeout:g} s)...", err=True)
        if left < 1:
            _time.sleep(max(0.0, left))
