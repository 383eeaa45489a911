"""`syncd status`: what the daemon did and is doing, from the state, as text or JSON.

`status` never calls the API and never writes: syncd.service.status gathers what
it shows (the status pages show the same) from the state, opened read-only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from syncd.cli.options import output_option, settings_from_flags, state_options
from syncd.core.vocabulary import RunResult, SuspensionSource
from syncd.visible import counted, visible, visible_json

#: Users in error listed by the text view; the JSON view lists all.
USERS_IN_ERROR_SHOWN = 20
#: The command column of the last runs: its longest name, so that the results line up.
COMMAND_WIDTH = len("audit prune")


@click.command()
@state_options
@click.option(
    "--runs",
    "limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many of the last runs to list.",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="USER",
    help="Also what syncd knows of this user: last read, pending changes, last write, "
    "error, suspension, held deletions (repeat).",
)
@output_option(help="A summary, or the same as a JSON document.")
def status(limit: int, users: tuple[str, ...], output: str, **flags: Any) -> None:
    """Show the daemon's state from the state file: last runs, drift, next run, guard.

    Reads nothing from the API and writes nothing.
    """
    from syncd.service.status import read_status

    report = read_status(settings_from_flags(flags), limit, users)
    if output == "json":
        click.echo(visible_json(json.dumps(report, indent=2, ensure_ascii=False)))
    else:
        click.echo(render_status(report, users_in_detail=bool(users)), nl=False)


def render_status(report: Mapping[str, Any], *, users_in_detail: bool = False) -> str:
    daemon = report["daemon"]
    lines = [f"state file   {report['state_file']}"]
    if daemon["running"]:
        since = _when(daemon["started_at"])
        if daemon["active"]:  # PostgreSQL: the instance that holds the lock, on any host
            lines.append(f"daemon       active: {visible(daemon['active'])}, since {since}")
        else:
            lines.append(f"daemon       running, pid {daemon['pid'] or 'unknown'}, since {since}")
        lines.append(f"desired      {daemon['desired']} every {daemon['interval']:g} s")
        if daemon["observe"]:
            lines.append("mode         observing: plans and reports drift, writes nothing")
        lines.append(f"next run     {_when(report['next_run_at'])}")
    else:
        lines.append("daemon       not running")
    for standby in daemon["standbys"]:
        # No start time: another database role's session, whose start the server hides.
        lines.append(
            f"standby      {visible(standby['name'])}, waiting"
            + (f" since {_when(standby['since'])}" if standby["since"] else "")
        )
    if report["consecutive_failures"]:
        lines.append(f"failures     {report['consecutive_failures']} in a row (backing off)")
    lines.append(f"last success {_when(report['last_success_at'])}")
    if report["last_good_revision"]:
        lines.append(f"revision     {report['last_good_revision']} (last applied)")
    if (source := report["source"]) is not None:
        read = source["last_success_at"]
        if source["current"]:
            lines.append(f"source       current (read {_when(read)})")
        else:
            # None when a `run --once` whose fetch failed was the first read of its process.
            since = f", last read {_when(read)}" if read else ""
            lines.append(f"source       NOT CURRENT{since}: {visible(source['error'] or '')}")
    if (readiness := report["readiness"]) is not None:
        word = "ready" if readiness["ready"] else "NOT READY"
        lines.append(f"readiness    {word}: {visible(readiness['reason'])}")
    lines.append(f"guard        {_guard(report['guard'])}")
    lines += _held_lines(report["held_changes"], observing=daemon["running"] and daemon["observe"])
    lines.append(f"pending      {_pending(report['pending'], report['run_in_progress'])}")
    lines += _last_cycle_lines(report["last_cycle"])
    in_error = report["users_in_error"]
    lines.append(
        f"in error     {counted(len(in_error), 'user')}" if in_error else "in error     none"
    )
    for user in in_error[:USERS_IN_ERROR_SHOWN]:
        retry = f"; read again {_when(user['retry_at'])}" if user["retry_at"] else ""
        lines.append(
            f"  {user['user']:<30} {user['code']:<18} since {_when(user['since'])}"
            f" ({counted(user['cycles'], 'cycle')}{retry}): {visible(user['message'])}"
        )
    if len(in_error) > USERS_IN_ERROR_SHOWN:
        lines.append(
            f"  and {len(in_error) - USERS_IN_ERROR_SHOWN} more (--output json lists all)"
        )
    lines += _suspension_lines(report["suspensions"])
    lines.append("last runs")
    for entry in report["runs"]:
        revision = (entry["revision"] or "-")[:12]
        failed = f", {entry['failed']} failed" if entry["failed"] else ""
        lines.append(
            f"  {_when(entry['started_at']):<20} {entry['command']:<{COMMAND_WIDTH}} "
            f"{entry['result'] or 'running':<11} {revision:<12}  "
            f"{entry['applied']} applied{failed}"
        )
    if not report["runs"]:
        lines.append("  none")
    if users_in_detail:
        from syncd.cli.user_status import render_users

        lines += render_users(report["users"])
    return "\n".join(lines) + "\n"


def _last_cycle_lines(cycle: Mapping[str, Any] | None) -> list[str]:
    """Why the daemon's last cycle ended as it did, when it said why."""
    if cycle is None or not cycle["message"]:
        return []
    return [f"last cycle   {cycle['result']} at {_when(cycle['at'])}: {visible(cycle['message'])}"]


def _held_lines(held_changes: list[dict[str, Any]], *, observing: bool) -> list[str]:
    """The deletions the daemon's guard held, with the commands that decide."""
    lines: list[str] = []
    # An observing daemon spends no approval: the first cycle after it stops does.
    when = "the first cycle after the daemon stops observing" if observing else "the next cycle"
    for held in held_changes:
        counts = ", ".join(f"{user} ({n})" for user, n in held["per_user"].items())
        what = f"set {held['id']}: {counted(held['deletions'], 'deletion')} ({counts})"
        if held["status"] == "approved":
            lines.append(
                f"held         {what} approved by {visible(held['decided_by'] or '-')}: "
                f"{when} applies them"
            )
        else:
            revision = (held["revision"] or "-")[:12]
            lines.append(
                f"held         {what}, revision {revision}, since {_when(held['held_at'])}; "
                f"decide: {held['approve']}  or  {held['reject']}"
            )
    return lines


def _suspension_lines(suspensions: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for held in suspensions:
        who = "every user" if held["user"] == "*" else held["user"]
        if held["source"] == SuspensionSource.YAML:  # in git: `syncd resume` cannot end it
            by, end = f"suspend: at {visible(held['by'])}", "remove it there to resume"
            until = _when(held["until"]) if held["until"] else "removed"
        else:
            by = f"by {visible(held['by'])}"
            end = f"syncd resume {'--all' if held['user'] == '*' else '--user ' + held['user']}"
            until = _when(held["until"]) if held["until"] else "resumed"
        lines.append(f"suspended    {who}: {visible(held['reason'])} (until {until}, {by}); {end}")
    return lines


def _guard(guard: Mapping[str, Any]) -> str:
    limit, planned = guard["max_deletions"], guard["deletions_planned"]
    if guard["blocked"]:
        return (
            f"BLOCKED the last run: {counted(planned, 'deletion')} planned, the limit is {limit}"
        )
    if guard["held"]:
        return (
            f"HELD the last run's deletions ({planned} planned, the limit is {limit}); "
            "the rest was applied"
        )
    return f"clear (at most {counted(limit, 'deletion')} per run)"


def _pending(pending: Mapping[str, Any] | None, in_progress: bool = False) -> str:
    """The pending line: the last ended run's, and whether another is in progress."""
    said = _pending_after_last(pending)
    return f"{said}; a run is in progress" if in_progress else said


def _pending_after_last(pending: Mapping[str, Any] | None) -> str:
    if pending is None:
        return "unknown: no run yet"
    if pending["as_of"] == RunResult.INTERRUPTED:  # it counted its writes, never its plan
        return "unknown: the last run was interrupted"
    if not pending["planned"]:
        return f"unknown: the last run ({pending['as_of']}) did not get as far as a plan"
    not_read = (
        (pending["users_unreadable"], "that could not be read"),
        (pending.get("users_suspended", 0), "suspended (not read)"),
    )
    unknown = "".join(f"; not known for {counted(n, 'user')} {why}" for n, why in not_read if n)
    if not pending["changes"]:
        return f"none as of the last run ({pending['as_of']}){unknown}"
    detail = ", ".join(f"{action} {n}" for action, n in pending["by_action"].items() if n)
    users = counted(pending["users"], "user")
    if not pending["users_exact"]:
        users = f"up to {users}"
    changes = counted(pending["changes"], "change")
    return f"{changes} for {users} ({detail}) after the last run{unknown}"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
