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
    witnessed = status.get("witnessed") or {}
    peers = status.get("peers") or {}
    assert isinstance(witnessed, dict) and isinstance(peers, dict)
    own = logs.get(status["member"], {}).get("size", 0)
    now = status.get("time")
    if peers:
        lines.append("peers (reachability; last contact; entries of the own log not yet cosigned):")
        for peer, p in peers.items():
            reach = {True: "reachable", False: "UNREACHABLE", None: "not contacted yet"}[p.get("reachable")]
            last = p.get("last_contact")
            ago = f"{now - last} s ago" if isinstance(now, int) and isinstance(last, int) else "never"
            size = witnessed.get(peer)
            lag = "has cosigned nothing" if size is None else f"lag {own - size}"
            error = f" ({p['last_error']})" if p.get("reachable") is False and p.get("last_error") else ""
            lines.append(f"  {peer}: {reach}{error}; last contact {ago}; {lag}")
    return "\n".join(lines)
