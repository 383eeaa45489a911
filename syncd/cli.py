"""The command line: a thin layer over the library.

Only click is imported at start-up: each command imports what it needs when it
runs, so that `syncd --help` stays fast. A SyncdError becomes one line on
stderr and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from syncd import __version__
from syncd.errors import SyncdError
from syncd.sandbox.command import sandbox


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncd")
def cli() -> None:
    """Keep docker.io accounts in the state that a YAML file in git describes.

    \b
    syncd validate   check the desired state, send nothing
    syncd plan       show what would change (dry run)
    syncd sandbox    serve a local copy of the accounts API
    """


cli.add_command(sandbox)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except SyncdError as error:
        click.echo(f"syncd: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
