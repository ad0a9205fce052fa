"""Running a node process: the full application and its entry point.

``python -m node --config FILE`` (or ``mekong node start``) builds the
application of :func:`node.app.create_app` and serves it until SIGINT or SIGTERM. On either
signal aiohttp stops accepting requests, pending submissions are flushed to
the database before the process exits, and nothing acknowledged is lost;
after ``kill -9`` the node replays its database at start-up and serves
exactly what it had acknowledged (spec 7.2).
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from ledger.errors import MekongError
from node import logfilter
from node.app import create_app
from node.config import NodeConfig, load_config


def serve(config: NodeConfig) -> None:
    """Serve until SIGINT or SIGTERM.

    Raises:
        MekongError: start-up failed (wrong passphrase, a database that does
            not replay, a genesis that does not match the pin).
    """
    web.run_app(create_app(config), host=config.listen_host, port=config.listen_port, access_log=None,
                print=lambda *_: None, handle_signals=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m node --config FILE``; exit status 0 on a clean stop, 4 when start-up fails."""
    parser = argparse.ArgumentParser(prog="python -m node", description="Run a Mekong Trust Ledger member node.")
    parser.add_argument("--config", required=True, help="the node's TOML configuration file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logfilter.install()  # what clients do wrong: one WARNING per kind and minute, no tracebacks
    try:
        config = load_config(args.config)
        logging.getLogger("mekong.node").info("node %s of network %s listening on %s:%d", config.member,
                                              config.network, config.listen_host, config.listen_port)
        serve(config)
    except MekongError as e:
        print(f"mekong node: {e}", file=sys.stderr)
        return 4
    return 0
