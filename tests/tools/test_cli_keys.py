"""``mekong keys``, passphrases, exit codes and help: the CLI basics a newcomer meets first."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import PASSPHRASE, Invoke, check_no_secret, make_key

from ledger.checkpoint import CosignatureVerifier, log_origin, witness_name
from ledger.keys import key_id
from ledger.note import NoteVerifier
from node import keystore
from tools.cli.main import main


def test_generate_writes_encrypted_key_and_pub_file(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "VN-admin.key"
    r = invoke("keys", "generate", "--out", out, "--label", "VN admin", "--passphrase-env", "PP",
               "--insecure-fast-kdf", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    public = keystore.read_public_key(out)
    assert doc["public_key"] == public.hex() == (tmp_path / "VN-admin.key.pub").read_text().strip()
    assert doc["key_id"] == key_id(public).hex()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert keystore.read_key_file(out).label == "VN admin"
    keystore.load_signing_key(out, PASSPHRASE.encode())  # opens with the passphrase
    check_no_secret(r.output, out)


def test_generate_refuses_to_overwrite(invoke: Invoke, tmp_path: Path) -> None:
    out = make_key(tmp_path / "k.key")
    before = out.read_bytes()
    r = invoke("keys", "generate", "--out", out, "--passphrase-env", "PP", "--insecure-fast-kdf")
    assert r.exit_code == 4
    assert "already exists" in r.stderr
    assert out.read_bytes() == before


def test_generate_prompts_twice_for_the_passphrase(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    r = invoke("keys", "generate", "--out", out, "--insecure-fast-kdf", input="s3cret\ns3cret\n")
    assert r.exit_code == 0, r.output
    keystore.load_signing_key(out, b"s3cret")
    assert "s3cret" not in r.output


def test_generate_reads_the_passphrase_from_a_file_descriptor(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    rfd, wfd = os.pipe()
    try:
        os.write(wfd, b"from a pipe\n")
        os.close(wfd)
        r = invoke("keys", "generate", "--out", out, "--insecure-fast-kdf", "--passphrase-fd", rfd)
    finally:
        os.close(rfd)
    assert r.exit_code == 0, r.output
    keystore.load_signing_key(out, b"from a pipe")


def test_no_passphrase_at_all_says_how_to_give_one(invoke: Invoke, tmp_path: Path) -> None:
    r = invoke("keys", "generate", "--out", tmp_path / "k.key", input="")
    assert r.exit_code == 4
    assert "--passphrase-env VAR" in r.stderr
    assert not (tmp_path / "k.key").exists()


def test_empty_passphrase_variable_is_a_tool_error(invoke: Invoke, tmp_path: Path) -> None:
    r = invoke("keys", "generate", "--out", tmp_path / "k.key", "--passphrase-env", "NOPE_UNSET")
    assert r.exit_code == 4
    assert "NOPE_UNSET holds no passphrase" in r.stderr


def test_both_passphrase_sources_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    r = invoke("keys", "generate", "--out", tmp_path / "k.key", "--passphrase-env", "PP", "--passphrase-fd", "0")
    assert r.exit_code == 3


def test_show_needs_no_passphrase_and_names_the_verifier_keys(invoke: Invoke, tmp_path: Path) -> None:
    path = make_key(tmp_path / "VN-node.key")
    public = keystore.read_public_key(path)
    r = invoke("keys", "show", path, "--network", "gms", "--member", "VN", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["public_key"] == public.hex()
    assert doc["key_id"] == key_id(public).hex()
    assert doc["checkpoint_vkey"] == NoteVerifier(log_origin("gms", "VN"), public).verifier_key
    assert doc["cosignature_vkey"] == CosignatureVerifier(witness_name("gms", "VN"), public).verifier_key
    NoteVerifier.from_vkey(doc["checkpoint_vkey"])
    CosignatureVerifier.from_vkey(doc["cosignature_vkey"])
    check_no_secret(r.output, path)
    text = invoke("keys", "show", path)
    assert text.exit_code == 0 and key_id(public).hex() in text.stdout and "--member" in text.stdout


def test_show_reads_a_pub_file(invoke: Invoke, tmp_path: Path) -> None:
    path = make_key(tmp_path / "k.key")
    pub = tmp_path / "k.pub"
    pub.write_text(keystore.read_public_key(path).hex() + "\n")
    r = invoke("keys", "show", pub, "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["public_key"] == keystore.read_public_key(path).hex()


def test_show_of_something_else_is_a_tool_error(invoke: Invoke, tmp_path: Path) -> None:
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"\xa1\x01\x02 not a key")
    r = invoke("keys", "show", junk)
    assert r.exit_code == 4
    assert "malformed" in r.stderr
    assert invoke("keys", "show", tmp_path / "missing.key").exit_code == 4


def test_bad_member_id_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    key = make_key(tmp_path / "k.key")
    r = invoke("keys", "show", key, "--member", "V1")
    assert r.exit_code == 3
    assert "not a member id" in r.stderr
    r = invoke("keys", "show", key, "--member", "vn", "--json")  # lower case is the same member
    assert r.exit_code == 0 and "VN" in r.stdout, r.output


def test_help_documents_exit_codes(invoke: Invoke) -> None:
    for args in ([], ["verify"], ["verify-signature"]):
        r = invoke(*args, "--help")
        assert r.exit_code == 0
        assert "Exit codes" in r.stdout and "INDETERMINATE" in r.stdout
    for group in ("keys", "genesis", "governance", "issuer", "policy", "credential", "audit"):
        assert invoke(group, "--help").exit_code == 0


def test_unknown_command_and_option_exit_3(invoke: Invoke) -> None:
    assert invoke("frobnicate").exit_code == 3
    assert invoke("keys", "show", "--bogus").exit_code == 3


def test_main_returns_the_exit_code(tmp_path: Path, capsys: object) -> None:
    assert main(["keys", "show", str(tmp_path / "missing.key")]) == 4
    assert main(["keys", "--bogus"]) == 3
    assert main(["--help"]) == 0


def test_generate_from_a_pipe_has_no_python_warnings(tmp_path: Path) -> None:
    # Without a terminal the passphrase lines are read from stdin, never echoed, with no GetPassWarning.
    r = subprocess.run([sys.executable, "-m", "tools.cli", "keys", "generate", "--out", str(tmp_path / "k.key"),
                        "--label", "pipe", "--kdf", "interactive"], input="s3cret pipe\ns3cret pipe\n",
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "GetPassWarning" not in r.stderr and "echoed" not in r.stderr and "s3cret" not in r.stderr + r.stdout
    r = subprocess.run([sys.executable, "-m", "tools.cli", "keys", "generate", "--out", str(tmp_path / "k2.key"),
                        "--label", "pipe"], input="", capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 4 and "--passphrase-env" in r.stderr and "Warning" not in r.stderr


def test_every_error_line_starts_the_same(invoke: Invoke, tmp_path: Path) -> None:
    for args, code in ((["verify"], 3), (["credential", "template", "--profile", "x"], 3),
                       (["keys", "show", tmp_path / "missing.key"], 4), (["node", "stop", "--data-dir", tmp_path], 4)):
        r = invoke(*args)
        assert r.exit_code == code, (args, r.output)
        errors = [line for line in r.stderr.splitlines() if "rror" in line]
        assert errors and all(line.startswith("mekong: error: ") for line in errors), (args, r.stderr)
