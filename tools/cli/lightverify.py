"""Light verification for ``mekong verify`` and ``verify-signature``, and proof bundles for ``mekong credential bundle`` (no commands here).

The light verifier (specs/state.md S.7) needs no replica: it keeps only the governance chain (a small
file, ``roots.cbor``, in the replica directory, walked from the pinned genesis every time it is read)
and asks a node for state proofs of the few registry records one credential needs. Everything a node
answers is checked before it is believed (:mod:`credentials.bundle`); the answers are kept as a
:class:`~credentials.bundle.ProofBundle`, which ``--bundle`` verifies again with no network.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from credentials.bundle import OpenedAnswer, ProofBundle, light_view, open_answers, open_bundle, required_document_keys
from credentials.cwt import UnverifiedCredential
from credentials.docsig import SignedDocument, UnverifiedDocumentSignature
from credentials.view import RegistryView
from ledger import cbor
from ledger.errors import DecodeError, MekongError
from ledger.governance import GovernanceChain, walk
from ledger.roots import SignedRoot
from ledger.state import StateKey
from tools.cli.util import HashParam, ToolError, default_replica_dir, read_bytes
from tools.client.http import NodeClient, fetch_roots
from tools.client.light import fetch_bundle, fetch_document_bundle, log_answer

__all__ = ["ROOTS_FILE", "fetch_light", "load_chain", "lookup_options", "open_bundle_file", "proof_line",
           "proven_state"]

ROOTS_FILE = "roots.cbor"
_MAX_ROOTS_FILE = 1 << 22


def lookup_options(f: Any) -> Any:
    """``--node`` (repeat), ``--pin``, ``--replica`` and ``--json``: the options of the verified lookups."""
    f = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")(f)
    f = click.option("--replica", "replica_dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="MEKONG_REPLICA", help="Where the governance roots are cached.")(f)
    f = click.option("--pin", type=HashParam(32, "genesis hash"), envvar="MEKONG_PIN",
                     help="The genesis hash you trust (needed the first time).")(f)
    return click.option("--node", "nodes", multiple=True, required=True, metavar="URL",
                        help="A node to ask (repeat for several). Its answer is verified, not trusted.")(f)


def _cache(replica_dir: Path | None) -> Path:
    return (replica_dir or default_replica_dir()) / ROOTS_FILE


def _cached(path: Path) -> list[SignedRoot]:
    if not path.exists():
        return []
    try:
        items = cbor.decode(read_bytes(path, "cached governance roots", _MAX_ROOTS_FILE))
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise DecodeError("not a CBOR array of byte strings")
        return [SignedRoot.from_cbor(i) for i in items]
    except DecodeError as e:
        raise ToolError(f"{path} is not a governance roots cache ({e}); delete it and run again") from None


def load_chain(nodes: list[NodeClient], replica_dir: Path | None, pin: bytes | None) -> GovernanceChain:
    """The governance chain: the cached roots, plus any newer ones a node serves, walked from the pinned genesis.

    The cache is rewritten when roots were added. Without ``--pin`` the cached genesis is the pin (it was
    pinned when the cache was made).

    Raises:
        ToolError: no pin and no cache, or the roots do not walk from the pinned genesis.
    """
    path = _cache(replica_dir)
    cached = _cached(path)
    if pin is None:
        if not cached:
            raise ToolError("give the genesis hash you trust: --pin HASH (needed the first time)")
        pin = next(r.root_hash for r in cached if r.root.version == 1)
    held = {r.root.version for r in cached}
    fetched: list[SignedRoot] = []
    for client in nodes:
        try:
            versions, _ = client.root_versions()
            if set(versions) | {1} <= held:
                break
            genesis, later = fetch_roots(client)
            fetched = [genesis, *later]
            break
        except MekongError:
            continue
    candidates = [r for r in cached + fetched if r.root.version != 1]
    first = next((r for r in cached + fetched if r.root.version == 1), None)
    if first is None:
        raise ToolError("no node served the genesis, and none is cached")
    try:
        chain = walk(first, candidates, pin)
    except MekongError as e:
        raise ToolError(f"the governance roots do not walk from the pinned genesis: {e}") from None
    if fetched:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(cbor.encode([chain.signed(r.version).to_cbor() for r in chain.roots]))
        os.replace(tmp, path)
    return chain


def fetch_light(nodes: list[NodeClient], replica_dir: Path | None, pin: bytes | None, subject: bytes | SignedDocument,
                as_member: str) -> tuple[ProofBundle | None, RegistryView]:
    """Fetch, check and open everything the light verification of ``subject`` (a credential's bytes, or a
    document with its signature) needs.

    A subject that does not decode needs nothing from the ledger but its governance root: the bundle is
    None and the view empty, and the engine's step 1 gives the verdict (FORMAT_FAILURE), as with ``--full``.
    """
    try:
        if isinstance(subject, SignedDocument):
            UnverifiedDocumentSignature.decode(subject.signature)
        else:
            UnverifiedCredential.decode(subject)
        decodes = True
    except DecodeError:
        decodes = False
    # A file that is no credential is judged first: with the cached chain alone when there is one.
    chain = load_chain(nodes if decodes or not _cache(replica_dir).exists() else [], replica_dir, pin)
    if as_member not in chain.current.member_ids:
        raise click.UsageError(f"{as_member} is not a member of network {chain.current.network} (governance root"
                               f" v{chain.current.version}: {', '.join(chain.current.member_ids)})")
    if not decodes:
        return None, light_view(chain, [])
    try:
        if isinstance(subject, SignedDocument):
            bundle = fetch_document_bundle(nodes, chain, subject.signature, as_member)
            # the logs the node showed a final checkpoint of (fetch_document_bundle leaves out the others)
            needed = required_document_keys(subject.signature, as_member, [log for log, _ in bundle.answers])[0]
            return bundle, open_answers(bundle, chain.signed(1).root_hash, needed)
        bundle = fetch_bundle(nodes, chain, subject, as_member)
        return bundle, open_bundle(bundle, chain.signed(1).root_hash, subject, as_member)
    except MekongError as e:
        raise ToolError(str(e)) from None


def open_bundle_file(path: Path, pin: bytes | None, replica_dir: Path | None, credential: bytes,
                     as_member: str) -> tuple[ProofBundle, RegistryView]:
    """Read and check a proof bundle file for ``credential`` against the pinned genesis (``--pin``, else cached)."""
    if pin is None:
        cached = _cached(_cache(replica_dir))
        if not cached:
            raise ToolError("give the genesis hash you trust: --pin HASH")
        pin = next(r.root_hash for r in cached if r.root.version == 1)
    try:
        bundle = ProofBundle.decode(read_bytes(path, "proof bundle", 1 << 20))
        return bundle, open_bundle(bundle, pin, credential, as_member)
    except MekongError as e:
        raise ToolError(f"{path}: {e}") from None


def proven_state(nodes: list[NodeClient], replica_dir: Path | None, pin: bytes | None, log: str,
                 keys: list[StateKey]) -> tuple[OpenedAnswer, RegistryView]:
    """Ask the nodes in turn for ``keys`` of ``log``: the first answer that checks out (spec S.7.1), and the
    engine's view over it (records as of its final checkpoint).

    Raises:
        ToolError: no node gave a verifiable answer (the message names each failure).
    """
    chain = load_chain(nodes, replica_dir, pin)
    failures = []
    for client in nodes:
        try:
            _, opened = log_answer(client, chain, log, keys, time.sleep)
            return opened, light_view(chain, [opened])
        except MekongError as e:
            failures.append(f"{client.url}: {e}")
    raise ToolError("no node gave a verifiable answer: " + "; ".join(failures))


def proof_line(opened: OpenedAnswer, now_: int) -> str:
    """Where a looked-up answer comes from, for people."""
    cp = opened.checkpoint
    seen = max(cp.seen or cp.times or (0,))
    return (f"proven against the state root of log {opened.log}'s final checkpoint of size {cp.size}"
            f" (cosigned by {len(cp.cosignatures)} members, newest cosignature {max(0, now_ - seen)} s ago)")
