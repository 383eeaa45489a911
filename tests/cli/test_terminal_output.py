"""What a person sees of `plan` and `apply` (issue 14, items 3 and 4), through the real
command: on a pseudo-terminal for the question, else through the CLI runner.

On a terminal `apply` shows the plan, asks Terraform's question (only "yes"
applies), prints one line per change as it completes and a last line that
counts them; its structured log keeps to warnings there. A saved plan says
where it is and how to apply it, and `syncd show` prints it again.
"""

from __future__ import annotations

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
from tests.world import STANDARD_SEED, World

PROMPT = "Do you want to apply these 3 changes? Only 'yes' will be accepted: "


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner().invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


class Terminal:
    """`syncd …` on a pseudo-terminal: stdin, stdout and stderr all on it, as in a shell."""

    def __init__(self, world: World, *args: str) -> None:
        self.primary, secondary = pty.openpty()
        env = {**os.environ, "TERM": "dumb", "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("SYNCD_LOG_FORMAT", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd", *args, *world.cli_args()],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=env,
            close_fds=True,
        )
        os.close(secondary)
        self.seen = ""

    def read_until(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never came; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.primary], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.primary, 65536)
                except OSError:  # the command exited and closed its side
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} never came; the terminal shows:\n{self.seen}")
                self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.primary, line.encode() + b"\n")

    def finish(self) -> int:
        code = self.process.wait(timeout=30)
        while True:
            ready, _, _ = select.select([self.primary], [], [], 0.1)
            if not ready:
                break
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        os.close(self.primary)
        return code


def test_on_a_terminal_apply_asks_for_yes_and_reports_each_change(world: World):
    terminal = Terminal(world, "apply")
    shown = terminal.read_until(PROMPT)
    assert "Plan: 3 changes for 1 user" in shown
    terminal.type("yes")
    assert terminal.finish() == 0
    lines = terminal.seen.splitlines()
    done = [line for line in lines if line.startswith("janedoe: ")]
    assert sorted(done) == [
        "janedoe: add jane.doe+other@example.com… done",
        "janedoe: delete old@example.com… done",
        "janedoe: update profile… done",
    ]
    assert "Apply complete: 3 applied, 0 failed." in lines
    # The log keeps to warnings on a terminal: no event lines, no Python reprs.
    assert not any("intent" in line or "run_started" in line for line in lines)
    assert "None" not in terminal.seen
    assert "{'" not in terminal.seen
    assert world.writes() == 3


def test_anything_but_yes_applies_nothing(world: World):
    terminal = Terminal(world, "apply")
    terminal.read_until(PROMPT)
    terminal.type("y")
    assert terminal.finish() == 1
    assert "Apply cancelled: nothing was applied." in terminal.seen
    assert world.writes() == 0


def test_verbose_shows_the_log_on_a_terminal_too(world: World):
    terminal = Terminal(world, "apply", "--yes", "--verbose")
    assert terminal.finish() == 0
    assert "run_started" in terminal.seen
    assert "intent" in terminal.seen


def test_without_a_terminal_apply_reports_each_change_and_the_total(world: World):
    result = run(world, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert "janedoe: update profile… done" in result.stdout
    assert result.stdout.rstrip().splitlines()[-2] == "Apply complete: 3 applied, 0 failed."


def test_a_failed_write_is_its_own_line_and_counted(world: World):
    seed = {"users": {**STANDARD_SEED["users"]}}
    seed["users"]["janedoe"] = {
        **seed["users"]["janedoe"],
        "tokens": [{"token": "tok-jane", "scopes": ["profile_read", "email_read"]}],
    }
    world.seed(seed)
    result = run(world, "apply", "--yes")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("janedoe: update profile… failed: HTTP 403") for line in lines)
    # A 403 withholds only the writes of its scope: the POST is sent, and refused for
    # email_write, the DELETE that needs it not.
    assert any(
        line.startswith("janedoe: add jane.doe+other@example.com… failed: HTTP 403")
        for line in lines
    )
    # It read "not sent: not sent: an earlier write for this user got janedoe: PATCH …".
    [skipped] = [line for line in lines if line.startswith("janedoe: delete old@")]
    assert skipped.startswith(
        "janedoe: delete old@example.com… not sent: an earlier write for this user "
        "failed: POST /api/v1.1/users/janedoe/emails/: HTTP 403: "
    )
    assert "Apply finished with failures: 0 applied, 3 failed." in lines


def test_a_saved_plan_says_how_to_apply_it_and_show_prints_it(world: World, tmp_path: Path):
    saved = tmp_path / "plan file.json"
    result = run(world, "plan", "--out", str(saved))
    assert result.exit_code == 0, result.output
    assert f"Saved the plan to {saved}. To apply exactly these changes:" in result.stdout
    assert f"syncd apply '{saved}' -f {world.desired_file}\n" in result.stdout

    shown = CliRunner().invoke(cli, ["show", str(saved)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert '~ full_name: "Jane" → "Jane Doe"' in shown.stdout
    assert "Plan: 3 changes for 1 user" in shown.stdout
    document = json.loads(CliRunner().invoke(cli, ["show", str(saved), "--output", "json"]).stdout)
    assert [c["action"] for c in document["changes"]] == [
        "update_profile",
        "add_email",
        "delete_email",
    ]
    assert world.sandbox.stats()["total"] == 3  # show read nothing of the API

    as_json = run(world, "plan", "--output", "json", "--out", str(saved))
    json.loads(as_json.stdout)  # the message went to stderr, the document is whole
    assert "Saved the plan to" in as_json.stderr


def test_a_missing_saved_plan_is_one_line(tmp_path: Path):
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert "no such file" in result.stderr


def test_an_invalid_desired_state_is_a_json_document_of_its_problems(world: World):
    world.desired_file.write_text("version: 1\nusers:\n  janedoe:\n    ful_name: Jane\n")
    for command in (["validate", "-f", str(world.desired_file)], None):
        if command is None:
            result = run(world, "plan", "--output", "json")
        else:
            result = CliRunner().invoke(cli, [*command, "--output", "json"])
        assert result.exit_code == 1
        document = json.loads(result.stdout)
        assert document["valid"] is False
        (problem,) = document["problems"]
        assert problem["file"] == str(world.desired_file)
        assert (problem["line"], problem["column"]) == (4, 5)
        assert "ful_name" in problem["message"]
    assert world.sandbox.stats()["total"] == 0


def test_a_valid_desired_state_as_json(world: World):
    result = CliRunner().invoke(
        cli, ["validate", "-f", str(world.desired_file), "--output", "json"]
    )
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["summary"] == {"problems": 0, "users": 2}


def test_stdout_holds_only_the_commands_own_output_while_the_client_retries(world: World):
    # Unset, structlog prints every event to stdout, debug included: a retried GET
    # put "api_retry" lines into plan's JSON and into an imported file, and the
    # operator commands printed their run's events before their one line.
    world.seed(STANDARD_SEED, faults={"error_rate": 0.3, "fault_seed": 7})
    env = {**os.environ, **world.state_env(), "SYNCD_LOG_FORMAT": "console"}
    syncd = [sys.executable, "-m", "syncd"]

    def stdout_of(*args: str) -> str:
        command = [*syncd, *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode in (0, 2), done.stderr[-2000:]
        return done.stdout

    assert json.loads(stdout_of("plan", *world.cli_args(), "--output", "json"))["summary"]
    imported = world.root / "imported.yaml"
    imported.write_text(stdout_of("import", *world.api_args()))
    assert stdout_of("validate", "-f", str(imported)).endswith(": valid, 2 users\n")
    statuses = {r["status"] for r in world.sandbox.stats()["requests"]}
    assert statuses & {500, 503}, "the fault injection should have answered some 5xx"

    state = ["--state-dir", str(world.state_dir)]
    suspended = stdout_of("suspend", *state, "--user", "janedoe", "--for", "1h", "--reason", "x")
    assert suspended.startswith("Suspended janedoe until ")
    assert len(suspended.splitlines()) == 1
