"""The plan as a person reads it: the same words with colour on a terminal or without."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.text import Text

from syncd.cli.render import ansi_painter, plan_lines, print_audit, print_plan
from syncd.core.held import Rejections
from syncd.core.plan import AddEmail, DeleteEmail, FieldChange, Plan, UpdateProfile
from syncd.core.problem import Problem
from syncd.core.suspension import Suspension

PLAN = Plan(
    changes=(
        UpdateProfile(
            "janedoe",
            (
                FieldChange("full_name", "Jane [bold]", "Jane Doe"),
                FieldChange("gravatar_email", None, "jane@example.com"),
            ),
        ),
        AddEmail("janedoe", "jane+[red]@example.com"),
        DeleteEmail("janedoe", "old@example.com"),
    ),
    warnings=(Problem("johnsmith", "primary_email_not_desired", "john@example.com [x]"),),
    errors=(Problem("ops_robot", "unauthorized", "credential refused: 401 \\[escaped]"),),
    users=3,
)
FREEZE = Suspension("freeze")


@pytest.fixture(autouse=True)
def _colour_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)  # a developer's own setting


def terminal(out: io.StringIO) -> Console:
    return Console(
        file=out, force_terminal=True, color_system="standard", highlight=False, soft_wrap=True
    )


def test_plain_lines_are_the_text_of_the_coloured_ones() -> None:
    coloured = plan_lines(PLAN, ansi_painter(terminal(io.StringIO())))
    assert coloured != plan_lines(PLAN)
    assert [Text.from_ansi(line).plain for line in coloured] == plan_lines(PLAN)


def test_without_a_terminal_the_plan_is_written_as_plain_text() -> None:
    out = io.StringIO()
    print_plan(PLAN, Console(file=out, force_terminal=False))
    assert out.getvalue().splitlines() == [
        "janedoe",
        '  ~ full_name: "Jane [bold]" → "Jane Doe"',
        '  ~ gravatar_email: (write-only, differs) → "jane@example.com"',
        "  + jane+[red]@example.com",
        "  - old@example.com",
        "! johnsmith: primary_email_not_desired: john@example.com [x]",
        "✗ ops_robot: unauthorized: credential refused: 401 \\[escaped]",
        "",
        "Plan: 3 changes for 1 user (1 profile update, 1 address to add, 1 to delete)."
        " Incomplete: 1 of 3 users could not be read, 1 warning, 1 error.",
    ]


@pytest.mark.parametrize(
    ("plan", "line"),
    [
        pytest.param(
            Plan((), users=2), "No changes: the accounts match the desired state.", id="complete"
        ),
        pytest.param(
            Plan((), users=0),
            "No users to compare (none desired or selected): nothing was read.",
            id="no-one",
        ),
        pytest.param(
            Plan((), errors=(Problem("ops_robot", "user_not_found", "404"),), users=2),
            "Nothing to change for 1 user that could be compared."
            " Incomplete: 1 of 2 users could not be read, 1 error.",
            id="incomplete",
        ),
        pytest.param(
            Plan((), errors=(Problem("ops_robot", "does_not_converge", "kept x"),), users=2),
            "Nothing to change for 2 users that could be compared. 1 error.",
            id="not-converging",
        ),
        # Suspended users are not read: nothing is known of whether they match.
        pytest.param(
            Plan((), users=3, suspended=tuple((u, FREEZE) for u in ("alice", "bobby", "carol"))),
            "No changes for the 0 users compared. 3 users suspended (not read).",
            id="all-suspended",
        ),
        pytest.param(
            Plan((), users=2, suspended=(("carol", FREEZE),)),
            "No changes for the 1 user compared. 1 user suspended (not read).",
            id="some-suspended",
        ),
        pytest.param(
            Plan(
                (),
                errors=(Problem("ops_robot", "user_not_found", "404"),),
                users=3,
                suspended=(("carol", FREEZE),),
            ),
            "Nothing to change for 1 user that could be compared."
            " 1 user suspended (not read), Incomplete: 1 of 3 users could not be read, 1 error.",
            id="suspended-and-unreadable",
        ),
    ],
)
def test_the_summary_says_match_only_when_every_user_was_read_and_equal(
    plan: Plan, line: str
) -> None:
    assert plan_lines(plan)[-1] == line


def test_a_plan_with_only_rejected_deletions_left_says_they_are_not_a_match() -> None:
    # A review: a standing rejection left the plan empty, and it said the accounts
    # match the desired state, which still asks for the deletion.
    rejections = Rejections((DeleteEmail("janedoe", "old@example.com"),), ("3f9a1c2e",))
    assert plan_lines(Plan((), users=2), rejections=rejections)[-2:] == [
        "Nothing to apply: 1 deletion rejected, left out.",
        "left out: 1 deletion rejected (set 3f9a1c2e), while the desired state asks for them;"
        " syncd approve 3f9a1c2e lets them through",
    ]


def test_on_a_terminal_the_plan_is_coloured() -> None:
    out = io.StringIO()
    print_plan(PLAN, terminal(out))
    assert "\x1b[33m  ~ full_name:\x1b[0m" in out.getvalue()
    assert Text.from_ansi(out.getvalue()).plain.splitlines() == plan_lines(PLAN)


def test_no_color_keeps_bold_and_drops_colour_as_rich_does() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", no_color=True)
    print_plan(PLAN, console)
    assert "\x1b[1mjanedoe\x1b[0m" in out.getvalue()
    assert not re.search("\x1b\\[3[0-9]m", out.getvalue())
    assert Text.from_ansi(out.getvalue()).plain.splitlines() == plan_lines(PLAN)


def test_a_dumb_terminal_gets_plain_text() -> None:
    out = io.StringIO()
    print_plan(PLAN, Console(file=out, force_terminal=True, color_system=None))
    assert out.getvalue().splitlines() == plan_lines(PLAN)


def test_control_characters_from_the_api_cannot_reach_the_terminal() -> None:
    # "\x1b[2K" + "\r" would erase the line on a terminal: the deletion would not show.
    hidden = "\x1b[2K\rnothing to see"
    plan = Plan(
        changes=(
            UpdateProfile("janedoe", (FieldChange("full_name", "Jane\u200b", "Jane"),)),
            DeleteEmail("janedoe", f"old@example.com{hidden}"),
        ),
        warnings=(Problem("johnsmith", "user_not_found", f"HTTP 404: \x1b]0;owned\x07{hidden}"),),
    )
    out = io.StringIO()
    print_plan(plan, terminal(out))

    ours_removed = re.sub("\x1b\\[[0-9;]*m", "", out.getvalue())
    assert not any(char != "\n" and not char.isprintable() for char in ours_removed)
    assert "  - old@example.com\\x1b[2K\\rnothing to see" in ours_removed
    assert '"Jane\\u200b" → "Jane"' in ours_removed  # an invisible difference, made visible


@pytest.mark.parametrize(
    ("status", "message", "ends"),
    [
        (403, "HTTP 403: not allowed", "update full_name failed: HTTP 403: not allowed"),
        (409, "the address is taken", "update full_name failed HTTP 409: the address is taken"),
        (None, "timed out", "update full_name failed: timed out"),
    ],
    ids=["status-in-message", "status-beside", "no-status"],
)
def test_an_audited_outcome_says_its_http_status_once(
    status: int | None, message: str, ends: str
) -> None:
    event = {
        "run_id": "r1",
        "run": {"command": "apply"},
        "timestamp": "2026-12-07T17:00:00+00:00",
        "user": "carol_c",
        "event": "outcome",
        "action": "update_profile",
        "before": {"full_name": ""},
        "after": {"full_name": "Carol"},
        "result": "failed",
        "status": status,
        "message": message,
    }
    out = io.StringIO()
    print_audit([event], Console(file=out, width=200))
    assert out.getvalue().splitlines()[-1].endswith(ends), out.getvalue()
