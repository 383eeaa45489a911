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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from syncd.plan import AddEmail, DeleteEmail, Plan, UpdateProfile

if TYPE_CHECKING:
    from syncd.reconcile import ConvergeResult

ACTION_NAMES = ("update_profile", "add_email", "delete_email")


def terminal() -> Console:
    """Standard output: colour on a terminal, and long lines never broken in two."""
    return Console(highlight=False, soft_wrap=True)


def _quoted(value: str | None) -> str:
    if value is None:
        return "(write-only, differs)"
    return json.dumps(value, ensure_ascii=False)


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


def plan_lines(plan: Plan, *, markup: bool = True) -> list[str]:
    """The plan as lines of rich markup, or of plain text."""

    def paint(text: str, style: str = "") -> str:
        if not markup:
            return text
        text = escape(text)
        return f"[{style}]{text}[/{style}]" if style else text

    lines = []
    for user, actions in groupby(plan.changes, key=lambda action: action.user):
        lines.append(paint(user, "bold"))
        for action in actions:
            if isinstance(action, UpdateProfile):
                lines.extend(
                    paint(f"  ~ {change.field}:", "yellow")
                    + paint(f" {_quoted(change.before)} → {_quoted(change.after)}")
                    for change in action.changes
                )
            elif isinstance(action, AddEmail):
                lines.append(paint(f"  + {action.email}", "green"))
            else:
                lines.append(paint(f"  - {action.email}", "red"))
    lines.extend(
        paint(f"! {finding.user}: {finding.code}:", "yellow") + paint(f" {finding.message}")
        for finding in plan.warnings
    )
    lines.extend(
        paint(f"✗ {finding.user}: {finding.code}:", "red bold") + paint(f" {finding.message}")
        for finding in plan.errors
    )
    if lines:
        lines.append("")
    lines.append(paint(summary_line(plan)))
    return lines


def print_plan(plan: Plan, console: Console) -> None:
    # One print for the whole plan: rich costs about as much per call as per
    # line, and a plan of 10,000 users printed line by line took seconds. Even
    # so, rich spent 1.8 s of CPU parsing the markup of 10,000 changes: where
    # there is no terminal to colour, the plain text is written as it is.
    if console.is_terminal:
        console.print("\n".join(plan_lines(plan)))
    else:
        console.file.write("\n".join(plan_lines(plan, markup=False)) + "\n")


def print_apply_report(converged: ConvergeResult, console: Console, state_file: Path) -> None:
    for intent in converged.interrupted:
        console.print(
            f"[yellow]! {escape(intent.user)}: an earlier run was interrupted during "
            f"{intent.action} {escape(intent.target)}; the user was re-read.[/yellow]"
        )
    report = converged.report
    if report is None:
        if converged.declined:
            console.print("Apply cancelled: nothing was applied.")
        return
    applied = sum(count for key, count in report.counts.items() if key in ACTION_NAMES)
    total = len(converged.result.plan.changes)
    console.print(f"Applied {applied} of {_plural(total, 'change')}.")
    for failure in report.failures:
        # A failed write's message starts with its HTTP status already.
        prefix = "" if failure.result == "failed" else f"{failure.result}: "
        console.print(
            f"[red]✗ {escape(failure.description)}: {prefix}{escape(failure.message)}[/red]"
        )
    console.print(f"Audit trail: run {converged.run_id} in {escape(str(state_file))}")


def print_audit(events: list[dict[str, Any]], console: Console) -> None:
    if not events:
        console.print("No audit events.")
        return
    for event in events:
        if event["event"] == "intent":
            what = f"{event['action']} {event['target']}"
            console.print(
                f"{event['timestamp']}  {event['run_id']}  intent   "
                f"{escape(event['user'])}: {escape(what)}"
            )
        else:
            status = f" HTTP {event['status']}" if event.get("status") else ""
            colour = "green" if event["result"] == "ok" else "red"
            console.print(
                f"{event['timestamp']}  {event['run_id']}  outcome  {escape(event['user'])}: "
                f"{event['action']} [{colour}]{event['result']}{status}[/{colour}]"
                + (f" {escape(event['message'])}" if event.get("message") else "")
            )
