"""The operator in the loop (issue 24): a running daemon told what to leave alone.

`syncd suspend` and `syncd resume` are other processes than the daemon; they
write the state, and the daemon honours them at its next cycle, with no restart.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import DaemonProcess, once
from tests.world import STANDARD_DESIRED, World, admin_patch, run_syncd


def syncd(world: World, *args: str) -> str:
    result = CliRunner().invoke(
        cli, [*args, "--state-dir", str(world.state_dir)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def full_name(world: World, username: str) -> str:
    response = httpx.get(
        f"{world.sandbox.url}/api/v1.1/users/{username}/",
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    response.raise_for_status()
    return str(response.json()["full_name"])


def test_a_running_daemon_is_suspended_and_resumed_from_another_process(
    world: World, start_daemon: Any
):
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW="2", SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")  # janedoe converged

    suspended_at = len(daemon.events)
    said = syncd(world, "suspend", "--reason", "INC-123", "--user", "janedoe", "--for", "1h")
    assert "Suspended janedoe until" in said
    admin_patch(world, "janedoe", full_name="Changed by hand")
    admin_patch(world, "johnsmith", full_name="Changed too")

    # The others go on: johnsmith is put back, janedoe is left alone and said so.
    daemon.wait_for("outcome", user="johnsmith", action="update_profile")
    daemon.wait_for("cycle_finished", suspended=1)
    daemon.wait_for("user_suspended", user="janedoe", reason="INC-123")
    daemon.wait_for("cycle_finished", suspended=1)
    assert full_name(world, "janedoe") == "Changed by hand"
    assert not [
        event
        for event in daemon.events[suspended_at:]
        if event.get("event") == "intent" and event.get("user") == "janedoe"
    ]
    metrics = httpx.get(f"http://{address}/metrics").text
    assert re.search(r"^syncd_users_suspended 1\.0$", metrics, re.M)

    report = json.loads(syncd(world, "status", "--output", "json"))
    (held,) = report["suspensions"]
    assert held["user"] == "janedoe"
    assert held["reason"] == "INC-123"
    assert "@" in held["by"]
    assert held["until"]
    assert "syncd resume --user janedoe" in syncd(world, "status")

    assert "Resumed janedoe" in syncd(world, "resume", "--user", "janedoe")
    daemon.wait_for("outcome", user="janedoe", action="update_profile", result="ok")
    assert full_name(world, "janedoe") == "Jane Doe"
    assert daemon.stop() == 0

    decisions = world.query(
        'SELECT event, "user", message FROM audit WHERE event IN (?, ?) ORDER BY seq',
        ("suspend", "resume"),
    )
    assert [(d["event"], d["user"]) for d in decisions] == [
        ("suspend", "janedoe"),
        ("resume", "janedoe"),
    ]
    assert "INC-123" in decisions[0]["message"]


def test_a_daemon_suspended_for_everyone_sends_no_request(world: World, start_daemon: Any):
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW="1")
    daemon.wait_for("cycle_finished", result="ok")
    syncd(world, "suspend", "--reason", "freeze", "--all")
    daemon.wait_for("cycle_finished", suspended=2)
    requests = world.gets() + world.writes()
    admin_patch(world, "janedoe", full_name="Changed by hand")
    for _ in range(3):
        daemon.wait_for("cycle_finished", suspended=2)
    # Only the test's own PATCH and its GET of nothing: the daemon read nobody.
    assert world.gets() + world.writes() == requests + 1
    syncd(world, "resume", "--all")
    daemon.wait_for("outcome", user="janedoe", action="update_profile", result="ok")
    assert daemon.stop() == 0


def add_address(world: World, username: str, address: str) -> None:
    response = httpx.post(
        f"{world.sandbox.url}/api/v1.1/users/{username}/emails/",
        json={"email": address},
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    response.raise_for_status()


def test_a_tripped_guard_holds_only_the_deletions_until_approved_or_rejected(
    world: World, start_daemon: Any
):
    # The standard plan renames janedoe, adds an address and deletes one: past a
    # limit of 0, the deletion is held and the rest applied.
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_DRIFT_WINDOW="2")
    held = daemon.wait_for("deletions_held")
    first = daemon.wait_for("cycle_finished")
    assert first["result"] == "held"
    assert first["applied"] == 2
    assert held["new"] is True
    assert held["per_user"] == {"janedoe": 1}
    assert "old@example.com" in world.emails_of("janedoe")
    assert full_name(world, "janedoe") == "Jane Doe"
    # Asked once: the next cycles keep the same set.
    again = daemon.wait_for("deletions_held")
    assert again["held_id"] == held["held_id"]
    assert again["new"] is False

    report = json.loads(syncd(world, "status", "--output", "json"))
    (entry,) = report["held_changes"]
    assert entry["id"] == held["held_id"]
    assert entry["per_user"] == {"janedoe": 1}
    assert entry["approve"] == f"syncd approve {held['held_id']}"
    text = syncd(world, "status")
    assert f"decide: syncd approve {held['held_id']}  or  syncd reject {held['held_id']}" in text

    said = syncd(world, "approve", held["held_id"])
    assert f"Approved 1 deletion of set {held['held_id']}: janedoe (1)" in said
    daemon.wait_for("outcome", user="janedoe", action="delete_email", result="ok")
    daemon.wait_for("cycle_finished", result="ok")
    assert world.emails_of("janedoe") == ["jane.doe@example.com", "jane.doe+other@example.com"]

    # A new deletion, beside nothing approved: held again, as a new set; rejected,
    # it is not asked about again for this revision.
    add_address(world, "janedoe", "by.hand@example.com")
    second = daemon.wait_for("deletions_held", new=True)
    assert second["held_id"] != held["held_id"]
    said = syncd(world, "reject", second["held_id"])
    assert "Rejected 1 deletion " in said
    daemon.wait_for("deletions_rejected_left_out")
    seen = len(daemon.events)
    for _ in range(3):
        # Nothing else to do, and not asked again: the guard is cleared (the operator
        # has answered), yet the account is not as desired: its user is drift, and
        # the run is `held` (changes left unmade), never no_changes (a success).
        finished = daemon.wait_for("cycle_finished")
        assert finished["result"] == "held"
        assert finished["drift_users"] == 1
        assert f"left out: 1 deletion rejected (set {second['held_id']})" in finished["message"]
    assert not [e for e in daemon.events[seen:] if e.get("event") == "deletions_held"]
    assert "by.hand@example.com" in world.emails_of("janedoe")
    report = json.loads(syncd(world, "status", "--output", "json"))
    assert report["guard"]["held"] is False
    assert report["pending"]["by_action"]["delete_email"] == 1
    assert report["pending"]["as_of"] == "held"
    assert report["runs"][0]["result"] == "held"
    # No success since the rejection: the last is from before the deletion was planned.
    rejected_at = next(
        e["timestamp"] for e in daemon.events if e.get("event") == "deletions_rejected_left_out"
    )
    assert datetime.fromisoformat(report["last_success_at"]) < datetime.fromisoformat(rejected_at)
    assert daemon.stop() == 0

    decisions = world.query(
        'SELECT event, "user" FROM audit WHERE event IN (?, ?) ORDER BY seq', ("approve", "reject")
    )
    assert [(d["event"], d["user"]) for d in decisions] == [
        ("approve", "janedoe"),
        ("reject", "janedoe"),
    ]


def test_status_counts_exactly_the_users_a_held_cycle_left_with_changes(
    world: World, start_daemon: Any
):
    # johnsmith's profile applied, janedoe's deletion held: status said "1 change for
    # up to 2 users", the plan's count of users with changes.
    admin_patch(world, "johnsmith", full_name="Changed by hand")
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_INTERVAL="3600")
    finished = daemon.wait_for("cycle_finished", result="held")
    assert finished["applied"] == 3  # janedoe's profile and address, johnsmith's profile
    assert full_name(world, "johnsmith") == "John Smith"
    text = syncd(world, "status")
    assert "pending      1 change for 1 user (delete_email 1) after the last run\n" in text
    assert daemon.stop() == 0


def test_while_a_cycle_runs_status_and_the_page_show_the_last_ended_one(
    world: World, start_daemon: Any
):
    # The running cycle was taken for the last run: "0 planned", "the last run (None)".
    daemon: DaemonProcess = start_daemon(
        SYNCD_MAX_DELETIONS="0",
        SYNCD_INTERVAL="1",
        SYNCD_DRIFT_WINDOW="0.5",  # every cycle reads every user again
        SYNCD_METRICS_ADDR="127.0.0.1:0",
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="held")
    # Each request now takes 3 s: the next cycle is in its reads while status looks.
    world.sandbox.set_faults({"latency_ms": 3000})
    daemon.wait_for("run_started")
    report = json.loads(syncd(world, "status", "--output", "json"))
    text = syncd(world, "status")
    page = httpx.get(f"http://{address}/").text
    assert report["runs"][0]["result"] is None
    assert report["run_in_progress"] is True
    assert (report["pending"]["as_of"], report["pending"]["changes"]) == ("held", 1)
    assert report["guard"]["deletions_planned"] == 1
    assert "guard        HELD the last run's deletions (1 planned, the limit is 0)" in text
    assert (
        "pending      1 change for 1 user (delete_email 1) after the last run;"
        " a run is in progress\n"
    ) in text
    assert "for a decision (below): 1 planned" in page
    assert "a run is in progress" in page
    assert "None" not in text
    assert daemon.stop() == 0


def test_a_rejection_stands_across_revisions_until_the_address_is_kept(
    world: World, start_daemon: Any
):
    # The trial's severity 1: a rejection held for its revision only, so that after
    # any commit the deletion was made unasked once it fit under the limit. It
    # stands while planned, lapses once the desired state keeps the address, and
    # planned again after that it is a new question.
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_DRIFT_WINDOW="2")
    held = daemon.wait_for("deletions_held")
    syncd(world, "reject", held["held_id"])
    first = daemon.wait_for("deletions_rejected_left_out")
    seen = len(daemon.events)

    edited = world.desired_file.with_suffix(".tmp")
    edited.write_text(world.desired_file.read_text() + "# reviewed again\n")
    edited.replace(world.desired_file)  # a new revision (a file's: its content)
    later = daemon.wait_for("deletions_rejected_left_out")
    while later["revision"] == first["revision"]:
        later = daemon.wait_for("deletions_rejected_left_out")
    assert not [e for e in daemon.events[seen:] if e.get("event") == "deletions_held"]
    assert "old@example.com" in world.emails_of("janedoe")

    desire_in_place(world, keeping_old_address())
    lapsed = daemon.wait_for("deletions_rejected_not_planned")
    assert lapsed["held_id"] == held["held_id"]
    desire_in_place(world, STANDARD_DESIRED)
    again = daemon.wait_for("deletions_held", new=True)
    assert again["held_id"] != held["held_id"]
    assert "old@example.com" in world.emails_of("janedoe")
    assert daemon.stop() == 0


def desire_in_place(world: World, desired: dict[str, Any]) -> None:
    """A new desired file, renamed over the old one: a running daemon never reads half."""
    edited = world.root / "desired-state.new.yaml"
    world.desired_file.rename(edited)
    world.desire(desired)  # writes world.desired_file
    edited.unlink()


def test_a_held_set_no_longer_planned_is_closed_not_left_to_block_the_guard(
    world: World, start_daemon: Any
):
    # Held, then the commit fixed: the desired state keeps the address. Left open,
    # the set kept the guard blocked (and its alert firing) until someone decided
    # on a deletion nobody planned any more.
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_DRIFT_WINDOW="2")
    held = daemon.wait_for("deletions_held")
    desire_in_place(world, keeping_old_address())
    closed = daemon.wait_for("deletions_held_not_planned")
    assert closed["held_id"] == held["held_id"]
    daemon.wait_for("cycle_finished", result="no_changes")
    report = json.loads(syncd(world, "status", "--output", "json"))
    assert report["held_changes"] == []
    assert report["guard"]["held"] is False
    result = CliRunner().invoke(
        cli, ["approve", held["held_id"], "--state-dir", str(world.state_dir)]
    )
    assert result.exit_code == 1
    assert "superseded already" in result.output
    assert daemon.stop() == 0


def keeping_old_address() -> dict[str, Any]:
    """The standard desired state, with the address it deletes kept."""
    keeping = copy.deepcopy(STANDARD_DESIRED)
    keeping["users"]["janedoe"]["emails"].append("old@example.com")
    return keeping


def test_an_approval_is_spent_by_the_next_cycle_even_one_with_nothing_to_do(
    world: World, start_daemon: Any
):
    # Held and approved while no daemon runs, then the desired state kept the
    # address: the next cycle plans nothing. The approval was for the deletion
    # planned then; kept for later, it let the same deletion of a later revision
    # past the guard unasked.
    holding: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0")
    held = holding.wait_for("deletions_held")
    assert holding.stop() == 0
    syncd(world, "approve", held["held_id"])
    desire_in_place(world, keeping_old_address())
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_DRIFT_WINDOW="2")
    daemon.wait_for("cycle_finished", result="no_changes")
    report = json.loads(syncd(world, "status", "--output", "json"))
    assert report["held_changes"] == []
    # Nothing of it was sent: closed as superseded, not said applied.
    decided = world.query("SELECT status FROM held_changes WHERE id = ?", (held["held_id"],))
    assert decided == [{"status": "superseded"}]

    desire_in_place(world, STANDARD_DESIRED)  # old@example.com to go again
    again = daemon.wait_for("deletions_held", new=True)
    assert again["held_id"] != held["held_id"]
    assert "old@example.com" in world.emails_of("janedoe")
    assert daemon.stop() == 0


def test_an_observing_daemon_spends_no_approval(world: World, start_daemon: Any):
    holding: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0")
    held = holding.wait_for("deletions_held")
    assert holding.stop() == 0
    syncd(world, "approve", held["held_id"])
    observing: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_OBSERVE="true")
    observing.wait_for("cycle_finished", result="drift")
    approved = f"set {held['held_id']}: 1 deletion (janedoe (1)) approved by "
    waits = "the first cycle after the daemon stops observing applies them"
    assert approved in syncd(world, "status")
    assert waits in syncd(world, "status")
    assert observing.stop() == 0
    report = json.loads(syncd(world, "status", "--output", "json"))
    assert [entry["id"] for entry in report["held_changes"]] == [held["held_id"]]

    writing: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0")
    writing.wait_for("outcome", user="janedoe", action="delete_email", result="ok")
    assert "old@example.com" not in world.emails_of("janedoe")
    assert writing.stop() == 0


def test_deciding_an_unknown_set_is_one_line(world: World):
    world.apply()  # a state to decide in
    result = CliRunner().invoke(cli, ["approve", "nosuchid", "--state-dir", str(world.state_dir)])
    assert result.exit_code == 1
    assert "no held change set 'nosuchid'" in result.output


def test_apply_waits_for_the_daemons_lock_with_a_timeout(world: World, start_daemon: Any):
    daemon: DaemonProcess = start_daemon()
    daemon.wait_for("cycle_finished", result="ok")
    args = ["apply", *world.cli_args(), "--yes"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert "holds" in refused.output
    admin_patch(world, "johnsmith", full_name="Changed by hand")
    waited = CliRunner().invoke(cli, [*args, "--refresh", "--lock-timeout", "30s"])
    assert waited.exit_code == 0, waited.output
    assert full_name(world, "johnsmith") == "John Smith"  # the apply wrote it
    assert [run["result"] for run in runs_of(world, "apply")] == ["ok"]
    daemon.wait_for("cycle_finished")  # and the daemon goes on
    assert daemon.stop() == 0


def runs_of(world: World, command: str) -> list[dict[str, Any]]:
    return world.query("SELECT result FROM runs WHERE command = ?", (command,))


def test_status_tells_what_is_wrong_with_one_user(world: World, start_daemon: Any):
    # Observing: the changes stay pending, as the plan shows them.
    daemon: DaemonProcess = start_daemon(SYNCD_OBSERVE="true")
    daemon.wait_for("cycle_finished", result="drift")
    report = json.loads(syncd(world, "status", "--user", "janedoe", "--output", "json"))
    (jane,) = report["users"]
    assert jane["user"] == "janedoe"
    assert jane["last_read"]["profile"] is not None
    assert jane["last_read"]["emails"] is not None
    assert jane["pending"]["changes"] == [
        {
            "user": "janedoe",
            "action": "update_profile",
            "fields": {
                "full_name": {"before": "Jane", "after": "Jane Doe"},
                "location": {"before": "San Francisco, CA", "after": "Private Island"},
            },
        },
        {"user": "janedoe", "action": "add_email", "email": "jane.doe+other@example.com"},
        {"user": "janedoe", "action": "delete_email", "email": "old@example.com"},
    ]
    assert jane["last_write"] is None
    assert jane["error"] is None
    assert jane["suspension"] is None
    text = syncd(world, "status", "--user", "janedoe")
    assert "user janedoe" in text
    assert '    ~ full_name: "Jane" → "Jane Doe"; ~ location:' in text
    assert "    - old@example.com" in text

    # A cycle that ends invalid says where, in status too.
    # Written aside and renamed: the daemon must not read it half written.
    broken = world.desired_file.with_suffix(".tmp")
    broken.write_text("version: 1\nusers:\n  janedoe:\n    full_nam: x\n")
    broken.replace(world.desired_file)
    daemon.wait_for("cycle_finished", result="invalid")
    report = json.loads(syncd(world, "status", "--output", "json"))
    assert report["last_cycle"]["result"] == "invalid"
    where = f"{world.desired_file}:4:5: unknown key 'full_nam'"
    assert where in report["last_cycle"]["message"]
    assert "last cycle   invalid at " in syncd(world, "status")
    assert daemon.stop() == 0


def suspended_in_desired(world: World, **suspend: str) -> None:
    """The standard desired state, janedoe suspended by a `suspend:` of its own."""
    desired = copy.deepcopy(STANDARD_DESIRED)
    desired["users"]["janedoe"]["suspend"] = suspend
    world.desire(desired)


def test_a_suspend_in_the_desired_state_shows_where_a_syncd_suspend_does(
    world: World, start_daemon: Any
):
    suspended_in_desired(world, reason="DS-2 <b>", until="2099-01-31")
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", suspended=1)

    report = json.loads(syncd(world, "status", "--output", "json"))
    (held,) = report["suspensions"]
    assert held["user"] == "janedoe"
    assert held["reason"] == "DS-2 <b>"
    assert held["until"] == "2099-01-31T00:00:00+00:00"
    assert held["source"] == "yaml"
    where = f"{world.desired_file}:3:3"  # the user's key: under `version:` and `users:`
    assert held["by"] == where
    text = syncd(world, "status")
    assert (
        f"suspended    janedoe: DS-2 <b> (until 2099-01-31 00:00:00, suspend: at {where})" in text
    )
    assert "syncd resume --user janedoe" not in text
    mine = syncd(world, "status", "--user", "janedoe")
    assert f"suspended    DS-2 <b> (until 2099-01-31T00:00:00+00:00, suspend: at {where}" in mine
    assert "pending      not known (suspended, not read)" in mine

    home = httpx.get(f"http://{address}/").text
    assert f"suspend: at {where} in the desired state" in home
    assert "DS-2 &lt;b&gt;" in home
    page = httpx.get(f"http://{address}/users/janedoe").text
    assert f"DS-2 &lt;b&gt;, until 2099-01-31T00:00:00+00:00: suspend: at {where}" in page

    # Written in git: `syncd resume` ends the `syncd suspend`s of the users named (it
    # refused them all), and names the `suspend:` that goes on holding, with exit 1;
    # `--all` did what it says: it names them as a note, and exits 0.
    syncd(world, "suspend", "--reason", "INC-9", "--user", "janedoe", "--user", "johnsmith")
    resume = ["resume", "--user", "janedoe", "--user", "johnsmith"]
    said = CliRunner().invoke(cli, [*resume, "--state-dir", str(world.state_dir)])
    assert said.exit_code == 1
    assert said.stdout == "Ended the syncd suspend of janedoe, johnsmith.\n"
    still = (
        f"syncd: janedoe is still suspended by the suspend: at {where} (as the daemon's"
        " last cycle found it): remove it from the desired state"
    )
    errors = [line for line in said.stderr.splitlines() if not line.startswith("{")]  # no log
    assert errors == [still]
    assert world.query("SELECT username FROM suspensions") == []
    again = CliRunner().invoke(cli, [*resume, "--state-dir", str(world.state_dir)])
    assert (again.exit_code, again.stdout) == (1, "")
    assert again.stderr.endswith(f"{still}\n")
    everyone = CliRunner().invoke(cli, ["resume", "--all", "--state-dir", str(world.state_dir)])
    assert (everyone.exit_code, everyone.stdout) == (0, f"{still.removeprefix('syncd: ')}\n")
    assert "syncd:" not in everyone.stderr
    assert daemon.stop() == 0


def test_the_end_of_a_suspend_in_the_desired_state_is_told_once(
    world: World, start_daemon: Any, tmp_path: Path
):
    from tests.daemon.test_notifications import Receiver, secret_file

    receiver = Receiver()
    notify = {
        "SYNCD_NOTIFY_URL": receiver.url,
        "SYNCD_NOTIFY_SECRET_FILE": str(secret_file(tmp_path)),
    }
    try:
        until = datetime.now(UTC) + timedelta(seconds=3)
        suspended_in_desired(world, reason="DS-1", until=until.isoformat(timespec="seconds"))
        daemon: DaemonProcess = start_daemon(**notify)
        daemon.wait_for("suspension_ended", user="janedoe")
        for _ in range(3):  # the `suspend:` is still there, ended
            daemon.wait_for("cycle_finished")
        assert daemon.stop() == 0  # what was queued is delivered first
        # The next instance on the state goes on from what the last one recorded.
        again: DaemonProcess = start_daemon(**notify)
        for _ in range(3):
            again.wait_for("cycle_finished")
        assert again.stop() == 0
        ended = [e for e in daemon.events + again.events if e.get("event") == "suspension_ended"]
        assert len(ended) == 1
        told = []
        while not receiver.messages.empty():
            told.append(receiver.messages.get())
        expired = [m for m in told if m["event"] == "suspension_expired"]
        assert [m["users"] for m in expired] == [["janedoe"]]
    finally:
        receiver.close()


def test_a_standing_rejection_is_left_out_by_plan_apply_and_run_once(
    world: World, start_daemon: Any, tmp_path: Path
):
    # The trial's severity 1: `apply` and `run --once` sent a deletion the operator
    # had rejected, `plan` showed it as a change, and `run --once` was even refused
    # by the guard over it, advising a higher limit.
    holding: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0")
    held_id = holding.wait_for("deletions_held")["held_id"]
    assert holding.stop() == 0  # the rest applied: only the deletion is left
    syncd(world, "reject", held_id)

    document = json.loads(run_syncd(world, "plan", "--output", "json").stdout)
    assert document["changes"] == []
    assert document["rejected"]["deletions"] == [
        {"user": "janedoe", "action": "delete_email", "email": "old@example.com"}
    ]
    assert document["rejected"]["sets"] == [held_id]
    assert document["guard"]["deletions"] == 0
    told = f"left out: 1 deletion rejected (set {held_id})"
    # Nothing to apply, yet the accounts do not match; to --detailed-exitcode the
    # operator's decision is no pending change (0), or a CI check would fail for ever.
    planned = run_syncd(world, "plan", "--detailed-exitcode")
    assert planned.returncode == 0, planned.stderr
    assert "Nothing to apply: 1 deletion rejected, left out." in planned.stdout
    assert "match" not in planned.stdout
    assert told in planned.stdout

    assert once(world, tmp_path, SYNCD_MAX_DELETIONS="0") == 0  # not refused, not sent
    applied = run_syncd(world, "apply", "--yes", "--allow-deletions", "5")
    assert applied.returncode == 0, applied.stderr
    assert told in applied.stdout
    assert f"syncd approve {held_id} lets them through" in applied.stdout
    assert "old@example.com" in world.emails_of("janedoe")
    runs = world.query("SELECT command, result FROM runs ORDER BY started_at")
    assert [(r["command"], r["result"]) for r in runs[-2:]] == [("run", "held"), ("apply", "held")]
    saved = tmp_path / "plan.json"  # a saved plan has it left out, and is not stale for it
    assert run_syncd(world, "plan", "--out", str(saved)).returncode == 0
    from_file = run_syncd(world, "apply", str(saved), "--yes")
    assert from_file.returncode == 0, from_file.stderr
    assert "old@example.com" in world.emails_of("janedoe")

    # The operator who wants the deletion after all approves the rejected set.
    assert "Approved 1 deletion" in syncd(world, "approve", held_id)
    assert run_syncd(world, "apply", "--yes", SYNCD_MAX_DELETIONS="1").returncode == 0
    assert "old@example.com" not in world.emails_of("janedoe")


def test_a_run_limited_to_some_users_leaves_the_others_rejections_standing(
    world: World, start_daemon: Any, tmp_path: Path
):
    # A review's severity 1: `run --once --user johnsmith` took janedoe, not in its plan,
    # for read and no longer planning her deletion: her rejection lapsed, and the next
    # apply sent the deletion the operator had rejected.
    holding: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0")
    held_id = holding.wait_for("deletions_held")["held_id"]
    assert holding.stop() == 0
    syncd(world, "reject", held_id)
    assert once(world, tmp_path, "--user", "johnsmith", SYNCD_MAX_DELETIONS="0") == 0
    rows = world.query("SELECT id, status FROM held_changes")
    assert [(r["id"], r["status"]) for r in rows] == [(held_id, "rejected")]
    applied = run_syncd(world, "apply", "--yes", "--allow-deletions", "5")
    assert applied.returncode == 0, applied.stderr
    assert "old@example.com" in world.emails_of("janedoe")


def test_a_rejection_of_a_suspended_user_stands_and_everyone_suspended_is_no_success(
    world: World, start_daemon: Any
):
    # The trial: a suspension turned a cycle with a standing rejection into
    # `no_changes`, a success, and a freeze of everyone read nobody and said the same.
    daemon: DaemonProcess = start_daemon(SYNCD_MAX_DELETIONS="0", SYNCD_DRIFT_WINDOW="1")
    held_id = daemon.wait_for("deletions_held")["held_id"]
    syncd(world, "reject", held_id)
    daemon.wait_for("deletions_rejected_left_out")
    syncd(world, "suspend", "--reason", "INC-1", "--user", "janedoe", "--for", "1h")
    daemon.wait_for("cycle_finished", suspended=1)
    finished = daemon.wait_for("cycle_finished", suspended=1)
    assert finished["result"] == "held"
    assert finished["drift_users"] == 1
    assert f"left out: 1 deletion rejected (set {held_id})" in finished["message"]
    report = json.loads(syncd(world, "status", "--user", "janedoe", "--output", "json"))
    (janedoe,) = report["users"]
    assert janedoe["pending"]["changes"] == [
        {"user": "janedoe", "action": "delete_email", "email": "old@example.com"}
    ]

    syncd(world, "resume", "--user", "janedoe")
    desire_in_place(world, keeping_old_address())  # the rejection lapses: converged
    daemon.wait_for("deletions_rejected_not_planned")
    daemon.wait_for("cycle_finished", result="no_changes")
    syncd(world, "suspend", "--reason", "freeze", "--all")
    daemon.wait_for("cycle_finished", suspended=2)
    frozen = daemon.wait_for("cycle_finished", suspended=2)
    assert (frozen["result"], frozen["message"]) == ("held", "every user suspended: none read")
    assert daemon.stop() == 0
