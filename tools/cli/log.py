"""``mekong log show``: a member log's final checkpoint, verified, for operators and businesses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.errors import MekongError
from ledger.finality import open_signed, root_reference, state_reference
from tools.cli.lightverify import load_chain, lookup_options
from tools.cli.util import MemberParam, ToolError, emit, now
from tools.client.http import NodeClient

__all__ = ["log_group"]


@click.group("log")
def log_group() -> None:
    """Look at a member log."""


@log_group.command("show")
@click.argument("member", type=MemberParam())
@lookup_options
def show(member: str, nodes: tuple[str, ...], pin: bytes | None, replica_dir: Path | None, as_json: bool) -> None:
    """Show a log's newest final checkpoint (size, roots, cosigners), verified from the pinned genesis.

    With several --node, each node's checkpoint is shown, a node that lags is named, and two final
    checkpoints of one size with different roots (a split view) end in exit status 4.
    """
    clients = [NodeClient(u) for u in nodes]
    chain = load_chain(clients, replica_dir, pin)
    at = now()
    seen: list[dict[str, Any]] = []
    for client in clients:
        try:
            note = client.checkpoint(member)
            if note is None:
                seen.append({"node": client.url, "error": "no final checkpoint yet"})
                continue
            _, cp, fin = open_signed(note, chain, member)
            fin.require_final()
        except MekongError as e:
            seen.append({"node": client.url, "error": str(e)})
            continue
        version, _ = root_reference(cp)
        seen.append({"node": client.url, "size": cp.size, "root_hash": cp.root_hash.hex(),
                     "state_root": state_reference(cp).hex(), "governance_version": version,
                     "cosigners": dict(sorted(fin.cosigners.items())), "witnessed_time": fin.witnessed_time})
    good = [s for s in seen if "size" in s]
    if not good:
        raise ToolError("no node showed a verifiable final checkpoint of log " + member + ": "
                        + "; ".join(f"{s['node']}: {s['error']}" for s in seen))
    newest = max(s["size"] for s in good)
    roots: dict[int, dict[str, str]] = {}  # size -> root -> the first node that showed it
    for s in good:
        roots.setdefault(s["size"], {}).setdefault(s["root_hash"], s["node"])
    splits = [f"log {member}: two final checkpoints of size {size} with different roots: "
              + ", ".join(f"{node} shows {root[:16]}..." for root, node in by_root.items())
              for size, by_root in sorted(roots.items()) if len(by_root) > 1]
    lines = []
    for s in seen:
        if "error" in s:
            lines.append(f"{s['node']}: {s['error']}")
            continue
        lag = "" if s["size"] == newest else f"  LAGGING: {newest - s['size']} entries behind another node"
        lines += [(f"{s['node']}: log {member} final at size {s['size']} under governance root v{s['governance_version']}"
                  f", witnessed {max(0, at - s['witnessed_time'])} s ago{lag}"),
                  f"  root {s['root_hash']}", f"  state root {s['state_root']}",
                  "  cosigned by " + ", ".join(f"{w}@{t}" for w, t in s["cosigners"].items())]
    emit(as_json, {"log": member, "nodes": seen, "newest_final_size": newest, "split_views": splits},
         lines + [f"SPLIT VIEW: {x}" for x in splits])
    if splits:  # more than f members cosigned two histories: say so on stderr and in the exit status too
        raise ToolError("SPLIT VIEW: " + "; ".join(splits) + " (more than f members cosigned two histories; "
                        "keep both checkpoints: mekong verify --full stores them as evidence)")
