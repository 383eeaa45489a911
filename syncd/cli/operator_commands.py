"""`syncd suspend`, `resume`, `approve`, `reject`: the operator's word to a running daemon.

They write the state (syncd.state.suspensions, held_changes) without taking
the lock that a running daemon holds: the daemon reads the suspensions at each
cycle and before each user's writes, and the held sets at each cycle, so no
restart is needed. Each is recorded as a run
with an audit event, with who said it (the OS user @ host).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from syncd.cli.options import parse_duration, settings_from_flags, state_options, with_options
from syncd.core.suspension import EVERYONE, Suspension
from syncd.core.vocabulary import HeldStatus, OperatorEvent, RunResult, SuspensionSource
from syncd.errors import UsageError
from syncd.visible import counted

if TYPE_CHECKING:
    from syncd.state.backend import Database


_users_options = with_options(
    click.option("--user", "users", multiple=True, metavar="USER", help="A user (repeatable)."),
    click.option("--all", "everyone", is_flag=True, help="Every user of the desired state."),
)


def _chosen(users: tuple[str, ...], everyone: bool) -> list[str]:
    from syncd.core.fields import is_valid_username

    if bool(users) == everyone:
        raise click.UsageError("name users with --user, or say --all")
    bad = [user for user in users if not is_valid_username(user)]
    if bad:
        raise click.UsageError(f"not a username: {bad[0]!r}")
    return [EVERYONE] if everyone else sorted(set(users))


@click.command()
@state_options
@click.option("--reason", required=True, help="Why (an incident, a ticket): shown everywhere.")
@_users_options
@click.option("--for", "lasting", metavar="DURATION", help="For how long: 90s, 15m, 2h, 3d.")
@click.option("--until", "until", metavar="TIME", help="Until an ISO date or datetime with zone.")
def suspend(
    reason: str,
    users: tuple[str, ...],
    everyone: bool,
    lasting: str | None,
    until: str | None,
    **flags: Any,
) -> None:
    """Leave users alone (not read, not written) until resumed or until a time.

    A running daemon honours it before its next write, without a restart.
    """
    from syncd.desired.fileformat import suspension_end

    chosen = _chosen(users, everyone)
    if not reason.strip():
        raise click.UsageError("--reason must say why")
    if lasting is not None and until is not None:
        raise click.UsageError("--for and --until say the same thing: give one")
    end: float | None = None
    if lasting is not None:
        end = time.time() + parse_duration(lasting)
    elif until is not None:
        end = suspension_end(until)
        if end is None:
            raise click.UsageError(
                f"invalid --until {until!r}: a date (2027-01-31) or an ISO datetime with a zone"
            )
    if end is not None and end <= time.time():
        # It would hold no one, and replace (so end) a suspension that holds.
        given = f"--for {lasting}" if lasting is not None else f"--until {until}"
        raise click.UsageError(f"{given} has already passed: nothing was suspended")
    with _history(flags, "suspend") as (db, who):
        from syncd.state.suspensions import SuspensionTable

        suspension = Suspension(reason.strip(), end, who, SuspensionSource.CLI)
        SuspensionTable(db).suspend(chosen, suspension)
        _audit(db, OperatorEvent.SUSPEND, dict.fromkeys(chosen, suspension.describe()))
    ending = suspension.until_text() or "resumed"
    click.echo(f"Suspended {_named(chosen)} until {ending}: {reason.strip()}")


@click.command()
@state_options
@_users_options
def resume(users: tuple[str, ...], everyone: bool, **flags: Any) -> None:
    """End the suspensions made by `syncd suspend` of the users named, or all of them.

    A `suspend:` in the desired state goes on holding: each user it holds is named
    with the place to edit; of a user named with --user, the exit is 1 (that user is
    not managed again), while --all did what it says and exits 0.
    """
    chosen = _chosen(users, everyone)
    with _history(flags, "resume") as (db, _):
        from syncd.service.status import desired_suspensions
        from syncd.state.daemon_state import read_daemon_state
        from syncd.state.suspensions import SuspensionTable

        # As the daemon's last cycle found them: status shows them so.
        in_desired = desired_suspensions(read_daemon_state(db))
        table = SuspensionTable(db)
        held_before = table.all()
        gone = table.resume(None if everyone else chosen)
        if gone:
            _audit(db, OperatorEvent.RESUME, dict.fromkeys(gone, "resumed"))
    written = [s for user, s in in_desired.items() if everyone or user in chosen]
    if not gone and not written:
        hint = ""
        if not everyone and EVERYONE in held_before:
            hint = " Every user is suspended: syncd resume --all."
        click.echo(f"No suspension to end for {_named(chosen)}.{hint}")
    elif gone:
        # Their own suspension ended, not `suspend --all`'s: they are not managed again yet.
        all_of_them = None if everyone else held_before.get(EVERYONE)
        if all_of_them is not None and all_of_them.holds(time.time()):
            click.echo(
                f"Ended the suspension of {_named(gone)}; still suspended by the suspension "
                f"of every user: {all_of_them.describe()}. syncd resume --all ends it."
            )
        elif written:
            click.echo(f"Ended the syncd suspend of {_named(gone)}.")
        else:
            click.echo(f"Resumed {_named(gone)}: managed again from the next cycle.")
    still = [
        f"{s['user']} is still suspended by the suspend: at {s['by']} (as the daemon's"
        " last cycle found it): remove it from the desired state"
        for s in written
    ]
    if everyone:  # a note: every `syncd suspend` ended, as asked
        for line in still:
            click.echo(line)
    elif still:
        raise UsageError("\n".join(still))


def _named(users: list[str]) -> str:
    return "every user" if users == [EVERYONE] else ", ".join(users)


@contextmanager
def _history(flags: dict[str, Any], purpose: str) -> Iterator[tuple[Database, str]]:
    """The state's history, opened for one decision, and who decides ("user@host")."""
    from syncd.state.audit import actor
    from syncd.state.backend import open_store

    with open_store(settings_from_flags(flags), purpose) as store:
        who = actor()
        yield store.history, f"{who.sudo_user or who.os_user}@{who.host}"


def _audit(db: Database, event: OperatorEvent, messages: Mapping[str, str]) -> None:
    """One run for the command, with one audit event per user it names."""
    from syncd.state.audit import AuditTrail

    audit = AuditTrail(db, {})
    audit.begin_run(event)
    for user, message in messages.items():
        audit.decision(event, user, message)
    audit.end_run(RunResult.OK, {})


@click.command()
@state_options
@click.argument("held_id", metavar="ID")
def approve(held_id: str, **flags: Any) -> None:
    """Let the next daemon cycle apply exactly the deletions held as set ID.

    A deletion not in the set still counts against SYNCD_MAX_DELETIONS. A rejected
    set may be approved too: its deletions are rejected no more.
    """
    _decide(flags, held_id, HeldStatus.APPROVED)


@click.command()
@state_options
@click.argument("held_id", metavar="ID")
def reject(held_id: str, **flags: Any) -> None:
    """Drop the deletions held as set ID: left out at any revision while the desired
    state asks for them (`syncd approve ID` lets them through after all)."""
    _decide(flags, held_id, HeldStatus.REJECTED)


def _decide(flags: dict[str, Any], held_id: str, status: HeldStatus) -> None:
    from syncd.core.held import per_user
    from syncd.state.held_changes import decide

    approving = status == HeldStatus.APPROVED
    event = OperatorEvent.APPROVE if approving else OperatorEvent.REJECT
    with _history(flags, str(event)) as (db, who):
        held = decide(db, held_id, status, who)
        counts = per_user(held.deletion_keys())
        _audit(
            db,
            event,
            {
                user: f"{counted(count, 'deletion')} of held set {held.id}"
                for user, count in counts.items()
            },
        )
    shown = ", ".join(f"{user} ({count})" for user, count in counts.items())
    if approving:
        click.echo(
            f"Approved {counted(len(held.deletions), 'deletion')} of set {held.id}: {shown}. "
            "The next daemon cycle applies them."
        )
    else:
        click.echo(
            f"Rejected {counted(len(held.deletions), 'deletion')} of set {held.id}: {shown}. "
            "Not asked about again, at any revision, while the desired state asks for them; "
            f"syncd approve {held.id} lets them through."
        )
