"""Running a node process: the full application and its entry point.

``python -m node --config FILE`` (or ``mekong node start``) binds its listening socket first (a port in use is
a one-line error, exit status 4, before the database is touched), takes the data directory's PID file
(``node.pid``: one node per data directory; ``mekong node stop`` reads it), builds the application of
:func:`node.app.create_app` and serves it until SIGINT or SIGTERM. On either signal aiohttp stops
accepting requests, pending submissions are flushed to the database before the process exits, and nothing
acknowledged is lost; after ``kill -9`` the node replays its database at start-up and serves exactly what
it had acknowledged (spec 7.2). Logging is one line per event, as text or as JSON (``--log-format``).
"""

from __future__ import annotations

import argparse
import datetime
import errno
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from ledger.errors import MekongError
from node import collector, logfilter
from node.app import create_app
from node.config import NodeConfig, load_config

__all__ = ["PID_FILE", "PidFileError", "PortInUseError", "TlsError", "configure_logging", "main", "read_pid", "serve", "server_tls"]

#: The PID file in a node's data directory while the node runs.
PID_FILE = "node.pid"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
log = logging.getLogger("mekong.node")


class PortInUseError(MekongError):
    """The listening address is taken (another node, or another program)."""


class TlsError(MekongError):
    """The TLS certificate or key of the configuration cannot be used."""


class PidFileError(MekongError):
    """Another node process runs on this data directory, or its PID file cannot be written."""


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` (debug, info, warning, error), as ``text`` lines or ``json`` objects."""
    if level.lower() not in LOG_LEVELS or fmt not in LOG_FORMATS:
        raise ValueError(f"log level one of {LOG_LEVELS}, format one of {LOG_FORMATS}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logfilter.install()  # what clients do wrong: one WARNING per kind and minute, no tracebacks


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else happens.

    Raises:
        PortInUseError: the address is in use or cannot be bound (the message says which and why).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        why = "the address is already in use (is another node running?)" if e.errno == errno.EADDRINUSE \
            else (e.strerror or str(e))
        raise PortInUseError(f"cannot listen on {host}:{port}: {why}") from None
    sock.setblocking(False)
    return sock


def read_pid(data_dir: Path) -> int | None:
    """The PID in the data directory's PID file if that process is alive, else None."""
    try:
        pid = int((data_dir / PID_FILE).read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@contextmanager
def pid_file(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>/node.pid`` while the node runs; a stale file is replaced, a live one refused."""
    other = read_pid(data_dir)
    if other is not None and other != os.getpid():
        raise PidFileError(f"a node (pid {other}) is already running on {data_dir}; stop it first"
                           " (mekong node stop)")
    path = data_dir / PID_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(f"{os.getpid()}\n", encoding="ascii")
    except OSError as e:
        raise PidFileError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        if read_pid(data_dir) == os.getpid():
            path.unlink(missing_ok=True)


def server_tls(config: NodeConfig) -> ssl.SSLContext | None:
    """The TLS context the node serves with (spec 8.2.4), or None for plain HTTP.

    Raises:
        TlsError: the certificate or key cannot be read or do not match (the message names the files).
    """
    if not config.tls.serving:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(config.tls.cert_file), str(config.tls.key_file))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot use the TLS certificate {config.tls.cert_file} with key {config.tls.key_file}:"
                       f" {getattr(e, 'strerror', None) or e}") from None
    return ctx


def serve(config: NodeConfig, *, access_log: bool = False, replay_first: bool = False) -> None:
    """Bind, take the PID file, and serve until SIGINT or SIGTERM.

    Raises:
        PortInUseError: the listening address is taken (nothing else was done).
        PidFileError: another node runs on the data directory.
        MekongError: start-up failed (wrong passphrase, a database that fails its start-up checks or, with
            ``replay_first``, does not replay, a genesis that does not match the pin).
    """
    sock = bind(config.listen_host, config.listen_port)
    try:
        tls = server_tls(config)
        with pid_file(config.data_dir):
            log.info("node %s of network %s listening on %s://%s:%d", config.member, config.network,
                     "https" if tls else "http", config.listen_host, config.listen_port)
            web.run_app(create_app(config, replay_first=replay_first, signature_processes=True), sock=sock, ssl_context=tls, print=lambda *_: None, handle_signals=True,
                        access_log=logging.getLogger("mekong.access") if access_log else None,
                        access_log_format='%a "%r" %s %b %Tf')
            log.info("node %s stopped", config.member)
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m node --config FILE``; exit status 0 on a clean stop, 4 when start-up fails."""
    parser = argparse.ArgumentParser(prog="python -m node", description="Run a Mekong Trust Ledger member node.")
    parser.add_argument("--config", required=True, help="the node's TOML configuration file")
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS)
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS)
    parser.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    parser.add_argument("--replay", action="store_true", help="replay the whole database before serving")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    collector.settle()
    try:
        serve(load_config(args.config), access_log=args.access_log, replay_first=args.replay)
    except MekongError as e:
        print(f"mekong node: {e}", file=sys.stderr)
        return 4
    return 0
