"""Suspensions through the command line: `suspend:` in the file and `syncd suspend` alike."""

from __future__ import annotations

import copy
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.daemon.harness import once
from tests.world import STANDARD_DESIRED, World, admin_patch


def run(world: World, *args: str) -> Result:
    command, *rest = args
    runner = CliRunner(env=world.state_env())
    return runner.invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


def state(world: World, *args: str) -> Result:
    runner = CliRunner(env=world.state_env())
    return runner.invoke(cli, [*args, "--state-dir", str(world.state_dir)], catch_exceptions=False)


def suspended_in_file(world: World, until: str | None) -> None:
    desired = copy.deepcopy(STANDARD_DESIRED)
    suspend = {"reason": "INC-123"} | ({"until": until} if until else {})
    desired["users"]["janedoe"]["suspend"] = suspend
    world.desire(desired)


def test_a_user_suspended_in_the_file_is_not_read_and_the_plan_lists_it(world: World):
    suspended_in_file(world, "2999-01-31")
    result = run(world, "plan", "--detailed-exitcode", "--output", "json")
    assert result.exit_code == 0, result.output  # as if janedoe were absent: no changes
    document = json.loads(result.stdout)
    assert document["changes"] == []
    assert document["errors"] == []
    (entry,) = document["suspended"]
    assert entry["user"] == "janedoe"
    assert entry["reason"] == "INC-123"
    assert entry["until"] == "2999-01-31T00:00:00+00:00"
    assert entry["by"].endswith("desired-state.yaml:3:3")
    assert world.gets() == 1  # johnsmith's profile alone
    text = run(world, "plan").stdout
    assert "‖ janedoe: suspended: INC-123 (until 2999-01-31T00:00:00+00:00" in text
    assert "1 user suspended (not read)" in text
    assert run(world, "apply", "--yes").exit_code == 0
    assert world.writes() == 0


def test_after_its_end_the_user_is_managed_again_and_the_plan_says_so(world: World):
    suspended_in_file(world, "2020-01-31")
    result = run(world, "plan", "--output", "json")
    document = json.loads(result.stdout)
    assert document["suspended"] == []
    assert [entry["user"] for entry in document["suspension_ended"]] == ["janedoe"]
    assert {change["user"] for change in document["changes"]} == {"janedoe"}
    assert "▶ janedoe: suspension ended (INC-123, at 2020-01-31T00:00:00+00:00)" in (
        run(world, "plan").stdout
    )


def test_suspend_and_resume_from_the_command_line(any_world: World):
    world = any_world
    said = state(
        world, "suspend", "--reason", "INC-9", "--user", "janedoe", "--until", "2999-01-01"
    )
    assert said.exit_code == 0, said.output
    assert "Suspended janedoe until 2999-01-01T00:00:00+00:00: INC-9" in said.stdout
    assert run(world, "apply", "--yes").exit_code == 0
    assert world.writes() == 0
    plan = json.loads(run(world, "plan", "--output", "json").stdout)
    (entry,) = plan["suspended"]
    assert entry["source"] == "cli"
    assert "@" in entry["by"]
    assert "Resumed janedoe" in state(world, "resume", "--user", "janedoe").stdout
    assert "No suspension to end for janedoe" in state(world, "resume", "--user", "janedoe").stdout
    assert run(world, "apply", "--yes").exit_code == 0
    assert world.writes() == 3


def test_resuming_a_user_that_every_user_s_suspension_still_holds_says_so(world: World):
    # It said "managed again from the next cycle" while `suspend --all` still held her.
    for who in (["--user", "janedoe"], ["--all"]):
        said = state(world, "suspend", "--reason", "freeze" if who == ["--all"] else "INC-1", *who)
        assert said.exit_code == 0, said.output
    said = state(world, "resume", "--user", "janedoe").stdout
    assert "managed again" not in said
    assert said.startswith(
        "Ended the suspension of janedoe; still suspended by the suspension of every user: "
        "freeze (until resumed, by "
    )
    assert said.rstrip().endswith("syncd resume --all ends it.")
    plan = json.loads(run(world, "plan", "--output", "json").stdout)
    assert [(s["user"], s["reason"]) for s in plan["suspended"]] == [
        ("janedoe", "freeze"),
        ("johnsmith", "freeze"),
    ]
    assert "Resumed every user: managed again" in state(world, "resume", "--all").stdout


def test_status_does_not_say_nothing_is_pending_for_users_it_did_not_read(
    world: World, tmp_path: Path
):
    # Every user suspended, janedoe's profile differing: "pending none" was false. And
    # the run read nobody: `held` (no success), never no_changes.
    world.apply()
    state(world, "suspend", "--reason", "freeze", "--all")
    admin_patch(world, "janedoe", full_name="Changed by hand")
    assert once(world, tmp_path) == 0  # the operator's decision: no failure
    said = state(world, "status", "--user", "janedoe").stdout
    assert "  pending      not known (suspended, not read)\n" in said
    assert (
        "pending      none as of the last run (held); not known for 2 users suspended (not read)\n"
    ) in said


def test_bad_suspend_commands_are_one_line_and_exit_1(world: World):
    for args, message in [
        (["--reason", "x"], "name users with --user, or say --all"),
        (["--reason", "x", "--all", "--user", "janedoe"], "name users with --user, or say --all"),
        (["--reason", " ", "--all"], "--reason must say why"),
        (["--reason", "x", "--all", "--for", "soon"], "invalid duration 'soon'"),
        (["--reason", "x", "--all", "--until", "2027-01-31T10:00"], "invalid --until"),
        (["--reason", "x", "--all", "--for", "1h", "--until", "2027-01-31"], "give one"),
    ]:
        result = state(world, "suspend", *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_a_suspension_that_has_already_ended_is_refused_and_ends_none(world: World):
    # A mistyped year (2025 for 2027) would "suspend" a user who is written at the
    # next cycle, and would end, as it replaces it, a suspension that still held.
    held = state(world, "suspend", "--reason", "INC-9", "--user", "janedoe")
    assert held.exit_code == 0, held.output
    for when in (["--until", "2020-01-31"], ["--for", "0s"]):
        result = state(world, "suspend", "--reason", "INC-10", "--user", "janedoe", *when)
        assert result.exit_code == 1, result.output
        assert "has already passed: nothing was suspended" in result.output
    assert run(world, "apply", "--yes").exit_code == 0
    assert world.writes() == 0
    plan = json.loads(run(world, "plan", "--output", "json").stdout)
    assert [(s["user"], s["reason"]) for s in plan["suspended"]] == [("janedoe", "INC-9")]


def read_until(screen: int, seen: bytes, wanted: bytes | None) -> bytes:
    """What the terminal shows, up to `wanted` (None: until the program closes it)."""
    deadline = time.monotonic() + 60
    while wanted is None or wanted not in seen:
        assert time.monotonic() < deadline, seen
        if select.select([screen], [], [], 1)[0]:
            try:
                chunk = os.read(screen, 1024)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            if not chunk:
                assert wanted is None, seen
                return seen
            seen += chunk
    return seen


def test_an_apply_says_which_users_it_withheld_when_suspended_after_its_plan(world: World):
    # The operator saw the plan, and meanwhile someone suspended the user: the
    # apply writes nothing for it, and must say that it did not do what it showed.
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args()]
    env = {**os.environ, **world.state_env(), "NO_COLOR": "1", "COLUMNS": "200"}
    screen, terminal = pty.openpty()  # apply asks only on a terminal
    with subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=subprocess.DEVNULL, env=env
    ) as apply:
        os.close(terminal)
        try:
            shown = read_until(screen, b"", b"Plan: ")
            said = state(world, "suspend", "--reason", "INC-7", "--user", "janedoe")
            assert said.exit_code == 0, said.output
            os.write(screen, b"yes\n")
            told = read_until(screen, b"", None).decode().replace("\r\n", "\n")
        finally:
            os.close(screen)
        assert apply.wait(timeout=60) == 0, told
    assert "janedoe" in shown.decode()
    assert "janedoe:" not in told  # no write
    assert "not written: janedoe (suspended since the plan)" in told
