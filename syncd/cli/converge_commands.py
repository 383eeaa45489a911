"""`syncd plan` and `syncd apply`: the dry run and the converge, from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from syncd.cli.options import (
    deadline_option,
    desired_for,
    keep_until_exit,
    output_option,
    parse_duration,
    scope_of,
    scope_options,
    settings_from_flags,
    settings_options,
)
from syncd.core.jsondoc import dumps_document
from syncd.errors import EXIT_CHANGES_PENDING, EXIT_ERROR, UsageError
from syncd.visible import counted


@click.command()
@settings_options
@click.option("--refresh", is_flag=True, help="Read every user from the API, ignoring the cache.")
@output_option()
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when changes are pending, 0 when none (a deletion the operator "
    "rejected, left out, is none), 1 on error or when the plan cannot show deletions "
    "of addresses syncd owns (ownership_unknown).",
)
@scope_options
@click.option("--out", "out_file", metavar="FILE", help="Save the plan for a later apply.")
@deadline_option
def plan(
    refresh: bool,
    output: str,
    detailed_exitcode: bool,
    out_file: str | None,
    **options: Any,
) -> None:
    """Show what would change, and change nothing."""
    from syncd.cli.progress import fetch_progress
    from syncd.cli.stopping import run_stoppable
    from syncd.core.plan import DeleteEmail
    from syncd.engine.reconcile import compute_plan

    scope = scope_of(options)
    settings = settings_from_flags(options)
    # A dry run may show a remembered file; what may be applied (--out) is read from the file.
    desired = desired_for(settings, scope, remember=out_file is None, output=output)
    with fetch_progress(enabled=output == "text") as on_progress:
        result = run_stoppable(
            compute_plan(settings, desired, refresh=refresh, on_progress=on_progress)
        )
    keep_until_exit()
    deletions = result.plan.count(DeleteEmail)
    over = deletions > settings.max_deletions
    if output == "json":
        document = result.document()
        document["guard"] = {
            "max_deletions": settings.max_deletions,
            "deletions": deletions,
            "would_trip": over,
        }
        click.echo(dumps_document(document))
    else:
        from syncd.cli.render import print_plan, terminal

        print_plan(result.plan, terminal(), result.oldest_age, result.rejections)
    if over:
        click.echo(
            f"warning: {counted(deletions, 'deletion')} planned, over the limit of "
            f"{settings.max_deletions} "
            "(SYNCD_MAX_DELETIONS): apply would refuse the plan (exit 3, nothing applied), "
            "a daemon would apply the rest and hold them for `syncd approve`",
            err=True,
        )
    if out_file:
        import shlex

        from syncd.core.api_url import normal_api_url
        from syncd.engine.planfile import save_plan

        save_plan(
            out_file,
            result.plan,
            result.read.states,
            result.source,
            api=normal_api_url(settings.api_url),
            read_at=result.read_at,
        )
        from syncd.desired.gitsource import shown_desired

        # Beside a JSON document on stdout, the news goes to stderr; with the desired
        # state the plan was made from, which apply checks it against.
        click.echo(
            f"\nSaved the plan to {out_file}. To apply exactly these changes:\n"
            f"    syncd apply {shlex.quote(out_file)} -f "
            f"{shlex.quote(shown_desired(str(settings.desired)))}",
            err=output == "json",
        )
    if result.plan.errors:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and result.plan.ownership_unknown:
        # Not 0 ("no changes") nor 2 ("changes pending, and the plan is complete"): the
        # plan cannot show deletions the daemon will make, so it is incomplete, as a plan
        # that could not read a user is (exit 1), and a CI check fails rather than pass.
        click.echo(
            "error: the plan does not show deletions of addresses syncd owns "
            "(ownership_unknown), so --detailed-exitcode exits 1",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and not result.plan.is_empty:
        sys.exit(EXIT_CHANGES_PENDING)


@click.command()
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
@scope_options
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log every event on a terminal too (it shows warnings and errors only).",
)
@deadline_option
@click.option(
    "--lock-timeout",
    metavar="DURATION",
    help="Wait this long (60s, 5m) for a running daemon to finish its cycle, instead of "
    "being refused; then write between two of its cycles.",
)
def apply(
    plan_file: str | None,
    yes: bool,
    allow_deletions: int | None,
    refresh: bool,
    verbose: bool,
    lock_timeout: str | None,
    **options: Any,
) -> None:
    """Converge the accounts to the desired state, or apply a saved plan (asks first)."""
    from syncd.cli.apply_view import ApplyView
    from syncd.cli.progress import fetch_progress
    from syncd.cli.render import terminal
    from syncd.cli.stopping import run_stoppable
    from syncd.core.api_url import normal_api_url
    from syncd.engine.planfile import load_plan
    from syncd.engine.reconcile import (
        ConvergeResult,
        Deadline,
        PlanStep,
        connect,
        converge,
        leaving_out_rejected,
        planning,
        saved_planning,
    )

    scope = scope_of(options)
    settings = settings_from_flags(options, verbose=verbose)
    if not yes and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.UsageError("no terminal to confirm on: pass --yes to apply without asking")
    if plan_file and (scope or refresh):
        raise click.UsageError(
            "--user, --exclude, --group and --refresh make a new plan; a saved plan is "
            "applied whole and always reads its users again"
        )
    limit = settings.max_deletions if allow_deletions is None else allow_deletions
    waiting = 0.0 if lock_timeout is None else parse_duration(lock_timeout)
    view = ApplyView(terminal(), ask=not yes)

    with fetch_progress() as on_progress:
        make_plan: PlanStep
        if plan_file:
            saved = load_plan(plan_file)
            if "desired" not in settings.model_fields_set and not Path(settings.desired).exists():
                raise UsageError(
                    f"{plan_file} is checked against the desired state it was made from: "
                    "give it with -f (or SYNCD_DESIRED)"
                )
            # Refused here, before a run begins or any request: its basis is one API's,
            # and its changes one desired state's.
            saved.check_api(normal_api_url(settings.api_url))
            desired = desired_for(settings)
            saved.check_source(desired)
            make_plan = saved_planning(saved, desired)
        else:
            desired = desired_for(settings, scope)
            make_plan = planning(desired, refresh=refresh, on_progress=on_progress)
        make_plan = leaving_out_rejected(make_plan)

        async def run() -> ConvergeResult:
            async with (
                Deadline(settings.run_deadline) as deadline,
                connect(settings, lock_timeout=waiting) as connection,
            ):
                return await converge(
                    connection,
                    make_plan,
                    command="apply",
                    deletion_limit=limit,
                    confirm=view.confirm,
                    on_plan=view.show_plan,
                    on_change=view.on_change,
                    cancelled_as=deadline.cancelled_as,
                )

        # One writer at a time (connect takes the lock): an apply beside the daemon
        # would write the same changes twice and interleave their audit trails.
        converged = run_stoppable(run())
    view.finish(converged, settings.state_location)
    report = converged.report
    failed = converged.result.plan.errors or (report is not None and not report.ok)
    # Declining exits 1 too, as terraform does: a script must not take it for success.
    if failed or converged.declined:
        sys.exit(EXIT_ERROR)


@click.command()
@click.argument("plan_file", metavar="PLAN.json")
@output_option()
def show(plan_file: str, output: str) -> None:
    """Print a plan saved with `plan --out`, as it was made; read nothing else."""
    from syncd.engine.planfile import load_plan

    saved = load_plan(plan_file)
    if output == "json":
        click.echo(dumps_document(saved.plan.to_json(saved.source)))
    else:
        from syncd.cli.render import print_plan, terminal

        print_plan(saved.plan, terminal())
