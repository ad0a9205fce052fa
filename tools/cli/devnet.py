"""``mekong devnet``: a local network of member nodes on loopback, for trying things out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from tools.cli.render import render_status
from tools.client.http import NodeClient
from tools.devnet import network as devnet

DEFAULT_DIR = Path("devnet")


@click.group("devnet")
def devnet_group() -> None:
    """Run a local network of member nodes, one process and one SQLite file each."""


@devnet_group.command("up")
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where keys, configs and databases live.")
@click.option("--members", default="KH,CN,LA,MM,TH,VN", show_default=True,
              help="Comma-separated member ids (at least 4 for f = 1).")
@click.option("--base-port", default=7101, show_default=True, help="The first member listens here, the next +1...")
@click.option("--faulty", default=1, show_default=True, help="Members that may be faulty (sets quorum and threshold).")
def up(directory: Path, members: str, base_port: int, faulty: int) -> None:
    """Create the devnet (keys, genesis ceremony, configs) if needed, then start every node."""
    if not (directory / devnet.MANIFEST).exists():
        ids = [m.strip().upper() for m in members.split(",") if m.strip()]
        unknown = [m for m in ids if m not in devnet.GMS_MEMBERS]
        names = {m: devnet.GMS_MEMBERS.get(m, f"Member {m}") for m in ids}
        if unknown:
            click.echo(f"note: {', '.join(unknown)} are not GMS members; using placeholder names", err=True)
        click.echo(f"genesis ceremony for {', '.join(sorted(ids))}: each member makes its keys, signs the draft...")
        net = devnet.create_devnet(directory, names, base_port=base_port, faulty=faulty)
        click.echo(f"genesis root hash (pin this): {net.genesis_hash.hex()}")
    net = devnet.Devnet.load(directory)
    with click.progressbar(net.members, label="starting nodes", item_show_func=lambda m: m.id if m else "") as bar:
        for m in bar:
            devnet.start_member(net, m.id)
    devnet.wait_healthy(net)
    click.echo("devnet is up:")
    for m in net.members:
        click.echo(f"  {m.id}  {m.url}   log: {m.log}")
    first = net.members[0]
    click.echo(f"try: mekong node status --node {first.url}")
    click.echo(f"stop with: mekong devnet down --dir {directory}")


@devnet_group.command("down")
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--clean", is_flag=True, help="Also delete the devnet directory (keys, databases, logs).")
def down(directory: Path, clean: bool) -> None:
    """Stop every node of the devnet (SIGTERM: nothing acknowledged is lost)."""
    net = devnet.Devnet.load(directory)
    stopped = devnet.stop(net)
    click.echo(f"stopped {', '.join(stopped) if stopped else 'nothing (no node was running)'}")
    if clean:
        shutil.rmtree(directory)
        click.echo(f"deleted {directory}")


@devnet_group.command("status")
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def status(directory: Path, as_json: bool) -> None:
    """Show which nodes run, and each running node's logs and final sizes."""
    net = devnet.Devnet.load(directory)
    out = {}
    for m in net.members:
        pid = devnet.running(m)
        out[m.id] = {"url": m.url, "pid": pid, "status": NodeClient(m.url).status() if pid and devnet.healthy(m.url) else None}
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    for mid, v in out.items():
        if v["status"] is None:
            click.echo(f"{mid}  {v['url']}  down")
        else:
            click.echo(f"{mid}  {v['url']}  up (pid {v['pid']})")
            click.echo("    " + render_status(v["status"]).replace("\n", "\n    "))  # type: ignore[arg-type]
