"""Operating a node as a process: bind first, one node per data directory, stop, logging, status (issue 12).

Real node processes (``mekong node start``) on a devnet made in a temporary directory; only VN's node runs,
so its peers stay unreachable, which is what the logging and status checks need.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import DATABASE_NAME, load_config
from tools.devnet import network as dn


@pytest.fixture
def net(tmp_path: Path) -> dn.Devnet:
    return dn.create_devnet(tmp_path / "net", base_port=dn.free_base_port(6))


def _env() -> dict[str, str]:
    return {**os.environ, dn.PASSPHRASE_ENV: dn.passphrase().decode()}


def _mekong(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=timeout, check=False)


def _start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "node", "start", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if dn.healthy(url):
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become healthy")


@pytest.fixture
def vn(net: dn.Devnet) -> Iterator[tuple[dn.DevnetMember, subprocess.Popen[str]]]:
    m = net.member("VN")
    proc = _start(m.config, "--log-format", "json")
    _wait_healthy(m.url, proc)
    yield m, proc
    if proc.poll() is None:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_port_in_use_is_a_clear_error_before_the_database_is_touched(net: dn.Devnet) -> None:
    m = net.member("VN")
    cfg = load_config(m.config)
    blocker = socket.socket()
    blocker.bind((cfg.listen_host, cfg.listen_port))
    blocker.listen(1)
    try:
        r = _mekong("node", "start", "--config", m.config)
    finally:
        blocker.close()
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: the address is already in use" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert not (cfg.data_dir / DATABASE_NAME).exists()  # bound first: the database was never opened


def test_a_node_refuses_to_start_on_a_genesis_other_than_the_pinned_one_or_a_wrong_passphrase(
        net: dn.Devnet) -> None:
    # Attack: the genesis file beside a node is swapped (or its pin edited), or someone without the passphrase
    # starts it. It must not start (exit 4), say why, and show no key material.
    m = net.member("VN")
    cfg = load_config(m.config)
    pinned = cfg.genesis_hash.hex()
    other = ("0" if pinned[0] != "0" else "1") + pinned[1:]
    swapped = m.config.with_name("swapped.toml")
    swapped.write_text(m.config.read_text().replace(pinned, other))
    assert load_config(swapped).genesis_hash.hex() == other
    r = _mekong("node", "start", "--config", swapped)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "does not match the pinned genesis hash" in r.stderr and "Traceback" not in r.stderr, r.stderr
    env = {**_env(), dn.PASSPHRASE_ENV: "not the passphrase"}
    r = subprocess.run([sys.executable, "-m", "tools.cli", "node", "start", "--config", str(m.config)],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "passphrase" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert dn.passphrase().decode() not in r.stderr + r.stdout and "not the passphrase" not in r.stderr
    assert not dn.healthy(m.url)


def test_a_running_node_logs_no_key_material_or_passphrase(net: dn.Devnet) -> None:
    # The node key is decrypted into memory at start; nothing of it, nor of the passphrase, may reach the
    # node's own output, at the most verbose settings, whatever clients send (README: never logged).
    m = net.member("VN")
    proc = _start(m.config, "--log-level", "debug", "--access-log", "--log-format", "json")
    try:
        _wait_healthy(m.url, proc)

        def call(method: str, path: str, body: bytes | None = None) -> None:
            try:
                urllib.request.urlopen(urllib.request.Request(m.url + path, data=body, method=method), timeout=10)
            except urllib.error.HTTPError:
                pass  # refusals are part of the point: their log lines too

        for method, path, body in (("GET", "/status", None), ("GET", "/logs/VN/checkpoint", None),
                                   ("POST", "/logs/VN/entries", b"\xa1garbage"), ("POST", "/witness/add-checkpoint",
                                   b"old 0\n\nnot a note"), ("POST", "/governance/roots", b"\x00" * 64),
                                   ("GET", "/logs/VN/state?key=zz", None)):
            call(method, path, body)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    key = dn.load_key(m.node_key)
    secrets = {"passphrase": dn.passphrase().decode()}
    for name, raw in (("seed", bytes(key)), ("secret key (seed and public key)", key._signing_key)):
        secrets |= {f"{name} hex": raw.hex(), f"{name} base64": base64.b64encode(raw).decode().rstrip("=")}
    logged = out + err
    assert '"message"' in err and "/logs/VN/entries" in err, err[-2000:]  # debug and access lines were written
    for name, secret in secrets.items():
        assert secret not in logged, f"the {name} is in the node's output"


def test_a_node_refuses_to_start_on_a_tampered_database(net: dn.Devnet) -> None:
    # Attack: someone with access to the data directory changes what the node stored (here the governance
    # root it holds). At start the node checks its database (spec 7.5.3) and must refuse to serve it.
    m = net.member("VN")
    proc = _start(m.config)
    _wait_healthy(m.url, proc)
    proc.terminate()
    proc.communicate(timeout=30)
    db = load_config(m.config).data_dir / DATABASE_NAME
    conn = sqlite3.connect(db)
    (signed,) = conn.execute("SELECT signed FROM roots WHERE version = 1").fetchone()
    changed = bytearray(signed)
    changed[-1] ^= 1  # the last byte of the last founder's signature
    conn.execute("UPDATE roots SET signed = ? WHERE version = 1", (bytes(changed),))
    conn.commit()
    conn.close()
    r = _mekong("node", "start", "--config", m.config)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "root version 1" in r.stderr and "mekong audit replay" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not dn.healthy(m.url)


def test_one_node_per_data_directory_and_node_stop(net: dn.Devnet,
                                                   vn: tuple[dn.DevnetMember, subprocess.Popen[str]]) -> None:
    m, proc = vn
    cfg = load_config(m.config)
    assert (cfg.data_dir / "node.pid").read_text().strip() == str(proc.pid)
    # a second node on the same data directory (another port) is refused
    other = m.config.with_name("other.toml")
    port = dn.free_base_port(1)
    other.write_text(m.config.read_text().replace(f"port = {cfg.listen_port}", f"port = {port}")
                     .replace(f":{cfg.listen_port}", f":{port}"))
    assert load_config(other).listen_port == port
    r = _mekong("node", "start", "--config", other)
    assert r.returncode == 4 and f"already running on {cfg.data_dir}" in r.stderr, r.stderr
    # stop: SIGTERM, wait, and the PID file is gone
    r = _mekong("node", "stop", "--config", m.config)
    assert r.returncode == 0 and "stopped" in r.stdout, (r.stdout, r.stderr)
    assert proc.wait(timeout=30) == 0
    assert not (cfg.data_dir / "node.pid").exists()
    _, err = proc.communicate()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["message"] == "node VN stopped" for e in events), err[-2000:]
    r = _mekong("node", "stop", "--data-dir", cfg.data_dir)
    assert r.returncode == 4 and "no node is running" in r.stderr


def test_json_logs_say_once_that_a_peer_is_down_and_status_shows_it(
        net: dn.Devnet, vn: tuple[dn.DevnetMember, subprocess.Popen[str]]) -> None:
    m, proc = vn
    time.sleep(4)  # several sync rounds, all failing: each peer is reported once, not once per retry
    r = _mekong("node", "status", "--node", m.url)
    assert r.returncode == 0 and "UNREACHABLE" in r.stdout and "TH (" not in r.stdout, r.stdout
    doc = json.loads(_mekong("node", "status", "--node", m.url, "--json").stdout)
    assert doc["peers"]["TH"]["reachable"] is False and doc["peers"]["TH"]["last_contact"] is None
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events and all({"time", "level", "logger", "message"} <= set(e) for e in events)
    down = [e for e in events if "is unreachable" in e["message"]]
    assert sorted({e["message"].split()[1] for e in down}) == ["CN", "KH", "LA", "MM", "TH"], down
    assert len(down) == 5, [e["message"] for e in down]  # once each
    assert all(e["level"] == "warning" for e in down)
    assert not any("passphrase" in e["message"].lower() for e in events)
