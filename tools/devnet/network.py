"""A local network of member nodes on loopback: one process and one data directory per member.

``create_devnet`` runs the genesis ceremony the way separate agencies would:
every member generates its own encrypted admin and node key files, a draft
root is written, each founder signs the draft with its own admin key, and the
signatures are assembled and checked against every rule
(:func:`ledger.governance.verify_genesis`). Then each member gets a node
configuration. ``start`` launches ``python -m node`` for each member and waits
until every node answers ``/healthz``; ``stop`` sends SIGTERM and waits.

The devnet's key files share one passphrase, given in the environment
variable named by :data:`PASSPHRASE_ENV` (a development default otherwise),
and use light Argon2id limits so a six-member ceremony takes seconds. Real
deployments use ``mekong keys generate`` with the default limits.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from ledger.governance import verify_genesis
from ledger.roots import Member, Root, SignedRoot, root_hash, sign_root
from node.config import Limits, NodeConfig, Peer, write_config
from node.keystore import (
    MEMLIMIT_INTERACTIVE,
    OPSLIMIT_INTERACTIVE,
    generate_key_file,
    load_signing_key,
    read_public_key,
)

#: The six members of the Greater Mekong Subregion, with the agency names the devnet uses.
GMS_MEMBERS: dict[str, str] = {
    "KH": "Cambodia General Department of Customs and Excise",
    "CN": "China General Administration of Customs",
    "LA": "Lao PDR Customs Department",
    "MM": "Myanmar Customs Department",
    "TH": "Thai Customs Department",
    "VN": "Viet Nam General Department of Customs",
}
PASSPHRASE_ENV = "MEKONG_DEVNET_PASSPHRASE"
DEFAULT_PASSPHRASE = "devnet only: never use for real keys"
MANIFEST = "devnet.json"


class DevnetError(RuntimeError):
    """The devnet could not be created, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class DevnetMember:
    """One member of a devnet, as recorded in ``devnet.json``."""

    id: str
    url: str
    config: Path
    admin_key: Path
    node_key: Path
    log: Path


@dataclass(frozen=True, slots=True)
class Devnet:
    """A devnet directory and what is in it."""

    directory: Path
    network: str
    genesis: Path
    genesis_hash: bytes
    members: tuple[DevnetMember, ...]

    def member(self, member_id: str) -> DevnetMember:
        """The member with id ``member_id``.

        Raises:
            DevnetError: no such member.
        """
        for m in self.members:
            if m.id == member_id:
                return m
        raise DevnetError(f"no member {member_id} in the devnet at {self.directory}")

    @classmethod
    def load(cls, directory: str | Path) -> Devnet:
        """Read ``devnet.json`` from ``directory``.

        Raises:
            DevnetError: there is no devnet there.
        """
        d = Path(directory)
        try:
            doc = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise DevnetError(f"no devnet in {d} ({e}); run 'mekong devnet up' first") from e
        members = tuple(DevnetMember(m["id"], m["url"], d / m["config"], d / m["admin_key"], d / m["node_key"],
                                     d / m["log"]) for m in doc["members"])
        return cls(d, doc["network"], d / doc["genesis"], bytes.fromhex(doc["genesis_hash"]), members)


def passphrase() -> bytes:
    """The devnet key files' passphrase."""
    return os.environ.get(PASSPHRASE_ENV, DEFAULT_PASSPHRASE).encode()


def load_key(path: Path) -> nacl.signing.SigningKey:
    """Open one of the devnet's encrypted key files."""
    return load_signing_key(path, passphrase())


def create_devnet(directory: str | Path, members: dict[str, str] | None = None, *, network: str = "gms",
                  base_port: int = 7101, faulty: int = 1, quorum: int | None = None,
                  threshold: int | None = None, now: int | None = None, limits: Limits | None = None) -> Devnet:
    """Create keys, run the genesis ceremony and write node configurations.

    Args:
        directory: an empty or missing directory.
        members: member id -> agency name (default: the six GMS members).
        network: the network id.
        base_port: member i listens on ``base_port + i``.
        faulty: tolerated faulty members ``f``.
        quorum, threshold: default to the smallest safe value, ``floor((n + f) / 2) + 1``.
        now: Unix seconds for ``issued_at`` (default: the clock).
        limits: node limits for every member.

    Raises:
        DevnetError: the directory is not empty.
        VerificationError: the ceremony's result breaks a governance rule.
    """
    members = dict(members or GMS_MEMBERS)
    d = Path(directory)
    if d.exists() and any(d.iterdir()):
        raise DevnetError(f"{d} is not empty; choose a new directory or run 'mekong devnet down --clean'")
    (d / "keys").mkdir(parents=True, exist_ok=True)
    n = len(members)
    safe = (n + faulty) // 2 + 1
    quorum = quorum or safe
    threshold = threshold or safe
    ids = sorted(members)
    urls = {m: f"http://127.0.0.1:{base_port + i}" for i, m in enumerate(ids)}
    signed = _genesis_ceremony(d, members, urls, network, quorum, threshold, faulty,
                               now if now is not None else int(time.time()))
    pinned = root_hash(signed.payload)
    out = [_member_config(d, m, network, urls, pinned, limits or Limits()) for m in ids]
    (d / MANIFEST).write_text(json.dumps({"network": network, "genesis": "genesis.cbor",
                                          "genesis_hash": pinned.hex(), "members": out}, indent=2) + "\n")
    return Devnet.load(d)


def _genesis_ceremony(d: Path, members: dict[str, str], urls: dict[str, str], network: str, quorum: int,
                      threshold: int, faulty: int, issued_at: int) -> SignedRoot:
    """The four steps of spec 5.4.1 as the founders would run them; writes the draft and the genesis."""
    ids = sorted(members)
    # Step 1: each member makes its own keys (in a real ceremony, on its own machine).
    pp = passphrase()
    for m in ids:
        for role in ("admin", "node"):
            generate_key_file(d / "keys" / f"{m}-{role}.key", pp, f"{m} {role} key",
                              opslimit=OPSLIMIT_INTERACTIVE, memlimit=MEMLIMIT_INTERACTIVE)
    # Step 2: the draft lists only public keys.
    root = Root(network=network, version=1, previous=None, members=tuple(
        Member(m, members[m], (read_public_key(d / "keys" / f"{m}-admin.key"),),
               read_public_key(d / "keys" / f"{m}-node.key"), (urls[m],)) for m in ids),
        quorum=quorum, threshold=threshold, faulty=faulty, issued_at=issued_at)
    draft = SignedRoot.create(root)
    (d / "genesis-draft.cbor").write_bytes(draft.to_cbor())
    # Step 3: each founder signs the draft with its own admin key; step 4: assemble and check every rule.
    signed = draft
    for m in ids:
        signed = signed.with_signature(sign_root(draft.payload, load_key(d / "keys" / f"{m}-admin.key")))
    verify_genesis(signed, root_hash(signed.payload))
    (d / "genesis.cbor").write_bytes(signed.to_cbor())
    return signed


def _member_config(d: Path, m: str, network: str, urls: dict[str, str], pinned: bytes,
                   limits: Limits) -> dict[str, str]:
    """Write member ``m``'s node.toml; its entry of the devnet manifest."""
    md = d / m
    md.mkdir()
    port = int(urls[m].rsplit(":", 1)[1])
    cfg = NodeConfig(member=m, network=network, data_dir=(md / "data").absolute(), listen_host="127.0.0.1",
                     listen_port=port, node_key_file=(d / "keys" / f"{m}-node.key").absolute(),
                     passphrase_env=PASSPHRASE_ENV, genesis_file=(d / "genesis.cbor").absolute(),
                     genesis_hash=pinned, peers=tuple(Peer(p, u) for p, u in sorted(urls.items()) if p != m),
                     limits=limits)
    write_config(md / "node.toml", cfg)
    return {"id": m, "url": urls[m], "config": f"{m}/node.toml", "admin_key": f"keys/{m}-admin.key",
            "node_key": f"keys/{m}-node.key", "log": f"{m}/node.log"}


def free_base_port(count: int) -> int:
    """A port ``p`` such that ``p`` to ``p + count - 1`` are free on 127.0.0.1 right now (for tests and benchmarks)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000)  # below the ephemeral range (32768+): no outgoing connection takes it
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise DevnetError(f"no {count} consecutive free ports found on 127.0.0.1")


def _pid_file(m: DevnetMember) -> Path:
    return m.config.parent / "node.pid"


def running(m: DevnetMember) -> int | None:
    """The pid of the member's node process if it is running."""
    try:
        pid = int(_pid_file(m).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def healthy(url: str, timeout: float = 1.0) -> bool:
    """Whether the node at ``url`` answers ``/healthz`` with 200."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_member(net: Devnet, member_id: str) -> int:
    """Start one member's node process (if not running) and return its pid."""
    m = net.member(member_id)
    pid = running(m)
    if pid is not None:
        return pid
    env = dict(os.environ)
    env.setdefault(PASSPHRASE_ENV, passphrase().decode())
    with open(m.log, "ab") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(m.config)], stdout=logf,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _pid_file(m).write_text(str(proc.pid))
    return proc.pid


def wait_healthy(net: Devnet, member_ids: list[str] | None = None, timeout: float = 60.0) -> None:
    """Wait until every named member's node answers ``/healthz``.

    Raises:
        DevnetError: a node did not come up in time (the message quotes the end of its log).
    """
    deadline = time.monotonic() + timeout
    for mid in member_ids or [m.id for m in net.members]:
        m = net.member(mid)
        while not healthy(m.url):
            if time.monotonic() > deadline or running(m) is None:
                tail = m.log.read_text(errors="replace")[-2000:] if m.log.exists() else ""
                raise DevnetError(f"node {mid} did not start at {m.url}:\n{tail}")
            time.sleep(0.1)


def start(net: Devnet, member_ids: list[str] | None = None, timeout: float = 60.0) -> None:
    """Start the named members' nodes (default: all) and wait until they answer."""
    ids = member_ids or [m.id for m in net.members]
    for mid in ids:
        start_member(net, mid)
    wait_healthy(net, ids, timeout)


def stop_member(net: Devnet, member_id: str, *, kill: bool = False, timeout: float = 20.0) -> bool:
    """Stop one member's node: SIGTERM (or SIGKILL with ``kill``), then wait; False if it was not running."""
    m = net.member(member_id)
    pid = running(m)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    _wait_exit(m, pid, timeout)
    return True


def _wait_exit(m: DevnetMember, pid: int, timeout: float) -> None:
    """Wait for ``pid`` to exit (SIGKILL after ``timeout``) and remove its pid file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll for it instead
            done = pid if running(m) is None else 0
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(m).unlink(missing_ok=True)


def stop(net: Devnet, timeout: float = 20.0) -> list[str]:
    """Stop every running node: one SIGTERM to each first, then wait for each; the members stopped."""
    pids = {m.id: pid for m in net.members if (pid := running(m)) is not None}
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    for mid, pid in pids.items():
        _wait_exit(net.member(mid), pid, timeout)
    return list(pids)
