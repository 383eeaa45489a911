"""`syncd audit`: the audit trail, from the state file, as text or JSON; and its chain.

Its commands (docs/operations.md, "Retention and verification"):

    syncd audit [--user … --since …]   the events
    syncd audit head                   the chain's head, to keep elsewhere
    syncd audit verify [--head H]      the chain checked, from its first kept event
    syncd audit verify --file F        an export checked on its own
    syncd audit export --before D      the events and runs before D, to a file
    syncd audit prune --before D       removed, once an export holds them
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from syncd.cli.options import (
    UNIT_SECONDS,
    output_option,
    refuse_to_overwrite,
    settings_from_flags,
    state_dir_option,
)
from syncd.core.jsondoc import dumps_document
from syncd.core.vocabulary import ActionName, WriteResult
from syncd.errors import StateError
from syncd.visible import counted

if TYPE_CHECKING:
    from syncd.state.retention import Cut

_NO_HISTORY = "syncd has not run with this state directory, so it has no audit trail"


def _moment(value: str) -> datetime:
    """`--since`, `--before`: an ISO date or time, or an age such as 30m, 12h, 7d."""
    if value[:-1].isdigit() and value[-1:] in UNIT_SECONDS:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * UNIT_SECONDS[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use an ISO date/time or an age like 30m, 12h, 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group(invoke_without_command=True)
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
@click.pass_context
def audit(
    ctx: click.Context,
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
    if ctx.invoked_subcommand is not None:
        # Filters given with a subcommand would be ignored without a word: refuse them.
        ignored = [
            param.opts[-1]
            for param in ctx.command.params
            if param.name != "state_dir"
            and ctx.get_parameter_source(param.name or "") == ParameterSource.COMMANDLINE
        ]
        if ignored:
            sub = ctx.invoked_subcommand
            raise click.UsageError(
                f"{', '.join(ignored)}: not taken by `syncd audit {sub}` "
                "(only --state-dir goes before it)"
            )
        ctx.obj = state_dir
        return
    from syncd.state.audit_queries import EventFilter, query_events

    since_moment = None if since is None else _moment(since)
    where = EventFilter(users, since_moment, run_ids, actions, results)
    with _store(state_dir, "audit") as store:  # it only reads
        events = query_events(store.history, where, limit=limit)
    if output == "json":
        click.echo(dumps_document(events))
    else:
        from syncd.cli.render import print_audit, terminal

        print_audit(events, terminal())


def _store(state_dir: str | None, purpose: str, *, read_only: bool = True) -> Any:
    from syncd.state.backend import open_store

    settings = settings_from_flags({"state_dir": state_dir})
    if not settings.on_postgresql and not settings.state_file.exists():
        raise StateError(f"no state file at {settings.state_file}: {_NO_HISTORY}")
    return open_store(settings, purpose, read_only=read_only)


def _state_dir_here_or_before(command: Callable[..., None]) -> Callable[..., None]:
    """--state-dir given after the subcommand (`syncd audit head --state-dir S`), as
    people type it, or before it (`syncd audit --state-dir S head`)."""

    @state_dir_option
    @functools.wraps(command)
    def with_state_dir(state_dir: str | None, **options: Any) -> None:
        command(state_dir or click.get_current_context().obj, **options)

    return with_state_dir


@audit.command()
@_state_dir_here_or_before
@output_option(help=None)
def head(state_dir: str | None, output: str) -> None:
    """Print the chain's head (SEQ:SHA256): a copy kept elsewhere proves the past."""
    from syncd.state.chain import read_head

    with _store(state_dir, "audit head") as store:
        found = read_head(store.history)
    if found.hash is None:  # "N:" would be a head that `verify --head` refuses
        raise click.ClickException(
            "no hashed event yet: there is no head to keep until syncd writes an event"
        )
    if output == "json":
        click.echo(json.dumps({"seq": found.seq, "hash": found.hash}))
    else:
        click.echo(str(found))


@audit.command()
@_state_dir_here_or_before
@click.option(
    "--head",
    "kept",
    metavar="FILE|SEQ:SHA256",
    help="A head printed by `syncd audit head` before: it must still be in the chain.",
)
@click.option(
    "--file",
    "exported",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Check this export (`syncd audit export`) instead of the state.",
)
def verify(state_dir: str | None, kept: str | None, exported: Path | None) -> None:
    """Check the audit trail's hash chain; name the first event that does not match."""
    from syncd.state.chain import Head, verify

    kept_head = None
    if kept is not None:
        path = Path(kept)
        kept_head = Head.parse(path.read_text() if path.is_file() else kept)
    if exported is not None:
        from syncd.state.retention import verify_export

        cut = verify_export(exported, kept_head)
        click.echo(f"{exported} holds: {_held(cut)} before {cut.before}")
        if kept_head is not None:
            click.echo(f"the kept head, event {kept_head.seq}, is in the export")
        return
    with _store(state_dir, "audit verify") as store:
        verified = verify(store.history, kept_head)
    if verified.head is None and verified.cuts:
        last = verified.cuts[-1].head.seq
        click.echo(f"no event since the prune that cut after event {last}: nothing to check")
    elif verified.head is None:
        click.echo(
            f"no hashed event yet ({counted(verified.unhashed, 'event')} from before the chain)"
        )
    else:
        checked = counted(verified.checked, "event")
        click.echo(f"the chain holds: {checked}, {verified.first} to {verified.head.seq}")
        if verified.unhashed:
            click.echo(
                f"{verified.unhashed} older events have no hash: the chain starts at event "
                f"{verified.first}"
            )
    # A cut is not in the chain: the operator is shown each, to own or to question.
    for recorded in verified.cuts:
        made = (
            f"`audit prune` run {recorded.run_id}"
            if recorded.by_prune
            else f"run {recorded.run_id}, which is no `audit prune` that ended ok"
        )
        click.echo(
            f"cut at {recorded.head} on {recorded.cut_at}: "
            f"{counted(recorded.events, 'event')} removed by {made}, {_exported(recorded.export)}"
        )
    if kept_head is None:
        return
    pruned = verified.kept_pruned
    if pruned is None:
        click.echo(f"the kept head, event {kept_head.seq}, is in the chain")
    else:
        click.echo(
            f"the kept head, event {kept_head.seq}, was pruned on {pruned.cut_at} "
            f"{_exported(pruned.export)}: it is the cut, and the kept chain follows it"
        )


def _exported(export: str | None) -> str:
    return f"into {export}" if export else "with no export (--force)"


@audit.command("export")
@_state_dir_here_or_before
@click.option("--before", required=True, metavar="WHEN", help="ISO date/time, or an age: 90d.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON Lines; gzip when the name ends in .gz.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def export_command(state_dir: str | None, before: str, out: Path, force: bool) -> None:
    """Write the events and runs before a date to a file, for `audit prune`."""
    from syncd.state.retention import export

    refuse_to_overwrite(out, force)
    with _store(state_dir, "audit export") as store:
        cut = export(store.history, _moment(before), out)
    click.echo(f"{out}: {_held(cut)}")


@audit.command()
@_state_dir_here_or_before
@click.option("--before", required=True, metavar="WHEN", help="ISO date/time, or an age: 90d.")
@click.option(
    "--export",
    "export_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The export that holds what goes: checked before anything is removed.",
)
@click.option("--force", is_flag=True, help="Remove them without an export.")
def prune(state_dir: str | None, before: str, export_file: Path | None, force: bool) -> None:
    """Remove the events and runs before a date, once an export holds them."""
    from syncd.state.retention import prune as prune_history

    if export_file is None and not force:
        raise click.UsageError("name the export that holds them (--export FILE), or --force")
    with _store(state_dir, "audit prune", read_only=False) as store, store.lock("audit prune"):
        cut = prune_history(store.history, _moment(before), export_file=export_file)
    if not cut.events and not cut.runs:
        click.echo(f"nothing before {cut.before}")
        return
    # Runs alone leave the chain where it was (`audit verify` says where it starts).
    kept = f"; the kept chain starts after event {cut.last}" if cut.events else ""
    click.echo(f"removed {_held(cut)} before {cut.before}{kept}")


def _held(cut: Cut) -> str:
    """What an export holds, or a prune removed: `12 events (to event 40) and 3 runs`."""
    to = f" (to event {cut.last})" if cut.events else ""
    return f"{counted(cut.events, 'event')}{to} and {counted(cut.runs, 'run')}"
