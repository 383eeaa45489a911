"""What `syncd apply` shows a person: the plan, one question, each change as it ends, the end.

    janedoe
      ~ full_name: "Jane" → "Jane Doe"
      + jane.doe+other@example.com

    Plan: 2 changes for 1 user (1 profile update, 1 address to add, 0 to delete).
    Do you want to apply these 2 changes? Only 'yes' will be accepted: yes
    janedoe: update profile… done
    janedoe: add jane.doe+other@example.com… done

    Apply complete: 2 applied, 0 failed.
    Audit trail: run 1f2e3d4c5b6a in /var/lib/syncd/syncd.db

When a write did not succeed the last line says so, and counts apart the writes
whose answer was lost (they may have been applied):
`Apply finished with failures: 3 applied, 1 failed, 2 with an unknown outcome
(read again next run).` The same lines are written without a terminal (with --yes), uncoloured; the
structured log goes to stderr.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from syncd.cli.options import keep_until_exit
from syncd.cli.render import ansi_painter, print_plan
from syncd.core.plan import Action, AddEmail, UpdateProfile
from syncd.core.vocabulary import ActionName, WriteResult
from syncd.visible import visible

if TYPE_CHECKING:
    from syncd.engine.reconcile import ConvergeResult, PlanResult

#: How each result of a write reads, and its colour.
_RESULTS = {
    WriteResult.OK: ("done", "green"),
    WriteResult.FAILED: ("failed", "red"),
    WriteResult.UNKNOWN: (
        "unknown (the answer was lost; the next run reads the user again)",
        "yellow",
    ),
    WriteResult.SKIPPED: ("not sent", "yellow"),
    WriteResult.DOES_NOT_CONVERGE: ("does not converge", "red"),
}


def _what(action: Action) -> str:
    if isinstance(action, UpdateProfile):
        return "update profile"
    if isinstance(action, AddEmail):
        return f"add {visible(action.email)}"
    return f"delete {visible(action.email)}"


class ApplyView:
    """The person's side of one apply; `ask` is False with --yes."""

    def __init__(self, console: Console, *, ask: bool) -> None:
        self.console = console
        self.ask = ask
        self._paint = ansi_painter(console)

    def show_plan(self, result: PlanResult) -> None:
        print_plan(result.plan, self.console, result.oldest_age, result.rejections)
        keep_until_exit()

    def confirm(self, result: PlanResult) -> bool:
        """Only 'yes' applies, as Terraform asks: a stray 'y' or Enter must not write."""
        if not self.ask:
            return True
        count = len(result.plan.changes)
        these = "this change" if count == 1 else f"these {count} changes"
        # asyncio swallows the first Ctrl-C while the prompt blocks its loop:
        # give the prompt the plain handler, so Ctrl-C means "no" at once;
        # SIGTERM too, which the loop would see only after the answer.
        handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        term = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            answer = click.prompt(
                f"Do you want to apply {these}? Only 'yes' will be accepted:",
                default="",
                show_default=False,
                prompt_suffix=" ",
            )
        except click.Abort:
            click.echo()
            return False
        finally:
            signal.signal(signal.SIGINT, handler)
            signal.signal(signal.SIGTERM, term)
        return bool(answer == "yes")

    def on_change(self, action: Action, result: WriteResult, message: str | None) -> None:
        word, colour = _RESULTS.get(result, (result, "yellow"))
        line = f"{visible(action.user)}: {_what(action)}… "
        told = word if result == WriteResult.OK or not message else f"{word}: {visible(message)}"
        self.console.file.write(line + self._paint(told, colour) + "\n")
        self.console.file.flush()

    def finish(self, converged: ConvergeResult, state_file: Path | str) -> None:
        write = self.console.file.write
        for intent in converged.interrupted:
            write(
                f"! {visible(intent.user)}: an earlier run was interrupted during "
                f"{intent.action} {visible(intent.target)}; the user was read again.\n"
            )
        report = converged.report
        if report is None:
            if converged.declined:
                write("Apply cancelled: nothing was applied.\n")
            return
        applied = sum(
            count for key, count in report.counts.items() if key in frozenset(ActionName)
        )
        # Each write that did not succeed once, by what is known of it: an unknown
        # outcome may have been applied, so it is neither applied nor failed.
        unknown = sum(
            count for (_, result), count in report.failed.items() if result == WriteResult.UNKNOWN
        )
        counted = f"{applied} applied, {len(report.failures) - unknown} failed"
        if unknown:
            counted += f", {unknown} with an unknown outcome (read again next run)"
        ending = "Apply finished with failures" if report.failures else "Apply complete"
        write(f"\n{ending}: {counted}.\n")
        if report.withheld:  # the plan shown had their changes: say they were not made
            users = ", ".join(visible(user) for user in report.withheld)
            write(f"not written: {users} (suspended since the plan)\n")
        write(f"Audit trail: run {converged.run_id} in {visible(str(state_file))}\n")
