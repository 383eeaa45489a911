"""When a run claims an address for `emails_mode: owned` (trialops entry 4): only once it is
committed to its plan, so that an `apply` declined at the question, or refused by the
deletion guard, and a `run --once` the guard refuses, record nothing in the ledger.

Before, the claim was recorded as soon as the plan was made: the address listed in an
experiment that was previewed and declined became syncd's, and the next run deleted it
when the experiment left the list.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.cli.test_terminal_output import Terminal
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account, run_syncd

PERSONAL = "john.personal@example.com"  # on johnsmith's account, added by its owner


def listed_then(world: World) -> None:
    """johnsmith `owned`, his personal address listed beside janedoe's usual changes (a
    deletion among them); the ledger is empty."""
    world.seed(
        {
            "users": {
                **STANDARD_SEED["users"],
                "johnsmith": account(
                    ["john@example.com", PERSONAL], "tok-john", full_name="John Smith"
                ),
            }
        }
    )
    desire(world, ["john@example.com", PERSONAL])


def desire(world: World, johns: list[str]) -> None:
    users = {**STANDARD_DESIRED["users"], "johnsmith": {"emails_mode": "owned", "emails": johns}}
    world.desire({"version": 1, "users": users})


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner().invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


def assert_nothing_claimed(world: World) -> None:
    assert world.query("SELECT email FROM email_ownership") == []
    # And so the address, once it leaves the list, is its owner's: left alone.
    desire(world, ["john@example.com"])
    planned = json.loads(run(world, "plan", "--refresh", "--output", "json").stdout)
    johns = [change for change in planned["changes"] if change["user"] == "johnsmith"]
    assert johns == []
    assert {"user": "johnsmith", "email": PERSONAL} in planned["unmanaged_emails"]


def test_an_apply_declined_at_the_question_claims_nothing(world: World):
    listed_then(world)
    terminal = Terminal(world, "apply")
    terminal.read_until("Only 'yes' will be accepted: ")
    terminal.type("no")
    assert terminal.finish() == 1
    assert "Apply cancelled: nothing was applied." in terminal.seen
    assert_nothing_claimed(world)


def test_an_apply_refused_by_the_deletion_guard_claims_nothing(world: World):
    listed_then(world)
    refused = run(world, "apply", "--yes", "--allow-deletions", "0")
    assert refused.exit_code == 3, refused.output
    assert_nothing_claimed(world)


def test_a_run_once_refused_by_the_deletion_guard_claims_nothing(world: World):
    listed_then(world)
    done = run_syncd(world, "run", "--once", SYNCD_MAX_DELETIONS="0")
    assert done.returncode == 3, done.stderr
    assert_nothing_claimed(world)


def test_an_apply_that_goes_on_claims_what_it_read_listed(world: World):
    listed_then(world)
    applied = run(world, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    claimed = world.query(
        "SELECT email, how FROM email_ownership WHERE username = 'johnsmith' ORDER BY email"
    )
    assert claimed == [
        {"email": PERSONAL, "how": "listed"},
        {"email": "john@example.com", "how": "listed"},
    ]
    desire(world, ["john@example.com"])
    planned = json.loads(run(world, "plan", "--output", "json").stdout)
    assert {"user": "johnsmith", "action": "delete_email", "email": PERSONAL} in planned["changes"]


def test_a_saved_plan_applied_claims_what_it_read_listed(world: World, tmp_path: Path):
    # The review: a saved plan's apply claimed nothing, so once the address left the
    # list it stayed, while a plain apply's next plan deleted it. (A saved plan reads
    # again only the users it changes: johnsmith is one.)
    listed_then(world)
    johnsmith = {"emails_mode": "owned", "emails": ["john@example.com", PERSONAL]}
    johnsmith["full_name"] = "John Q. Smith"
    world.desire({"version": 1, "users": {**STANDARD_DESIRED["users"], "johnsmith": johnsmith}})
    saved = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(saved)).exit_code == 0
    applied = run(world, "apply", str(saved), "--yes")
    assert applied.exit_code == 0, applied.output
    claimed = world.query("SELECT email FROM email_ownership WHERE username = 'johnsmith'")
    assert {row["email"] for row in claimed} == {PERSONAL, "john@example.com"}
    desire(world, ["john@example.com"])
    planned = json.loads(run(world, "plan", "--output", "json").stdout)
    assert {"user": "johnsmith", "action": "delete_email", "email": PERSONAL} in planned["changes"]
