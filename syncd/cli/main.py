"""The `syncd` command: one click group, its exit codes, and the commands in it.

Each command lives in the module of its kind (listed in syncd.cli) and imports
what it needs when it runs, so that `syncd --help` stays fast. A SyncdError
becomes one line on stderr and its exit code; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from syncd import __version__
from syncd.cli.audit_command import audit
from syncd.cli.converge_commands import apply, plan, show
from syncd.cli.demo import demo
from syncd.cli.desired_commands import import_, render, schema, validate
from syncd.cli.operator_commands import approve, reject, resume, suspend
from syncd.cli.run_command import run
from syncd.cli.state_commands import state
from syncd.cli.status_command import status
from syncd.errors import EXIT_ERROR, SyncdError
from syncd.sandbox.command import sandbox
from syncd.visible import visible_lines


class SyncdGroup(click.Group):
    """Exit codes for every command: a SyncdError is one line on stderr and its own code,
    and a usage error is 1, not click's 2, which `plan --detailed-exitcode` reserves
    for "changes pending" (a typo in CI must not read as a pending change)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncdError as error:
            click.echo(f"syncd: {visible_lines(str(error))}", err=True)
            ctx.exit(error.exit_code)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as error:
            error.show()  # with the usage line, as click shows it
            sys.exit(EXIT_ERROR)
        except click.ClickException as error:  # one line, as a SyncdError is
            click.echo(f"syncd: {visible_lines(error.format_message())}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=SyncdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncd")
def cli() -> None:
    """Keep docker.io accounts in the state that a YAML file in git describes."""


for command in (
    validate,
    schema,
    render,
    plan,
    show,
    apply,
    audit,
    import_,
    demo,
    sandbox,
    run,
    status,
    suspend,
    resume,
    approve,
    reject,
    state,
):
    cli.add_command(command)


def main() -> None:
    cli.main(prog_name="syncd")
