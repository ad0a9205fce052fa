"""The ``mekong`` command line: one click group, one small module per command group.

Each command module (``tools/cli/*.py``) defines its click commands and calls
library code; this module only gathers them and turns what went wrong into
the documented exit codes (:data:`tools.cli.util.EXIT_CODES_HELP`):

- 0 success (``verify``: TOTAL-PASSED),
- 1 ``verify``: TOTAL-FAILED; ``audit``: problems found,
- 2 ``verify``: INDETERMINATE,
- 3 usage errors (click's own usage errors, which click would give code 2),
- 4 tool errors: any :class:`~ledger.errors.MekongError` (node unreachable,
  malformed file, wrong passphrase), and unexpected crashes.

To add a command group, import it and add one ``cli.add_command(...)`` line below.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from ledger.errors import MekongError
from node import collector
from tools.cli import audit as cmd_audit
from tools.cli import credential as cmd_credential
from tools.cli import devnet as cmd_devnet
from tools.cli import genesis as cmd_genesis
from tools.cli import governance as cmd_governance
from tools.cli import issuer as cmd_issuer
from tools.cli import keys as cmd_keys
from tools.cli import log as cmd_log
from tools.cli import node as cmd_node
from tools.cli import verify as cmd_verify
from tools.cli.util import EXIT_CODES_HELP, EXIT_TOOL, EXIT_USAGE
from tools.client.http import CA_FILE_ENV

__all__ = ["cli", "main"]


class MekongGroup(click.Group):
    """A click group whose ``main`` maps errors to the documented exit codes, in tests too."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command line and exit (or, with ``standalone_mode=False``, return) with its exit code."""
        code = run(self, args, prog_name or "mekong", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code


def run(command: click.Command, args: Sequence[str] | None, prog_name: str, complete_var: str | None = None,
        **extra: Any) -> int:
    """Invoke ``command`` and return the exit code for whatever happened."""
    try:
        result = click.Command.main(command, args=list(args) if args is not None else None, prog_name=prog_name,
                                    complete_var=complete_var, standalone_mode=False, **extra)
    except click.exceptions.UsageError as e:  # every error line starts "mekong: error:", usage errors too
        if e.ctx is not None:
            click.echo(f"{e.ctx.get_usage()}\nTry '{e.ctx.command_path} {e.ctx.help_option_names[0]}' for help.",
                       err=True)
        click.echo(f"mekong: error: {e.format_message()}", err=True)
        return EXIT_USAGE
    except click.exceptions.ClickException as e:
        click.echo(f"mekong: error: {e.format_message()}", err=True)
        return e.exit_code if e.exit_code > EXIT_USAGE else EXIT_TOOL  # click's default 1 means TOTAL-FAILED
    except click.exceptions.Abort:
        click.echo("mekong: aborted", err=True)
        return EXIT_TOOL
    except MekongError as e:
        click.echo(f"mekong: error: {e}", err=True)
        return EXIT_TOOL
    except KeyboardInterrupt:
        click.echo("mekong: interrupted", err=True)
        return EXIT_TOOL
    except Exception:  # noqa: BLE001 - a bug: show it, but never with exit code 1 (which means TOTAL-FAILED)
        click.echo("mekong: internal error, please report it:\n" + traceback.format_exc(), err=True)
        return EXIT_TOOL
    return result if isinstance(result, int) else 0


@click.group(cls=MekongGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
@click.version_option(package_name="mekong-trust-ledger", prog_name="mekong")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), envvar=CA_FILE_ENV, expose_value=False,
              callback=lambda _ctx, _p, v: os.environ.__setitem__(CA_FILE_ENV, v) if v else None,
              help=f"PEM CA bundle to verify https:// nodes against (default: the system store; or ${CA_FILE_ENV}).")
def cli() -> None:
    """Mekong Trust Ledger: keys, the genesis ceremony, governance, issuers, credentials, verification, audit.

    \b
    Typical use:
      mekong keys generate --out VN-admin.key          make an encrypted key file
      mekong genesis draft ... / sign / assemble        found a network together
      mekong issuer register VN/customs-coo ...         a member registers an issuer
      mekong credential issue ... / anchor              an issuer signs and anchors a credential
      mekong verify cred.cbor --node URL --as-member TH  a business checks it, trusting no node

    Every command has --help. Commands that talk to a node take --node URL.
    """


cli.add_command(cmd_keys.keys)
cli.add_command(cmd_genesis.genesis)
cli.add_command(cmd_governance.governance)
cli.add_command(cmd_issuer.issuer)
cli.add_command(cmd_issuer.policy)
cli.add_command(cmd_credential.credential)
cli.add_command(cmd_credential.sign)
cli.add_command(cmd_verify.verify_signature)
cli.add_command(cmd_verify.verify)
cli.add_command(cmd_audit.audit)
cli.add_command(cmd_node.node_group)
cli.add_command(cmd_log.log_group)
cli.add_command(cmd_devnet.devnet_group)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mekong`` console script: run the CLI and return its exit code."""
    collector.settle()  # as node.server.main does
    return run(cli, argv if argv is not None else sys.argv[1:], "mekong")

