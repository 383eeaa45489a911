"""`syncd audit` and `syncd import` through the command line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import syncd
from syncd.cli.main import cli
from syncd.desired.loading import load_desired
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def apply(world: World) -> None:
    result = invoke("apply", *world.cli_args(), "--yes")
    assert result.exit_code == 0, result.output


def test_audit_lists_intents_and_outcomes(world: World):
    apply(world)
    result = invoke("audit", "--state-dir", str(world.state_dir), "--output", "json")
    events = json.loads(result.stdout)
    assert [e["event"] for e in events] == ["intent", "outcome"] * 3
    assert {e["user"] for e in events} == {"janedoe"}
    assert events[0]["source"]["files"][0]["path"] == str(world.desired_file)
    text = invoke("audit", "--state-dir", str(world.state_dir)).stdout
    assert "janedoe: add jane.doe+other@example.com ok" in text
    assert 'janedoe: update full_name: "Jane" → "Jane Doe", location:' in text


def test_audit_answers_who_ran_each_run(world: World, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "alice")
    apply(world)
    events = json.loads(
        invoke("audit", "--state-dir", str(world.state_dir), "--output", "json").stdout
    )
    run = events[0]["run"]
    assert run["command"] == "apply"
    assert run["sudo_user"] == "alice"
    assert run["os_user"]
    assert run["host"]
    assert run["version"] == syncd.__version__
    text = invoke("audit", "--state-dir", str(world.state_dir)).stdout
    first = text.splitlines()[0]
    assert first.startswith(f"run {events[0]['run_id']}: syncd apply by {run['os_user']}")
    assert f"(sudo from alice) on {run['host']} with syncd {syncd.__version__}" in first


def test_audit_filters_by_run_action_and_result(world: World):
    world.seed(
        {
            "users": {
                **STANDARD_SEED["users"],
                "johnsmith": account(["john@example.com"], "tok-john", ["profile_read"]),
            }
        }
    )
    world.desire(
        {
            **STANDARD_DESIRED,
            "users": {**STANDARD_DESIRED["users"], "johnsmith": {"full_name": "John Q. Smith"}},
        }
    )
    assert invoke("apply", *world.cli_args(), "--yes").exit_code == 1  # johnsmith may not write
    state = ["--state-dir", str(world.state_dir), "--output", "json"]
    failed = json.loads(invoke("audit", *state, "--result", "failed").stdout)
    assert [(e["user"], e["event"]) for e in failed] == [
        ("johnsmith", "intent"),
        ("johnsmith", "outcome"),
    ]
    assert failed[1]["status"] == 403
    added = json.loads(invoke("audit", *state, "--action", "add_email").stdout)
    assert {e["action"] for e in added} == {"add_email"}
    run_id = added[0]["run_id"]
    assert len(json.loads(invoke("audit", *state, "--run", run_id).stdout)) == 8
    assert json.loads(invoke("audit", *state, "--run", "nosuchrun").stdout) == []


def test_audit_filters_by_user_and_time(world: World):
    apply(world)
    state = ["--state-dir", str(world.state_dir), "--output", "json"]
    assert json.loads(invoke("audit", *state, "--user", "johnsmith").stdout) == []
    assert json.loads(invoke("audit", *state, "--since", "2999-01-01").stdout) == []
    assert len(json.loads(invoke("audit", *state, "--since", "1h").stdout)) == 6
    assert invoke("audit", *state, "--since", "yesterday").exit_code == 1


@pytest.mark.parametrize(
    "command", [[], ["head"], ["verify"], ["prune", "--before", "1d", "--force"]]
)
@pytest.mark.parametrize("after", [False, True], ids=["state-dir-before", "state-dir-after"])
def test_audit_without_state_file_says_so(tmp_path: Path, command: list[str], after: bool):
    # It read "Error: no state file at …: nothing was applied", click's prefix and not
    # what an empty state directory means to `audit`. A subcommand takes --state-dir
    # after it too, as people type it ("No such option" before).
    state = ["--state-dir", str(tmp_path / "none")]
    if after and command:
        result = invoke("audit", *command, *state)
    else:
        result = invoke("audit", *state, *command)
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: no state file at {tmp_path / 'none' / 'syncd.db'}: "
        "syncd has not run with this state directory, so it has no audit trail\n"
    )


def test_state_migrate_without_state_file_says_so_as_syncd(tmp_path: Path):
    result = invoke(
        "state", "migrate", "--state-dir", str(tmp_path / "none"), "--to", str(tmp_path / "to")
    )
    assert result.exit_code == 1
    state_file = tmp_path / "none" / "syncd.db"
    assert result.stderr == f"syncd: no state file at {state_file}: nothing to copy\n"


def test_audit_refuses_its_filters_beside_a_subcommand(world: World):
    """`syncd audit --user X verify` would check the whole chain: say so instead."""
    apply(world)
    state = ["--state-dir", str(world.state_dir)]
    result = invoke("audit", *state, "--user", "nobody", "--since", "1m", "verify")
    assert result.exit_code == 1  # syncd's usage errors are 1 (2 is a pending plan)
    (line,) = result.stderr.splitlines()[-1:]
    assert line.endswith(
        "--user, --since: not taken by `syncd audit verify` (only --state-dir goes before it)"
    )
    assert result.stdout == ""
    result = invoke("audit", *state, "--output", "json", "head")
    assert "--output: not taken by `syncd audit head`" in result.stderr
    # The state directory is the group's own, and its subcommands use it.
    assert "the chain holds: 6 events" in invoke("audit", *state, "verify").stdout


def test_import_writes_a_file_whose_plan_is_empty(world: World, tmp_path: Path):
    out = tmp_path / "imported.yaml"
    result = invoke("import", *world.api_args(), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "gravatar_email is write-only" in text
    desired = load_desired(out)
    assert desired.usernames() == ["janedoe", "johnsmith"]
    assert desired.users[0].emails == ("jane.doe@example.com", "old@example.com")
    plan = invoke("plan", *world.cli_args(), "-f", str(out), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output


def test_import_refuses_to_overwrite(world: World, tmp_path: Path):
    out = tmp_path / "existing.yaml"
    out.write_text("keep me\n")
    result = invoke("import", *world.api_args(), "--out", str(out))
    assert result.exit_code == 1
    assert result.stderr == f"syncd: {out} exists; pass --force to overwrite it\n"
    assert out.read_text() == "keep me\n"
    assert invoke("import", *world.api_args(), "--out", str(out), "--force").exit_code == 0


def test_import_into_a_missing_directory_says_so_before_reading_anything(tmp_path: Path):
    # The README's `import --out accounts/imported.yaml` read every account, then
    # failed with "No such file or directory". No directory is made: a typo would be.
    out = tmp_path / "accounts" / "imported.yaml"
    result = invoke("import", "--user", "janedoe", "--out", str(out))
    assert result.exit_code == 1
    expected = f"cannot write {out}: no directory {out.parent}/ (mkdir it)"
    assert result.stderr == f"syncd: {expected}\n"
    assert not out.parent.exists()


def test_an_imported_file_is_private_and_a_link_or_a_fifo_is_refused(world: World, tmp_path: Path):
    out = tmp_path / "imported.yaml"
    out.write_text("an older import\n")
    out.chmod(0o644)
    assert invoke("import", *world.api_args(), "--out", str(out), "--force").exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not syncd's\n")
    linked = tmp_path / "linked.yaml"
    linked.symlink_to(elsewhere)
    result = invoke("import", *world.api_args(), "--out", str(linked), "--force")
    assert result.exit_code == 1
    expected = f"cannot write {linked}: a symbolic link, so neither followed nor replaced"
    assert result.stderr == f"syncd: {expected}\n"
    assert elsewhere.read_text() == "not syncd's\n"
    assert linked.is_symlink()
    fifo = tmp_path / "imported.fifo"
    os.mkfifo(fifo)
    result = invoke("import", *world.api_args(), "--out", str(fifo), "--force")
    assert result.exit_code == 1
    assert "imported.fifo: not a regular file" in result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_of_an_unknown_user_writes_nothing(world: World, tmp_path: Path):
    out = tmp_path / "imported.yaml"
    result = invoke(
        "import", *world.api_args(), "--user", "janedoe", "--user", "ghost_user", "--out", str(out)
    )
    assert result.exit_code == 1
    assert "ghost_user" in result.stderr
    assert not out.exists()


def test_import_leaves_out_a_live_value_a_desired_state_may_not_hold(world: World, tmp_path: Path):
    # One account's `javascript:` URL made the import write nothing for anyone, with
    # line:column of the file it did not write (trial hostile D7).
    world.sandbox.reset(
        seed=STANDARD_SEED,
        malformed={"janedoe": "profile-url-not-http", "johnsmith": "email-not-an-address"},
    )
    out = tmp_path / "imported.yaml"
    result = invoke("import", *world.api_args(), "--out", str(out))
    assert result.exit_code == 1
    assert "janedoe: profile_url: invalid URL 'javascript:alert(1)'" in result.stderr
    assert "johnsmith: emails: invalid email address 'not-an-email'" in result.stderr
    assert "imported.yaml:" not in result.stderr
    assert "2 fields left out of the import" in result.stderr
    janedoe, johnsmith = load_desired(out).users
    assert janedoe.emails == ("jane.doe@example.com", "old@example.com")
    assert "profile_url" not in janedoe.profile
    assert johnsmith.emails is None  # not the list without it: that would delete it
    assert johnsmith.profile["full_name"] == "John Smith"


def test_import_offers_no_desired_state_file_it_would_ignore(world: World, tmp_path: Path):
    # `import -f missing.yaml` imported every user of the credentials directory, rc 0.
    result = invoke("import", *world.api_args(), "-f", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1
    assert "No such option '-f'" in result.stderr
