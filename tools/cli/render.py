"""Text renderings shared by several ``mekong`` command groups (no commands here)."""

from __future__ import annotations

__all__ = ["render_status"]


def render_status(status: dict[str, object]) -> str:
    """The text form of a node's status, for people."""
    logs = status["logs"]
    assert isinstance(logs, dict)
    title = f"node {status['member']} of network {status['network']}, governance root version {status['root_version']}"
    lines = [title, f"{'log':<5} {'stored':>8} {'final':>8}"]
    for m, v in logs.items():
        final = v["final_size"] if v["final_size"] is not None else "-"
        mark = "  (own)" if m == status["member"] else ""
        lines.append(f"{m:<5} {v['size']:>8} {final!s:>8}{mark}")
    witnesses = status.get("witnesses") or {}
    assert isinstance(witnesses, dict)
    own = logs.get(status["member"], {}).get("size", 0)
    if witnesses:
        lines.append("witness lag on the own log (entries not yet cosigned by each peer):")
        for peer, size in witnesses.items():
            lines.append(f"  {peer}: {'never answered' if size is None else own - size}")
    return "\n".join(lines)
