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

if TYPE_CHECKING:
    from syncd.desired import DesiredState
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


def _load(settings: Settings, users: tuple[str, ...] = ()) -> DesiredState:
    from syncd.loading import load_desired
    from syncd.reconcile import restrict

    return restrict(load_desired(settings.desired), users)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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

    from syncd.loading import desired_state_json_schema

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

    from syncd.progress import fetch_progress
    from syncd.reconcile import compute_plan

    settings = _settings(options)
    desired = _load(settings, users)
    with fetch_progress(enabled=output == "text") as on_progress:
        result = asyncio.run(
            compute_plan(settings, desired, refresh=refresh, on_progress=on_progress)
        )
    document = result.plan.to_json(result.source())
    if out_file:
        from syncd.planfile import save_plan

        save_plan(out_file, result)
    if output == "json":
        import json

        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from syncd.render import print_plan

        print_plan(result.plan, Console(highlight=False))
    if result.plan.errors:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and not result.plan.is_empty:
        sys.exit(EXIT_CHANGES_PENDING)


@cli.command()
@settings_options
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
    yes: bool,
    allow_deletions: int | None,
    refresh: bool,
    users: tuple[str, ...],
    **options: Any,
) -> None:
    """Converge the accounts to the desired state (asks first)."""
    import asyncio

    from rich.console import Console

    from syncd.logs import configure_logging
    from syncd.progress import fetch_progress
    from syncd.reconcile import PlanResult, connect, converge
    from syncd.render import print_apply_report, print_plan

    settings = _settings(options)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive:
        raise click.UsageError("no terminal to confirm on: pass --yes to apply without asking")
    configure_logging(settings.log_format)
    desired = _load(settings, users)
    console = Console(highlight=False)

    def show(result: PlanResult) -> None:
        print_plan(result.plan, console)

    def confirm(result: PlanResult) -> bool:
        count = len(result.plan.changes)
        return yes or click.confirm(f"Apply {count} change{'s' if count != 1 else ''}?")

    async def run() -> Any:
        async with connect(settings) as connection:
            return await converge(
                connection,
                desired,
                command="apply",
                deletion_limit=settings.max_deletions
                if allow_deletions is None
                else allow_deletions,
                confirm=confirm,
                on_plan=show,
                refresh=refresh,
                on_progress=on_progress,
            )

    with fetch_progress() as on_progress:
        converged = asyncio.run(run())
    print_apply_report(converged, console, settings.state_file)
    failed = converged.result.plan.errors or (converged.report and not converged.report.ok)
    if failed:
        sys.exit(EXIT_ERROR)


cli.add_command(sandbox)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
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
