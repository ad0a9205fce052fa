"""``mekong node``: set up, run and inspect a member node (for node operators)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import click

from ledger.errors import VerificationError
from ledger.roots import SignedRoot, root_hash
from node.config import DATABASE_NAME, Limits, NodeConfig, Peer, Tls, load_config, write_config
from node.join import chain_for_member, seed_governance
from node.keystore import read_public_key
from tools.cli.render import render_status
from tools.cli.util import ToolError, read_bytes
from tools.client.http import NodeClient, fetch_roots


@click.group("node")
def node_group() -> None:
    """Set up, run and inspect a member node."""


@node_group.command("init")
@click.option("--member", required=True, help="This member's id, for example VN.")
@click.option("--network", default="gms", show_default=True, help="The network id named in the genesis root.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the node's SQLite database (created if missing).")
@click.option("--listen", default="127.0.0.1:7101", show_default=True, help="HOST:PORT to serve on.")
@click.option("--node-key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The node's encrypted key file (mekong keys generate).")
@click.option("--passphrase-env", default="MEKONG_NODE_PASSPHRASE", show_default=True,
              help="Environment variable that will hold the key file's passphrase when the node starts.")
@click.option("--genesis", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The assembled genesis root (mekong genesis assemble).")
@click.option("--pin", default=None, help="The genesis root hash agreed at the ceremony (hex); checked here.")
@click.option("--peer", "peers", multiple=True, metavar="XX=URL",
              help="A peer's base URL (repeatable); default: the endpoints in the newest governance root.")
@click.option("--root", "root_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A later signed governance root file (repeatable), for a member that a later root added.")
@click.option("--roots-from", "roots_from", multiple=True, metavar="URL",
              help="Fetch the later governance roots from this node (repeatable); every one is verified from"
                   " the pinned genesis.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate chain to serve HTTPS with (with --tls-key).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Its PEM private key.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM CA bundle to verify https:// peers against (default: the system store).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Config file to write.")
def init(member: str, network: str, data_dir: Path, listen: str, node_key: Path, passphrase_env: str,
         genesis: Path, pin: str | None, peers: tuple[str, ...], root_files: tuple[Path, ...],
         roots_from: tuple[str, ...], tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
         out: Path) -> None:
    """Write a node configuration and create its data directory.

    The genesis root is checked against --pin. A founding member's node key must be the one the genesis
    lists for it. A member that a later governance root added gives that root (and those before it) with
    --root FILE or --roots-from URL: the chain is verified from the pinned genesis, its newest root must
    list the member with this node key, and every root is stored in the new database, so that the node
    starts empty, adopts the newest root and catches up from its peers.
    """
    signed = SignedRoot.from_cbor(read_bytes(genesis, "genesis file"))
    digest = root_hash(signed.payload)
    if pin is not None and pin.lower() != digest.hex():
        raise click.ClickException(f"{genesis} has root hash {digest.hex()}, not the pinned {pin}")
    candidates = [SignedRoot.from_cbor(read_bytes(f, "governance root file")) for f in root_files]
    for url in roots_from:
        candidates += fetch_roots(NodeClient(url))[1]
    try:
        chain = chain_for_member(signed, candidates, digest, member, read_public_key(node_key))
    except VerificationError as e:
        raise click.ClickException(f"{e} ({node_key}, {genesis})") from None
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
    peer_list = []
    for item in peers:
        pid, sep, url = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not XX=URL", param_hint="--peer")
        peer_list.append(Peer(pid, url.rstrip("/")))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if chain.current.version > 1:
        seed_governance(data_dir / DATABASE_NAME, chain)
        click.echo(f"stored governance roots 1 to {chain.current.version} in {data_dir / DATABASE_NAME}")
    cfg = NodeConfig(member=member, network=network, data_dir=data_dir.absolute(), listen_host=host,
                     listen_port=int(port), node_key_file=node_key.absolute(), passphrase_env=passphrase_env,
                     genesis_file=genesis.absolute(), genesis_hash=digest,
                     peers=tuple(sorted(peer_list, key=lambda p: p.member)), limits=Limits(),
                     tls=_tls(tls_cert, tls_key, tls_ca))
    write_config(out, cfg)
    click.echo(f"wrote {out}; database will be {data_dir / DATABASE_NAME}")
    click.echo(f"start it with: {passphrase_env}=... mekong node start --config {out}")


def _tls(cert: Path | None, key: Path | None, ca: Path | None) -> Tls:
    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    return Tls(*(None if p is None else p.absolute() for p in (cert, key, ca)))


@node_group.command("start")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The node's configuration file.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="The least severe events logged.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line of text per event, or one JSON object (time, level, logger, message).")
@click.option("--access-log", is_flag=True, help="Also log one line per HTTP request.")
@click.option("--replay", "replay_first", is_flag=True,
              help="Replay the whole database (every entry, checkpoint and cosignature) before serving.")
def start(config_path: Path, log_level: str, log_format: str, access_log: bool, replay_first: bool) -> None:
    """Run the node in the foreground until Ctrl-C, SIGTERM or 'mekong node stop'.

    The listening address is bound first: if it is in use the node says so and
    exits (status 4) before touching its database. The node then writes its PID to
    node.pid in its data directory (refusing to start if a node already runs there),
    and logs one line per event that matters (peer unreachable and back, governance
    root adopted, evidence stored, a checkpoint without a quorum, shutdown) on stderr.
    The key file's passphrase is read from the environment variable the configuration
    names. The database is not replayed: the node checks its newest checkpoints and state
    maps against what it signed (seconds, however long the ledger); --replay checks every
    stored byte first, as 'mekong audit replay' does. A database that fails the checks, a
    wrong passphrase or a genesis that does not match the pin stop the start-up with a
    message (exit status 4).
    """
    from node.server import configure_logging, serve  # aiohttp is only needed here

    cfg = load_config(config_path)
    configure_logging(log_level, log_format)
    click.echo(f"node {cfg.member} of network {cfg.network} on http://{cfg.listen_host}:{cfg.listen_port}")
    serve(cfg, access_log=access_log, replay_first=replay_first)


@node_group.command("stop")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The node's configuration file (its data directory holds node.pid).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Or the data directory itself.")
@click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True,
              help="Seconds to wait for the node to finish what it acknowledged and exit.")
def stop(config_path: Path | None, data_dir: Path | None, timeout: float) -> None:
    """Stop a running node: SIGTERM to the PID in its data directory, then wait for it to exit.

    The node stops accepting requests, writes what it acknowledged and exits; nothing
    acknowledged is lost. Exit status 4 if no node runs there or it does not stop in time.
    """
    from node.server import PID_FILE, read_pid

    if (config_path is None) == (data_dir is None):
        raise click.UsageError("give --config FILE or --data-dir DIR")
    directory = load_config(config_path).data_dir if config_path is not None else data_dir
    assert directory is not None
    pid = read_pid(directory)
    if pid is None:
        raise ToolError(f"no node is running on {directory} (no live process in {directory / PID_FILE})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(directory) != pid:
            click.echo(f"node (pid {pid}) on {directory} stopped")
            return
        time.sleep(0.1)
    raise ToolError(f"the node (pid {pid}) on {directory} did not stop within {timeout:g} s; it is still running")


@node_group.command("status")
@click.option("--node", "url", default="http://127.0.0.1:7101", show_default=True, help="The node's base URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the node's /status document as JSON.")
def status(url: str, as_json: bool) -> None:
    """Show a node's logs, final sizes and witness lag per peer."""
    st = NodeClient(url).status()
    click.echo(json.dumps(st, indent=2, sort_keys=True) if as_json else render_status(st))
