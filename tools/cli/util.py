"""Pieces every ``mekong`` command group shares: exit codes, options, passphrases, key and file arguments, output.

Kept apart from :mod:`tools.cli` so that the command modules can import it
without importing the group that imports them. Nothing here prints or
formats private key material: signing keys are opened with
:func:`node.keystore.load_signing_key`, whose keys print only their public half.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
import nacl.signing

from credentials.profiles import PROFILES
from ledger.bodies import check_issuer_id
from ledger.errors import DecodeError
from ledger.files import FileTooLargeError, read_bounded
from ledger.keys import PUBLIC_KEY_SIZE
from node import keystore

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_FAILED",
    "EXIT_INDETERMINATE",
    "EXIT_OK",
    "EXIT_TOOL",
    "EXIT_USAGE",
    "ClickProgress",
    "HashParam",
    "IssuerParam",
    "MemberParam",
    "TimeParam",
    "ToolError",
    "default_replica_dir",
    "emit",
    "json_option",
    "load_key",
    "now",
    "passphrase_options",
    "public_key_arg",
    "read_bytes",
    "read_passphrase",
    "write_bytes",
]  # fmt: skip

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INDETERMINATE = 2
EXIT_USAGE = 3
EXIT_TOOL = 4

#: The exit codes, as every ``--help`` that returns them shows them.
EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  success (verify: TOTAL-PASSED)\n"
    "  1  verify: TOTAL-FAILED; audit: problems found\n"
    "  2  verify: INDETERMINATE (for example TRY_LATER, REVOKED_NO_POE); a submission: stored, not final yet\n"
    "  3  usage error: a bad option or argument\n"
    "  4  tool error: node unreachable or refusing, bad or missing file, wrong passphrase"
)

#: Largest file the CLI reads whole (credentials, roots, documents to sign).
MAX_INPUT_BYTES = 64 << 20

F = TypeVar("F", bound=Callable[..., Any])
_MEMBER_RE = re.compile(r"[A-Z]{2}")


class ToolError(click.ClickException):
    """A tool error (exit code 4): a file that cannot be read or is not what it should be, and the like."""

    exit_code = EXIT_TOOL

    def show(self, file: Any = None) -> None:
        click.echo(f"mekong: error: {self.format_message()}", err=True)


def now() -> int:
    """The clock, in Unix seconds."""
    return int(time.time())


# ---------------------------------------------------------------------------- parameter types


class MemberParam(click.ParamType):
    """A member id: two upper-case letters (ISO 3166-1 alpha-2), such as ``VN``."""

    name = "MEMBER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().upper()  # th means TH
        if not _MEMBER_RE.fullmatch(text):
            self.fail(f"{value!r} is not a member id; use two letters such as VN or TH", param, ctx)
        return text


class IssuerParam(click.ParamType):
    """An issuer id ``<member>/<name>``, such as ``VN/customs-coo``."""

    name = "ISSUER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_issuer_id(str(value).strip())
        except DecodeError:
            self.fail(f"{value!r} is not an issuer id; use <member>/<name> such as VN/customs-coo "
                      "(lower-case letters, digits, '.', '_', '-')", param, ctx)


class HashParam(click.ParamType):
    """A byte string of a fixed size given as hex (a root hash, a key id)."""

    def __init__(self, size: int, what: str) -> None:
        self.size = size
        self.what = what
        self.name = "HEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        text = str(value).strip().lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != self.size:
            self.fail(f"{value!r} is not a {self.what}: expected {2 * self.size} hex digits", param, ctx)
        return raw


class TimeParam(click.ParamType):
    """A time: Unix seconds, or an ISO 8601 date or date-time (UTC unless it says otherwise)."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a time; use Unix seconds or ISO 8601 such as 2026-01-31 or "
                      "2026-01-31T12:00:00Z", param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return int(when.timestamp())


# ---------------------------------------------------------------------------- options


def json_option(f: F) -> F:
    """``--json``: print one JSON document on stdout instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text.")(f)


def passphrase_options(f: F) -> F:
    """``--passphrase-env VAR`` and ``--passphrase-fd N``; without either the passphrase is asked for."""
    f = click.option("--passphrase-fd", type=int, metavar="N",
                     help="Read the key file's passphrase from file descriptor N (up to a newline).")(f)
    f = click.option("--passphrase-env", metavar="VAR",
                     help="Read the key file's passphrase from environment variable VAR.")(f)
    return f


def read_passphrase(env: str | None, fd: int | None, *, prompt: str, confirm: bool = False) -> bytes:
    """The passphrase from ``--passphrase-env``, ``--passphrase-fd`` or an interactive prompt.

    Raises:
        click.UsageError: both options were given.
        KeyFileError: the variable is unset or empty, or the descriptor gives nothing.
        ToolError: the prompt got an empty passphrase, or none (end of input, Ctrl-C).
    """
    if env is not None and fd is not None:
        raise click.UsageError("give --passphrase-env or --passphrase-fd, not both")
    if env is not None:
        return keystore.passphrase_from_env(env)
    if fd is not None:
        return keystore.passphrase_from_fd(fd)
    try:
        if _terminal():
            value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, default="", show_default=False)
        else:  # a pipe: read the lines as they come, never echoed, without Python's getpass warnings
            value = _read_line(prompt)
            if confirm and value and _read_line("Repeat for confirmation") != value:
                raise ToolError("the two passphrases differ")
    except click.Abort:
        raise ToolError("no passphrase given; in scripts use --passphrase-env VAR or --passphrase-fd N") from None
    if not value:
        raise ToolError("an empty passphrase is not allowed")
    return str(value).encode("utf-8")


def _read_line(prompt: str) -> str:
    click.echo(f"{prompt}: ", err=True, nl=False)
    line = sys.stdin.readline()
    if not line:
        raise click.Abort
    return line.rstrip("\r\n")


def _terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def load_key(path: str | Path, env: str | None, fd: int | None) -> nacl.signing.SigningKey:
    """Open an encrypted key file, asking for its passphrase as the options say.

    Raises:
        KeyFileError: unreadable or malformed file, or the wrong passphrase.
    """
    kf = keystore.read_key_file(path)  # fails before the prompt if the file is not a key file
    label = f" ({kf.label})" if kf.label else ""
    pp = read_passphrase(env, fd, prompt=f"Passphrase for key file {path}{label}")
    return keystore.open_key_file(kf, pp, str(path))


def public_key_arg(value: str) -> bytes:
    """A public key given as an encrypted key file, a ``.pub`` file (hex), or 64 hex digits.

    No passphrase is needed: only the public half is read.

    Raises:
        ToolError: none of those, or a file that cannot be read.
    """
    text = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text) and not Path(text).exists():
        return bytes.fromhex(text)
    p = Path(value)
    try:
        data = read_bounded(p, keystore.MAX_FILE_BYTES)
    except OSError as e:
        raise ToolError(f"cannot read public key {value}: {e.strerror or e}") from None
    except FileTooLargeError:
        raise ToolError(f"{value} is neither a key file nor a public key file (it is too large)") from None
    try:
        return keystore.KeyFile.from_cbor(data).public_key
    except DecodeError:
        pass
    try:
        lines = [ln.strip() for ln in data.decode("ascii").splitlines() if ln.strip() and not ln.startswith("#")]
    except UnicodeDecodeError:
        lines = []
    if lines and re.fullmatch(r"[0-9a-fA-F]{64}", lines[0]):
        raw = bytes.fromhex(lines[0])
        if len(raw) == PUBLIC_KEY_SIZE:
            return raw
    raise ToolError(f"{value} is neither a key file nor a public key file (64 hex digits)")


# ---------------------------------------------------------------------------- files and output


def custom_type_option(f: F) -> F:
    """``--custom-document-type``: accept document types that are not a credential profile."""
    return click.option("--custom-document-type", "custom_types", is_flag=True,
                        help="Accept document types that are not one of the credential profiles (a custom type"
                             " agreed between members).")(f)


def check_document_types(types: Iterable[str], custom: bool, option: str = "--document-type") -> None:
    """Refuse a document type that is not a profile name (unless ``custom``), suggesting the closest one.

    Raises:
        click.BadParameter: naming the bad value and the known ones.
    """
    for t in types:
        if custom or t in PROFILES or t == "*":
            continue
        close = difflib.get_close_matches(t, PROFILES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise click.BadParameter(f"{t!r} is not a document type: {hint}the profiles are {', '.join(sorted(PROFILES))}"
                                 " (add --custom-document-type for a type of your own)", param_hint=option)


def read_bytes(path: str | Path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """Read a whole input file.

    Raises:
        ToolError: it cannot be read or is larger than ``max_bytes``.
    """
    try:
        return read_bounded(path, max_bytes)
    except OSError as e:
        raise ToolError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except FileTooLargeError:
        raise ToolError(f"{what} {path} is larger than {max_bytes} bytes") from None


def default_replica_dir() -> Path:
    """Where the replica lives unless ``--replica`` or ``MEKONG_REPLICA`` says otherwise."""
    return Path(click.get_app_dir("mekong")) / "replica"


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write an output file atomically (a temporary file, then rename).

    Raises:
        ToolError: it cannot be written.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ToolError(f"cannot write {p}: {e.strerror or e}") from None


def emit(as_json: bool, doc: Any, text: str | list[str]) -> None:
    """Print ``doc`` as JSON (sorted keys) or ``text`` for people."""
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(text if isinstance(text, str) else "\n".join(text))


class ClickProgress:
    """A click progress bar on stderr for :meth:`tools.client.replica.Replica.sync` (nothing when there is nothing to do)."""

    def __init__(self, quiet: bool = False) -> None:
        self._bar: Any = None
        self._quiet = quiet

    def start(self, total: int, label: str) -> None:
        """Show a bar of ``total`` steps."""
        if total > 0 and not self._quiet:
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self._bar.__enter__()

    def advance(self, n: int) -> None:
        """Move the bar on by ``n``."""
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
