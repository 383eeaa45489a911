"""Showing a plan to a person: a careful diff, coloured on a terminal.

janedoe
  ~ full_name: "Jane" → "Jane Doe"
  + jane.doe+other@example.com
  - old@example.com
✗ johnsmith: user_not_found: the API has no such user (404)

Plan: 3 changes for 1 user (…). Incomplete: 1 of 2 users could not be read, 1 error.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style

from syncd.core.held import Rejections
from syncd.core.plan import AddEmail, DeleteEmail, Plan, UpdateProfile
from syncd.core.vocabulary import ActionName
from syncd.visible import counted, quoted, visible


def terminal() -> Console:
    """Standard output: colour on a terminal, and long lines never broken in two."""
    return Console(highlight=False, soft_wrap=True)


def summary_line(plan: Plan, rejected: int = 0) -> str:
    """The last line of a plan. It says "match" only when every user was read and is
    equal: not while `rejected` deletions the desired state asks for are left out."""
    unreadable = len(plan.unreadable)
    # Suspended users are neither read nor compared: "match" would be false of them.
    compared = plan.users - unreadable - len(plan.suspended)
    if plan.users == 0:  # none desired, or a selection left no one: "match" would be false
        head = "No users to compare (none desired or selected): nothing was read."
    elif plan.is_empty and plan.complete and plan.ownership_unknown:
        # Nothing found, but what syncd owns could not be known: "match" would be false.
        head = "No changes found, but deletions of addresses syncd owns are not shown."
    elif plan.is_empty and rejected:
        # The accounts differ from the desired state, as the operator decided.
        head = f"Nothing to apply: {counted(rejected, 'deletion')} rejected, left out."
    elif plan.is_empty and plan.complete and not plan.suspended:
        head = "No changes: the accounts match the desired state."
    elif plan.is_empty and plan.complete:
        head = f"No changes for the {counted(compared, 'user')} compared."
    elif plan.is_empty:
        head = f"Nothing to change for {counted(compared, 'user')} that could be compared."
    else:
        parts = [
            counted(plan.count(UpdateProfile), "profile update"),
            counted(plan.count(AddEmail), "address to add", "addresses to add"),
            counted(plan.count(DeleteEmail), "to delete", "to delete"),
        ]
        head = (
            f"Plan: {counted(len(plan.changes), 'change')} for "
            f"{counted(len(plan.users_with_changes()), 'user')} ({', '.join(parts)})."
        )
    tail = []
    if plan.suspended:
        tail.append(f"{counted(len(plan.suspended), 'user')} suspended (not read)")
    if unreadable:
        tail.append(f"Incomplete: {unreadable} of {counted(plan.users, 'user')} could not be read")
    if plan.warnings:
        tail.append(counted(len(plan.warnings), "warning"))
    if plan.errors:
        tail.append(counted(len(plan.errors), "error"))
    return head + (f" {', '.join(tail)}." if tail else "")


#: A plan with no rejected deletion left out.
NONE_REJECTED = Rejections()

#: Users named in the line of a shared failure; the JSON output names them all.
SHARED_NAMES_SHOWN = 3


#: Wraps a piece of text in a style ("bold", "red bold", "" for none).
Paint = Callable[[str, str], str]


def _plain(text: str, style: str) -> str:
    return text


def ansi_painter(console: Console) -> Paint:
    """Paint with the terminal's own codes, as rich would, without parsing any markup.

    rich spent about a second on the markup of a 10,000-change plan; rendering
    a Style is a lookup. What is not a terminal, or a dumb one, gets no codes;
    NO_COLOR keeps bold and drops colour, as rich does. An old Windows console,
    which rich drives through its API instead of codes, gets plain text.
    """
    system = COLOR_SYSTEMS.get(console.color_system or "")
    if system is None or console.legacy_windows or not console.is_terminal:
        return _plain
    styles: dict[str, Style] = {}

    def paint(text: str, style: str) -> str:
        if not style:
            return text
        if style not in styles:
            parsed = Style.parse(style)
            styles[style] = parsed.without_color if console.no_color else parsed
        return styles[style].render(text, color_system=system)

    return paint


def age_text(seconds: float) -> str:
    """A duration as people say it: 12 s, 4 min 10 s, 2 h 3 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def plan_lines(
    plan: Plan,
    paint: Paint = _plain,
    oldest_age: float | None = None,
    rejections: Rejections = NONE_REJECTED,
) -> list[str]:
    """The plan as lines of text, each piece painted; what the API or the file says, visible.

    `oldest_age`: seconds since the oldest cached answer used was read, if any.
    """
    lines = []
    for user, actions in groupby(plan.changes, key=lambda action: action.user):
        lines.append(paint(visible(user), "bold"))
        for action in actions:
            if isinstance(action, UpdateProfile):
                lines.extend(
                    paint(f"  ~ {change.field}:", "yellow")
                    + f" {quoted(change.before)} → {quoted(change.after)}"
                    for change in action.changes
                )
            elif isinstance(action, AddEmail):
                lines.append(paint(f"  + {visible(action.email)}", "green"))
            else:
                lines.append(paint(f"  - {visible(action.email)}", "red"))
    lines.extend(
        # A warning about the whole plan names no user.
        paint(
            f"! {visible(finding.user)}: {finding.code}:"
            if finding.user
            else f"! {finding.code}:",
            "yellow",
        )
        + f" {visible(finding.message)}"
        for finding in plan.warnings
    )
    # emails_mode owned: an address its owner added is theirs, and stays.
    lines.extend(paint(f"= {visible(note.describe())}", "dim") for note in plan.unmanaged)
    lines.extend(
        paint(f"‖ {visible(user)}: suspended:", "cyan") + f" {visible(held.describe())}"
        for user, held in plan.suspended
    )
    lines.extend(
        paint(f"▶ {visible(user)}: suspension ended", "cyan")
        + f" ({visible(held.reason)}, at {held.until_text()}): managed again"
        for user, held in plan.suspension_ended
    )
    for shared in plan.shared_failures():
        names = ", ".join(visible(user) for user in shared.users[:SHARED_NAMES_SHOWN])
        if len(shared.users) > SHARED_NAMES_SHOWN:
            names += f" and {len(shared.users) - SHARED_NAMES_SHOWN} more"
        lines.append(
            paint(
                f"✗ every read failed alike, {counted(len(shared.users), 'user')}: {shared.code}:",
                "red bold",
            )
            + f" {visible(shared.cause)} ({names})"
        )
    lines.extend(
        paint(f"✗ {visible(finding.user)}: {finding.code}:", "red bold")
        + f" {visible(finding.message)}"
        for finding in plan.own_errors()
    )
    if lines:
        lines.append("")
    lines.append(summary_line(plan, len(rejections.deletions)))
    if rejections.deletions:
        lines.append(rejections.note())
    if oldest_age is not None:  # what the plan took from the cache, when it took anything
        lines.append(
            f"The oldest answer used is {age_text(oldest_age)} old, from the cache"
            " (--refresh reads every user again)."
        )
    return lines


def print_plan(
    plan: Plan,
    console: Console,
    oldest_age: float | None = None,
    rejections: Rejections = NONE_REJECTED,
) -> None:
    # One write for the whole plan, coloured on a terminal by our own painter:
    # rich took seconds to print 10,000 users line by line, and one second to
    # parse their markup in a single print.
    lines = plan_lines(plan, ansi_painter(console), oldest_age, rejections)
    console.file.write("\n".join(lines) + "\n")


def print_audit(events: list[dict[str, Any]], console: Console) -> None:
    """Each run once (what, who, where), then its events: before → after, and how it ended."""
    if not events:
        console.print("No audit events.")
        return
    lines = []
    run_id = None
    for event in events:
        if event["run_id"] != run_id:
            run_id = event["run_id"]
            lines.append(f"run {run_id}: {_who(event['run'])}")
        stamp = f"  {event['timestamp'][:19].replace('T', ' ')}  {visible(event['user'])}:"
        if event["event"] == "intent":
            change = _change(event["action"], event.get("before"), event.get("after"))
            lines.append(f"{stamp} {change} (intent)")
        else:
            # Its intent, just above, said before → after: the fields are enough here.
            change = _change(event["action"], event.get("before"), event.get("after"), short=True)
            said = event.get("message") or ""
            status = f" HTTP {event['status']}" if event.get("status") else ""
            if status and said.startswith(status[1:]):
                status = ""  # an API error's message begins with its status: say it once
            message = f": {visible(said)}" if said else ""
            lines.append(f"{stamp} {change} {event['result']}{status}{message}")
    console.file.write("\n".join(lines) + "\n")


def _who(run: dict[str, Any]) -> str:
    """`syncd apply` by alice (sudo from bob) on host1, syncd 1.2 — as far as it was recorded."""
    if not run.get("command"):
        return "(no run record)"
    words = [f"syncd {run['command']}"]
    if run.get("os_user"):
        words.append(f"by {visible(run['os_user'])}")
    if run.get("sudo_user"):
        words.append(f"(sudo from {visible(run['sudo_user'])})")
    if run.get("host"):
        words.append(f"on {visible(run['host'])}")
    if run.get("version"):
        words.append(f"with syncd {visible(run['version'])}")
    return " ".join(words)


def _change(action: str, before: Any, after: Any, *, short: bool = False) -> str:
    """An audited change as the plan shows it: `update full_name: "Jane" → "Jane Doe"`,
    `add x`; `short`, a profile update names its fields only."""
    if action == ActionName.UPDATE_PROFILE and isinstance(after, dict):
        if short:
            return "update " + ", ".join(visible(str(name)) for name in after)
        if isinstance(before, dict):
            fields = [
                f"{visible(str(name))}: {quoted(before.get(name))} → {quoted(after.get(name))}"
                for name in after
            ]
            return "update " + ", ".join(fields)
    if action == ActionName.ADD_EMAIL:
        return f"add {visible(str(after))}"
    if action == ActionName.DELETE_EMAIL:
        return f"delete {visible(str(before))}"
    return visible(action)
