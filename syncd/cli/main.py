"""The command line: a thin layer over the library.

Only click is imported at start-up: each command imports what it needs when it
runs, so that `syncd --help` stays fast. A SyncdError becomes one line on
stderr and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from syncd import __version__
from syncd.errors import EXIT_CHANGES_PENDING, EXIT_ERROR, SyncdError
from syncd.sandbox.command import sandbox
from syncd.service.commands import run, status
from syncd.visible import visible_lines

if TYPE_CHECKING:
    from syncd.core.desired import DesiredState
    from syncd.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """Flags shared by every command that talks to the API; each overrides its SYNCD_ variable."""
    options = [
        click.option("--config", "config_file", metavar="FILE", help="TOML settings file."),
        click.option("--api-url", help="Base URL of the accounts API [SYNCD_API_URL]."),
        click.option(
            "--credentials-dir",
            type=click.Path(file_okay=False),
            help="Directory of <user>.token / <user>.password files [SYNCD_CREDENTIALS_DIR].",
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False),
            help="Where the state file lives [SYNCD_STATE_DIR].",
        ),
        click.option("--concurrency", type=int, help="Requests in flight [SYNCD_CONCURRENCY]."),
        click.option(
            "--insecure-http",
            is_flag=True,
            default=None,
            help="Allow plain http:// to a non-loopback host.",
        ),
        click.option(
            "-f",
            "--file",
            "desired",
            metavar="PATH",
            help="Desired-state file or directory [SYNCD_DESIRED, ./desired-state.yaml].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(options: dict[str, Any]) -> Settings:
    from syncd.settings import load_settings

    return load_settings(**options)


def _load(
    settings: Settings, users: tuple[str, ...] = (), *, remember: bool = False
) -> DesiredState:
    from syncd.desired.gitsource import resolve_desired
    from syncd.engine.reconcile import restrict

    desired = restrict(resolve_desired(settings, remember=remember), users)
    _keep_until_exit()
    return desired


def _keep_until_exit() -> None:
    """Hide what is alive now from the cyclic garbage collector, for a one-shot command.

    The modules, the desired state and the plan live until the process exits,
    yet each full collection walks them all again: 0.1-0.2 s of a warm plan of
    10,000 users. They hold no cycles to collect. Never for the daemon, which
    lives on and reloads.
    """
    import gc

    gc.freeze()


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
        except click.ClickException as error:
            error.show()
            sys.exit(EXIT_ERROR if isinstance(error, click.UsageError) else error.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=SyncdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncd")
def cli() -> None:
    """Keep docker.io accounts in the state that a YAML file in git describes."""


@cli.command()
@click.option("-f", "--file", "desired", metavar="PATH", help="Desired-state file or directory.")
def validate(desired: str | None) -> None:
    """Check the desired state; send nothing to the API."""
    settings = _settings({"desired": desired})
    state = _load(settings)
    click.echo(f"{settings.desired}: valid, {len(state.users)} users")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the desired-state format."""
    import json

    from syncd.desired.loading import desired_state_json_schema

    click.echo(json.dumps(desired_state_json_schema(), indent=2))


@cli.command()
@settings_options
@click.option("--refresh", is_flag=True, help="Read every user from the API, ignoring the cache.")
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Human diff or the JSON contract.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when changes are pending, 0 when none, 1 on error.",
)
@click.option("--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat).")
@click.option("--out", "out_file", metavar="FILE", help="Save the plan for a later apply.")
def plan(
    refresh: bool,
    output: str,
    detailed_exitcode: bool,
    users: tuple[str, ...],
    out_file: str | None,
    **options: Any,
) -> None:
    """Show what would change, and change nothing."""
    import asyncio

    from syncd.cli.progress import fetch_progress
    from syncd.engine.reconcile import compute_plan

    settings = _settings(options)
    # A dry run may show a remembered file; what may be applied (--out) is read from the file.
    desired = _load(settings, users, remember=out_file is None)
    with fetch_progress(enabled=output == "text") as on_progress:
        result = asyncio.run(
            compute_plan(settings, desired, refresh=refresh, on_progress=on_progress)
        )
    _keep_until_exit()
    if out_file:
        from syncd.engine.planfile import save_plan

        save_plan(out_file, result.plan, result.live, result.source)
    if output == "json":
        from syncd.core.jsondoc import dumps_document

        click.echo(dumps_document(result.plan.to_json(result.source)))
    else:
        from syncd.cli.render import print_plan, terminal

        print_plan(result.plan, terminal())
    if result.plan.errors:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and not result.plan.is_empty:
        sys.exit(EXIT_CHANGES_PENDING)


@cli.command()
@settings_options
@click.argument("plan_file", required=False, metavar="[PLAN.json]")
@click.option(
    "--yes", is_flag=True, help="Apply without asking (required when not on a terminal)."
)
@click.option(
    "--allow-deletions",
    type=click.IntRange(min=0),
    metavar="N",
    help="Allow up to N email deletions in this run [SYNCD_MAX_DELETIONS, 10].",
)
@click.option("--refresh", is_flag=True, help="Read every user from the API, ignoring the cache.")
@click.option("--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat).")
def apply(
    plan_file: str | None,
    yes: bool,
    allow_deletions: int | None,
    refresh: bool,
    users: tuple[str, ...],
    **options: Any,
) -> None:
    """Converge the accounts to the desired state, or apply a saved plan (asks first)."""
    import asyncio
    import signal

    from syncd.cli.progress import fetch_progress
    from syncd.cli.render import print_apply_report, print_plan, terminal
    from syncd.engine.planfile import load_plan
    from syncd.engine.reconcile import (
        ConvergeResult,
        PlanResult,
        PlanStep,
        connect,
        converge,
        planning,
        saved_planning,
    )
    from syncd.logs import configure_logging
    from syncd.state.lock import acquire

    settings = _settings(options)
    if not yes and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.UsageError("no terminal to confirm on: pass --yes to apply without asking")
    if plan_file and users:
        raise click.UsageError("--user limits a new plan; a saved plan is applied whole")
    configure_logging(settings.log_format)
    limit = settings.max_deletions if allow_deletions is None else allow_deletions
    console = terminal()

    def confirm(result: PlanResult) -> bool:
        if yes:
            return True
        count = len(result.plan.changes)
        # asyncio swallows the first Ctrl-C while the prompt blocks its loop:
        # give the prompt the plain handler, so Ctrl-C means "no" at once.
        handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return click.confirm(f"Apply {count} change{'s' if count != 1 else ''}?")
        except click.Abort:
            click.echo()
            return False
        finally:
            signal.signal(signal.SIGINT, handler)

    def show_plan(result: PlanResult) -> None:
        print_plan(result.plan, console)
        _keep_until_exit()

    with fetch_progress() as on_progress:
        make_plan: PlanStep
        if plan_file:
            make_plan = saved_planning(load_plan(plan_file))
        else:
            desired = _load(settings, users)
            make_plan = planning(desired, refresh=refresh, on_progress=on_progress)

        async def run() -> ConvergeResult:
            async with connect(settings) as connection:
                return await converge(
                    connection,
                    make_plan,
                    command="apply",
                    deletion_limit=limit,
                    confirm=confirm,
                    on_plan=show_plan,
                )

        # One writer per state directory: an apply beside the daemon would
        # write the same changes twice and interleave their audit trails.
        with acquire(settings.state_dir):
            converged = asyncio.run(run())
    print_apply_report(converged, console, settings.state_file)
    report = converged.report
    failed = converged.result.plan.errors or (report is not None and not report.ok)
    # Declining exits 1 too, as terraform does: a script must not take it for success.
    if failed or converged.declined:
        sys.exit(EXIT_ERROR)


def _parse_since(value: str | None) -> Any:
    """`--since`: an ISO date or time, or an age such as 30m, 12h, 7d."""
    if value is None:
        return None
    from datetime import UTC, datetime, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use an ISO date/time or an age like 30m, 12h, 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@cli.command()
@click.option("--state-dir", type=click.Path(file_okay=False), help="[SYNCD_STATE_DIR]")
@click.option("--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat).")
@click.option("--since", metavar="WHEN", help="ISO date/time, or an age: 30m, 12h, 7d.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit(
    state_dir: str | None, users: tuple[str, ...], since: str | None, limit: int, output: str
) -> None:
    """Show the audit trail: every intended write and its outcome."""
    from syncd.state.audit import query_events
    from syncd.state.statefile import open_state

    settings = _settings({"state_dir": state_dir})
    if not settings.state_file.exists():
        raise click.ClickException(f"no state file at {settings.state_file}: nothing was applied")
    db = open_state(settings.state_file)
    try:
        events = query_events(db, users=users, since=_parse_since(since), limit=limit)
    finally:
        db.close()
    if output == "json":
        from syncd.core.jsondoc import dumps_document

        click.echo(dumps_document(events))
    else:
        from syncd.cli.render import print_audit, terminal

        print_audit(events, terminal())


@cli.command("import")
@settings_options
@click.option("--user", "users", multiple=True, metavar="NAME", help="Import this user (repeat).")
@click.option("--out", "out_file", metavar="FILE", help="Write here instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_(users: tuple[str, ...], out_file: str | None, force: bool, **options: Any) -> None:
    """Write a desired-state file from the live accounts.

    Without --user, every user of the credentials directory is imported.
    """
    import asyncio
    import os
    from pathlib import Path

    from syncd.api.client import AccountsClient
    from syncd.api.credentials import CredentialStore
    from syncd.desired.loading import parse_desired
    from syncd.engine.importing import read_accounts, render_desired

    if out_file and Path(out_file).exists() and not force:
        raise click.ClickException(f"{out_file} exists; pass --force to overwrite it")
    settings = _settings(options)
    credentials = CredentialStore.from_settings(settings)
    names = sorted(set(users) or credentials.usernames())
    if not names:
        raise click.UsageError("no users: name them with --user or set a credentials directory")

    async def read() -> str:
        async with AccountsClient(settings, credentials.for_user) as client:
            return render_desired(await read_accounts(client, names, settings.concurrency))

    text = asyncio.run(read())
    parse_desired([(out_file or "<import>", text.encode())])  # never write an invalid file
    if not out_file:
        click.echo(text, nl=False)
        return
    partial = f"{out_file}.partial"
    Path(partial).write_text(text, encoding="utf-8")
    os.replace(partial, out_file)
    click.echo(f"Imported {len(names)} users into {out_file}.", err=True)


@cli.command()
@click.option(
    "-f",
    "--file",
    "desired",
    default="desired-state.example.yaml",
    show_default=True,
    help="The desired state to converge to.",
)
@click.option(
    "--workdir",
    default=".syncd-demo",
    show_default=True,
    help="Where the demo keeps its credentials and state (emptied first).",
)
def demo(desired: str, workdir: str) -> None:
    """Run plan → apply → plan against a local sandbox, step by step."""
    from pathlib import Path

    from syncd.cli.demo import run_demo

    def invoke(args: list[str]) -> int:
        try:
            result = cli.main(args, prog_name="syncd", standalone_mode=False)
        except SystemExit as done:
            return int(done.code or 0)
        return result if isinstance(result, int) else 0

    run_demo(Path(desired), Path(workdir), invoke)


cli.add_command(sandbox)
cli.add_command(run)
cli.add_command(status)


def main() -> None:
    cli.main(prog_name="syncd")
