"""`syncd plan` and `syncd apply` through the command line, against the sandbox."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.memo_entries import rewrite
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner().invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


def test_plan_prints_a_readable_diff(world: World):
    result = run(world, "plan")
    assert result.exit_code == 0, result.output
    assert "janedoe" in result.stdout
    assert '~ full_name: "Jane" → "Jane Doe"' in result.stdout
    assert "+ jane.doe+other@example.com" in result.stdout
    assert "- old@example.com" in result.stdout
    assert "Plan: 3 changes for 1 user" in result.stdout
    assert "johnsmith" not in result.stdout


def test_detailed_exitcode_says_whether_changes_are_pending(world: World):
    assert run(world, "plan", "--detailed-exitcode").exit_code == 2
    assert run(world, "apply", "--yes").exit_code == 0
    assert run(world, "plan", "--detailed-exitcode").exit_code == 0


def test_plan_json_contract(world: World):
    result = run(world, "plan", "--output", "json")
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert [c["action"] for c in document["changes"]] == [
        "update_profile",
        "add_email",
        "delete_email",
    ]
    assert document["summary"]["users_changed"] == 1
    assert document["source"]["files"][0]["sha256"]


def test_plan_json_says_how_much_the_cache_answered(world: World):
    cold = json.loads(run(world, "plan", "--output", "json").stdout)["summary"]
    assert (cold["from_cache"], cold["oldest_answer_age_seconds"]) == (0, None)
    warm = json.loads(run(world, "plan", "--output", "json").stdout)["summary"]
    assert warm["from_cache"] == warm["users"] > 0
    assert warm["oldest_answer_age_seconds"] >= 0


def test_a_user_half_answered_by_the_cache_counts_as_from_the_cache(world: World):
    # The profile cached, then `emails` managed too: only the emails were read, and
    # the plan said "the accounts match" with no word of the cached profile it used.
    world.desire({"version": 1, "users": {"johnsmith": {"full_name": "John Smith"}}})
    assert run(world, "plan").exit_code == 0
    world.desire(
        {
            "version": 1,
            "users": {"johnsmith": {"full_name": "John Smith", "emails": ["john@example.com"]}},
        }
    )
    gets = world.gets()
    summary = json.loads(run(world, "plan", "--output", "json").stdout)["summary"]
    assert world.gets() == gets + 1  # the emails alone
    assert summary["from_cache"] == 1
    assert summary["oldest_answer_age_seconds"] >= 0
    result = run(world, "plan", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert "from the cache" in result.stdout


def test_invalid_desired_state_sends_nothing(world: World):
    world.desired_file.write_text("version: 1\nusers:\n  janedoe:\n    ful_name: Jane\n")
    result = run(world, "plan")
    assert result.exit_code == 1
    assert f"{world.desired_file}:4:5:" in result.stderr
    assert "full_name" in result.stderr
    assert world.sandbox.stats()["total"] == 0


def test_user_flag_limits_the_run(world: World):
    result = run(world, "plan", "--user", "johnsmith", "--output", "json")
    assert json.loads(result.stdout)["changes"] == []
    assert run(world, "plan", "--user", "nobody_here").exit_code == 1


def test_apply_needs_yes_without_a_terminal(world: World):
    result = run(world, "apply")
    assert result.exit_code != 0
    assert "--yes" in result.stderr
    assert world.writes() == 0


def test_apply_converges_and_names_the_audit_trail(world: World):
    result = run(world, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert "Apply complete: 3 applied, 0 failed." in result.stdout
    assert "Audit trail: run" in result.stdout
    assert run(world, "plan").stdout.startswith("No changes")


def test_guard_exits_3_and_applies_nothing(world: World):
    result = run(world, "apply", "--yes", "--allow-deletions", "0")
    assert result.exit_code == 3
    assert "--allow-deletions 1" in result.stderr
    assert world.writes() == 0


def test_saved_plan_is_applied_when_nothing_changed(world: World, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 0, result.output
    assert world.writes() == 3


def test_stale_saved_plan_is_refused_naming_user_and_field(world: World, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    run(world, "plan", "--out", str(plan_file))
    httpx.patch(
        f"{world.sandbox.url}/api/v1.1/users/janedoe/",
        json={"location": "Mars"},
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    ).raise_for_status()
    writes_before = world.writes()
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert "stale" in result.stderr
    assert "janedoe: location" in result.stderr
    assert world.writes() == writes_before


def edited(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_a_saved_plan_edited_to_delete_the_primary_is_refused_unread(world: World, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    run(world, "plan", "--out", str(plan_file))
    delete = {"user": "janedoe", "action": "delete_email", "email": "Jane.Doe@Example.com"}
    edited(plan_file, lambda plan: plan["changes"].append(delete))
    requests_before = world.sandbox.stats()["total"]
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert "it deletes Jane.Doe@Example.com, which by its basis is (or may be) the primary" in (
        result.stderr
    )
    assert world.sandbox.stats()["total"] == requests_before


def test_a_saved_plan_whose_basis_hides_the_primary_is_refused_by_the_fresh_read(
    world: World, tmp_path: Path
):
    plan_file = tmp_path / "plan.json"
    run(world, "plan", "--out", str(plan_file))

    def hide_the_primary(plan: dict[str, Any]) -> None:
        # The basis says old@ is the primary; the account says jane.doe@ is.
        adds = [c for c in plan["changes"] if c["action"] == "add_email"]
        delete = {"user": "janedoe", "action": "delete_email", "email": "jane.doe@example.com"}
        plan["changes"] = [*adds, delete]
        basis = plan["basis"]["janedoe"]
        basis["profile"] = None  # so that it is neither read again nor compared
        for address in basis["emails"]:
            address["primary"] = address["email"] == "old@example.com"

    edited(plan_file, hide_the_primary)
    writes_before = world.writes()
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert "would delete the primary address" in result.stderr
    assert "janedoe: jane.doe@example.com is the primary address" in result.stderr
    assert world.writes() == writes_before
    assert "jane.doe@example.com" in world.emails_of("janedoe")


def keeping_the_old_address(desired: dict[str, Any]) -> None:
    desired["users"]["janedoe"]["emails"].append("old@example.com")


def suspending_jane(desired: dict[str, Any]) -> None:
    desired["users"]["janedoe"]["suspend"] = {"reason": "INC-77 do not touch janedoe"}


@pytest.mark.parametrize("change", [keeping_the_old_address, suspending_jane])
def test_a_saved_plan_is_refused_unread_once_its_desired_state_changed(
    world: World, tmp_path: Path, change: Callable[[dict[str, Any]], None]
):
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    desired = copy.deepcopy(STANDARD_DESIRED)
    change(desired)
    world.desire(desired)
    requests_before = world.sandbox.stats()["total"]
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert (
        f"the desired state changed since the plan was made ({world.desired_file} differs)"
    ) in result.stderr
    assert world.sandbox.stats()["total"] == requests_before
    assert "old@example.com" in world.emails_of("janedoe")


def test_a_saved_plan_applies_with_its_desired_files_named_another_way(
    world: World, tmp_path: Path
):
    # Compared by path as typed, `-f ds/` and `-f ./ds/` were "changed".
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    elsewhere = tmp_path / "checkout" / "accounts.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(world.desired_file.read_bytes())
    spelled = f"{elsewhere.parent}/./{elsewhere.name}"
    result = run(world, "apply", str(plan_file), "--yes", "-f", spelled)
    assert result.exit_code == 0, result.output
    assert "old@example.com" not in world.emails_of("janedoe")


def test_a_saved_plan_from_another_checkout_names_the_file_that_differs_here(
    world: World, tmp_path: Path
):
    # The review: the message named the plan's own copy of an unchanged file.
    first, second = tmp_path / "c1", tmp_path / "c2"
    for checkout in (first, second):
        checkout.mkdir()
        for name, user in (("a.yaml", "janedoe"), ("b.yaml", "johnsmith")):
            users = {user: STANDARD_DESIRED["users"][user]}
            (checkout / name).write_text(json.dumps({"version": 1, "users": users}))
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file), "-f", str(first)).exit_code == 0
    (second / "b.yaml").write_text((second / "b.yaml").read_text() + "\n# changed\n")
    result = run(world, "apply", str(plan_file), "--yes", "-f", str(second))
    assert result.exit_code == 1
    assert f"({second / 'b.yaml'} differs)" in result.stderr
    assert world.writes() == 0


@pytest.mark.parametrize(
    ("planned", "edited_to"),
    [
        pytest.param('"Jane Doe"', '"Evil Corp"', id="profile"),
        pytest.param('"jane.doe+other@example.com"', '"attacker@evil.example"', id="address"),
    ],
)
def test_a_saved_plan_edited_by_hand_is_refused_naming_the_change(
    world: World, tmp_path: Path, planned: str, edited_to: str
):
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    text = plan_file.read_text()
    assert text.count(planned) == 1
    plan_file.write_text(text.replace(planned, edited_to))
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert f"{plan_file} does not match what the desired state and this state plan now" in (
        result.stderr
    )
    assert edited_to in result.stderr
    assert world.writes() == 0


def test_apply_of_a_saved_plan_takes_the_desired_state_given_and_no_refresh(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    refreshed = run(world, "apply", str(plan_file), "--yes", "--refresh")
    assert refreshed.exit_code == 1
    assert "a saved plan is applied whole and always reads its users again" in refreshed.stderr
    elsewhere = run(world, "apply", str(plan_file), "--yes", "-f", str(tmp_path / "x.yaml"))
    assert elsewhere.exit_code == 1
    assert f"{tmp_path / 'x.yaml'}:1:1: no such file or directory" in elsewhere.stderr
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # where no desired-state.yaml is
    monkeypatch.delenv("SYNCD_DESIRED", raising=False)
    unsaid = CliRunner().invoke(cli, ["apply", *world.cli_args()[:-2], str(plan_file), "--yes"])
    assert unsaid.output.splitlines() == [
        f"syncd: {plan_file} is checked against the desired state it was made from: "
        "give it with -f (or SYNCD_DESIRED)"
    ]
    assert unsaid.exit_code == 1
    assert world.writes() == 0


def test_a_saved_plan_withholds_the_users_suspended_since_with_syncd_suspend(
    world: World, tmp_path: Path
):
    plan_file = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    args = ["--state-dir", str(world.state_dir), "--reason", "INC-9", "--user", "janedoe"]
    assert CliRunner().invoke(cli, ["suspend", *args]).exit_code == 0
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 0, result.output
    assert "not written: janedoe (suspended since the plan)" in result.stdout
    assert world.writes() == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "not JSON", id="not-json"),
        pytest.param('{"format_version": 2}', "format_version", id="wrong-version"),
        pytest.param('{"format_version": 1, "changes": []}', "basis", id="no-basis"),
        pytest.param(
            '{"format_version": 1, "basis": {}, "changes": [{"user": "janedoe",'
            ' "action": "drop_user"}]}',
            "unknown action",
            id="unknown-action",
        ),
        pytest.param("[]", "expected a JSON object", id="not-an-object"),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": {}}, "changes": [{"user": "janedoe",'
            ' "action": "delete_email", "email": "old@example.com"}]}',
            "basis emails",
            id="basis-without-emails",
        ),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": "x"}, "changes": [{"user": "janedoe",'
            ' "action": "delete_email", "email": "old@example.com"}]}',
            "no basis",
            id="basis-not-an-object",
        ),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": {"profile": {"full_name": "J"}}},'
            ' "changes": [{"user": "janedoe", "action": "update_profile",'
            ' "fields": {"full_name": {"before": "J", "after": "K"}}}]}',
            "lacks its profile",
            id="basis-with-partial-profile",
        ),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": {"emails": [{"email": "a@example.com",'
            ' "verified": true, "primary": true}]}}, "changes": [{"user": "janedoe",'
            ' "action": "delete_email", "email": "old@example.com"}]}',
            "whose basis does not have it",
            id="deletes-what-the-basis-lacks",
        ),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": {"emails": [{"email": "a@example.com",'
            ' "verified": true, "primary": true}]}}, "changes": [{"user": "janedoe",'
            ' "action": "add_email", "email": "A@example.com"}]}',
            "whose basis has it",
            id="adds-what-the-basis-has",
        ),
        pytest.param(
            '{"format_version": 1, "basis": {"janedoe": {"emails": []}}, "changes": [{"user":'
            ' "janedoe", "action": "add_email", "email": "a\\u0000@example.com"}]}',
            "email holds a NUL character",
            id="text-with-a-nul",
        ),
    ],
)
def test_bad_saved_plans_are_rejected(world: World, tmp_path: Path, content: str, message: str):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(content)
    result = run(world, "apply", str(plan_file), "--yes")
    assert result.exit_code == 1
    assert message in result.stderr
    assert world.sandbox.stats()["total"] == 0


def test_no_secret_appears_in_output_logs_or_state(world: World):
    secrets = ["tok-jane", "tok-john", world.sandbox.admin_token, "wrong-secret-123"]
    (world.credentials_dir / "johnsmith.token").write_text("wrong-secret-123\n")
    outputs = [
        run(world, "plan"),
        run(world, "plan", "--output", "json"),
        run(world, "apply", "--yes"),
    ]
    state_bytes = b"".join(p.read_bytes() for p in world.state_dir.rglob("*") if p.is_file())
    for secret in secrets:
        for result in outputs:
            assert secret not in result.stdout
            assert secret not in result.stderr
        assert secret.encode() not in state_bytes


def test_a_usage_error_is_not_mistaken_for_pending_changes(world: World):
    result = run(world, "plan", "--detailed-exitcode", "--no-such-flag")
    assert result.exit_code == 1


def test_a_user_without_credential_gets_no_write_even_from_a_warm_cache(world: World):
    assert run(world, "plan").exit_code == 0  # the cache is now warm
    (world.credentials_dir / "janedoe.token").unlink()
    result = run(world, "apply", "--yes")
    assert "janedoe: no_credentials" in result.stdout
    assert world.writes() == 0


def test_a_token_that_cannot_be_sent_is_named_not_shown(world: World):
    (world.credentials_dir / "janedoe.token").write_text("first-line\nSECRET-SECOND-LINE\n")
    result = run(world, "plan")
    assert result.exit_code == 1  # a credential file that cannot be used is an error
    assert "janedoe: credential_refused" in result.stdout
    assert "SECRET-SECOND-LINE" not in result.output
    assert "janedoe.token" in result.stdout


def test_apply_refuses_while_another_writer_holds_the_state(world: World):
    from syncd.state.lock import acquire

    with acquire(world.state_dir):
        result = run(world, "apply", "--yes")
    assert result.exit_code == 1
    assert f"pid {os.getpid()}" in result.stderr
    assert world.writes() == 0


def test_a_plan_reads_the_desired_state_again_once_it_changes(world: World):
    assert "Jane Doe" in run(world, "plan").stdout  # now remembered in the state directory
    world.desired_file.write_text(world.desired_file.read_text().replace("Jane Doe", "Jane Q."))

    result = run(world, "plan")

    assert '~ full_name: "Jane" → "Jane Q."' in result.stdout
    assert len(list((world.state_dir / "desired-memo").glob("*.jsonl"))) == 2


def test_validate_reads_the_file_and_remembers_nothing(world: World):
    result = CliRunner().invoke(
        cli,
        ["validate", "-f", str(world.desired_file)],
        env={"SYNCD_STATE_DIR": str(world.state_dir)},
    )
    assert result.exit_code == 0, result.output
    assert not (world.state_dir / "desired-memo").exists()


def test_what_is_applied_comes_from_the_file_never_from_the_memo(world: World, tmp_path: Path):
    run(world, "plan")  # remembers the file
    [entry] = (world.state_dir / "desired-memo").glob("*.jsonl")
    rewrite(entry, "Jane Doe", "Jane From Memo")
    assert "Jane From Memo" in run(world, "plan").stdout  # a dry run may show it
    saved = tmp_path / "plan.json"

    assert run(world, "plan", "--out", str(saved)).exit_code == 0
    assert run(world, "apply", "--yes").exit_code == 0

    assert "Jane From Memo" not in saved.read_text()
    response = httpx.get(
        f"{world.sandbox.url}/api/v1.1/users/janedoe/",
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    assert response.json()["full_name"] == "Jane Doe"


def test_the_last_line_counts_unknown_outcomes_apart_and_does_not_say_complete(world: World):
    # Every write is applied and its answer lost (a 500 or a dropped connection): the
    # PATCH stays unknown after its retries; the POST and the DELETE are found done.
    world.seed(STANDARD_SEED, faults={"ambiguous_rate": 1.0, "fault_seed": 1})
    result = run(world, "apply", "--yes")
    assert result.exit_code == 1, result.output
    assert "janedoe: update profile… unknown" in result.stdout
    assert (
        "Apply finished with failures: 2 applied, 0 failed, 1 with an unknown outcome "
        "(read again next run)."
    ) in result.stdout.splitlines()
