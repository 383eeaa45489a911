"""Showing a plan to a person: a careful diff, coloured on a terminal.

janedoe
  ~ full_name: "Jane" → "Jane Doe"
  + jane.doe+other@example.com
  - old@example.com
! johnsmith: user_not_found: the API has no such user (404)

Plan: 3 changes for 1 user (1 profile update, 1 address to add, 1 to delete).
"""

from __future__ import annotations

import json
from itertools import groupby

from rich.console import Console
from rich.markup import escape

from syncd.plan import AddEmail, DeleteEmail, Plan, UpdateProfile


def _quoted(value: str | None) -> str:
    if value is None:
        return "(write-only, differs)"
    return escape(json.dumps(value, ensure_ascii=False))


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def summary_line(plan: Plan) -> str:
    if plan.is_empty:
        head = "No changes: the accounts match the desired state."
    else:
        parts = [
            _plural(plan.count(UpdateProfile), "profile update"),
            _plural(plan.count(AddEmail), "address to add", "addresses to add"),
            _plural(plan.count(DeleteEmail), "to delete", "to delete"),
        ]
        head = (
            f"Plan: {_plural(len(plan.changes), 'change')} for "
            f"{_plural(len(plan.users_with_changes()), 'user')} ({', '.join(parts)})."
        )
    tail = []
    if plan.warnings:
        tail.append(_plural(len(plan.warnings), "warning"))
    if plan.errors:
        tail.append(_plural(len(plan.errors), "error"))
    return head + (f" {', '.join(tail)}." if tail else "")


def print_plan(plan: Plan, console: Console) -> None:
    for user, actions in groupby(plan.changes, key=lambda action: action.user):
        console.print(f"[bold]{escape(user)}[/bold]")
        for action in actions:
            if isinstance(action, UpdateProfile):
                for change in action.changes:
                    console.print(
                        f"  [yellow]~ {change.field}:[/yellow] {_quoted(change.before)}"
                        f" → {_quoted(change.after)}"
                    )
            elif isinstance(action, AddEmail):
                console.print(f"  [green]+ {escape(action.email)}[/green]")
            else:
                console.print(f"  [red]- {escape(action.email)}[/red]")
    for finding in plan.warnings:
        console.print(
            f"[yellow]! {escape(finding.user)}: {finding.code}:[/yellow] {escape(finding.message)}"
        )
    for finding in plan.errors:
        console.print(
            f"[red bold]✗ {escape(finding.user)}: {finding.code}:[/red bold] "
            f"{escape(finding.message)}"
        )
    if plan.changes or plan.warnings or plan.errors:
        console.print()
    console.print(summary_line(plan))
