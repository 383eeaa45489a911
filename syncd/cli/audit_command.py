"""`syncd audit`: the audit trail, from the state file, as text or JSON."""

from __future__ import annotations

from typing import Any

import click

from syncd.cli.options import output_option, settings_from_flags, state_dir_option
from syncd.core.vocabulary import ActionName, WriteResult


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


@click.command()
@state_dir_option
@click.option("--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat).")
@click.option("--since", metavar="WHEN", help="ISO date/time, or an age: 30m, 12h, 7d.")
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="Only this run (repeat).")
@click.option(
    "--action",
    "actions",
    multiple=True,
    # By value: click matches an Enum member by its name.
    type=click.Choice([action.value for action in ActionName]),
    help="Only this action (repeat).",
)
@click.option(
    "--result",
    "results",
    multiple=True,
    # Every result but `skipped`: a write not sent has no intent, so no outcome.
    type=click.Choice([result.value for result in WriteResult if result != WriteResult.SKIPPED]),
    help="Only the writes that ended so, with their intents (repeat).",
)
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@output_option(help=None)
def audit(
    state_dir: str | None,
    users: tuple[str, ...],
    since: str | None,
    run_ids: tuple[str, ...],
    actions: tuple[str, ...],
    results: tuple[str, ...],
    limit: int,
    output: str,
) -> None:
    """Show the audit trail: every intended write, its outcome, and who ran it."""
    from syncd.state.audit import EventFilter, query_events
    from syncd.state.backend import open_store

    settings = settings_from_flags({"state_dir": state_dir})
    if not settings.on_postgresql and not settings.state_file.exists():
        raise click.ClickException(f"no state file at {settings.state_file}: nothing was applied")
    where = EventFilter(users, _parse_since(since), run_ids, actions, results)
    with open_store(settings, "audit", read_only=True) as store:  # it only reads
        events = query_events(store.history, where, limit=limit)
    if output == "json":
        from syncd.core.jsondoc import dumps_document

        click.echo(dumps_document(events))
    else:
        from syncd.cli.render import print_audit, terminal

        print_audit(events, terminal())
