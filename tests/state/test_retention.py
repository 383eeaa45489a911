"""Retention on both backends: the events and runs before a date exported, the export
verified on its own, and pruned only when an export holds exactly them (or forced);
the kept chain then starts at the recorded cut."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.core.not_kept import NotKept
from syncd.core.plan import AddEmail
from syncd.core.vocabulary import ActionName, RunResult, WriteResult
from syncd.errors import StateError
from syncd.settings import Settings
from syncd.state import backend
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import last_successful_run, open_intents, recent_runs
from syncd.state.backend import Database, StateStore
from syncd.state.chain import Head, read_head, verify
from syncd.state.not_kept import NotKeptRecords
from syncd.state.retention import export, find_cut, iso, prune, verify_export
from tests.state.conftest import API, tamper

START = datetime(2025, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return START + timedelta(days=n)


def run_on(db: Database, n: int, writes: int = 1, *, finish: bool = True) -> list[int]:
    """A run on day `n` with `writes` writes; the intents' numbers."""
    audit = AuditTrail(db, {}, clock=lambda: day(n))
    audit.begin_run("apply")
    intents = []
    for w in range(writes):
        action = AddEmail(f"user{n}", f"u{n}.{w}@example.com")
        seq = audit.intent(action)
        intents.append(seq)
        if finish:
            audit.outcome(seq, action, WriteResult.OK, status=201)
    if finish:
        audit.end_run(RunResult.OK, {})
    return intents


def count(db: Database, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_an_export_holds_what_goes_and_the_prune_removes_exactly_that(
    store: StateStore, tmp_path: Path
) -> None:
    db = store.history
    for n in range(5):
        run_on(db, n, writes=2)
    out = tmp_path / "before-day-3.jsonl.gz"
    cut = export(db, day(3), out)
    assert (cut.events, cut.runs) == (12, 3)
    with gzip.open(out, "rt") as text:
        kinds = [json.loads(line)["kind"] for line in text]
    assert kinds == ["export", *["event"] * 12, *["run"] * 3, "end"]
    assert verify_export(out) == cut

    assert prune(db, day(3), export_file=out) == cut
    assert (count(db, "audit"), count(db, "runs")) == (8, 3)  # two runs kept, and the prune's
    prunes = db.execute("SELECT command, counts FROM runs WHERE command = 'audit prune'")
    assert [(c, json.loads(n)) for c, n in prunes] == [
        ("audit prune", {"pruned_events": 12, "pruned_runs": 3})
    ]
    verified = verify(db)
    assert (verified.first, verified.follows) == (cut.last + 1, cut.hash)
    with pytest.raises(StateError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = ?", [cut.last + 1])
    # An export of the rest goes on from the cut.
    assert prune(db, day(9), export_file=None).events == 8
    assert verify(db).checked == 0


def test_an_export_over_an_existing_file_is_private_and_never_written_through_a_link(
    store: StateStore, tmp_path: Path
) -> None:
    # The events name users and addresses: an export is 0600 however the file it
    # replaces was, and a link at its name is refused, neither followed nor replaced.
    run_on(store.history, 0)
    out = tmp_path / "export.jsonl"
    out.write_text("an older export\n")
    out.chmod(0o644)
    export(store.history, day(9), out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert verify_export(out).events == 2

    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not syncd's\n")
    linked = tmp_path / "linked.jsonl"
    linked.symlink_to(elsewhere)
    with pytest.raises(StateError, match=r"linked\.jsonl: a symbolic link, so neither followed"):
        export(store.history, day(9), linked)
    assert elsewhere.read_text() == "not syncd's\n"
    assert linked.is_symlink()

    # A pipe is refused, never replaced by a file.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(StateError, match="pipe: not a regular file"):
        export(store.history, day(9), pipe)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_events_and_runs_read_in_batches_come_whole_and_in_order(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 events (a whole number of batches, so the last batch read is empty) and 5 runs (not).
    monkeypatch.setattr(backend, "BATCH", 4)
    db = store.history
    for n in range(5):
        run_on(db, n, writes=2)
    run_on(db, 10, writes=0)  # after the date: the last run, which a prune would keep
    out = tmp_path / "all.jsonl"
    cut = export(db, day(9), out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    numbers = [line["seq"] for line in lines if line["kind"] == "event"]
    runs = [line["id"] for line in lines if line["kind"] == "run"]
    assert numbers == list(range(numbers[0], numbers[0] + 20))
    assert runs == sorted(runs)
    assert len(set(runs)) == 5
    assert (cut.events, cut.runs) == (20, 5)
    assert verify(db).checked == 20


def test_a_prune_refuses_an_export_that_does_not_hold_exactly_what_goes(
    store: StateStore, tmp_path: Path
) -> None:
    db = store.history
    for n in range(4):
        run_on(db, n)
    earlier = tmp_path / "earlier.jsonl"
    export(db, day(2), earlier)
    with pytest.raises(StateError, match="does not hold the 6 events and 3 runs"):
        prune(db, day(3), export_file=earlier)
    assert count(db, "audit") == 8

    tampered = tmp_path / "tampered.jsonl"
    export(db, day(3), tampered)
    lines = tampered.read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(StateError, match="incomplete"):
        verify_export(truncated)
    event = json.loads(lines[2])
    event["target"] = "mallory@example.com"
    lines[2] = json.dumps(event)
    tampered.write_text("\n".join(lines) + "\n")
    with pytest.raises(StateError, match=f"event {event['seq']} does not match its hash"):
        prune(db, day(3), export_file=tampered)
    assert count(db, "audit") == 8


@pytest.mark.parametrize("forced", [True, False], ids=["forced", "exported"])
@pytest.mark.parametrize(
    ("removed", "why"),
    [("seq = 3", "event 4 does not follow event 2"), ("seq <= 2", "event 3, the first kept")],
    ids=["middle", "front"],
)
def test_a_prune_removes_no_events_whose_chain_was_broken(
    store: StateStore,
    open_new: Callable[..., StateStore],
    tmp_path: Path,
    forced: bool,
    removed: str,
    why: str,
) -> None:
    # A prune that removed the evidence would leave a kept chain that holds from
    # its cut: the deletion it covered could never be found again.
    for n in range(4):
        run_on(store.history, n)
    tamper(store, f"DELETE FROM audit WHERE {removed}")
    db = open_new().history
    out = None if forced else tmp_path / "old.jsonl"
    if out is not None:
        export(db, day(3), out)
    with pytest.raises(StateError, match=why):
        prune(db, day(3), export_file=out)
    with pytest.raises(StateError, match=why):
        verify(db)


def test_an_open_intent_and_what_follows_it_are_kept(store: StateStore) -> None:
    db = store.history
    run_on(db, 0)
    (left_open,) = run_on(db, 1, finish=False)
    run_on(db, 2)
    cut = find_cut(db, day(5))
    assert cut.last == left_open - 1
    prune(db, day(5), export_file=None)
    assert [intent.seq for intent in open_intents(db)] == [left_open]
    assert verify(db).first == left_open


def test_not_kept_records_end_after_their_age(store: StateStore) -> None:
    records = NotKeptRecords(store.history, API, ttl=3600)
    with store.history.atomic():
        records.save([NotKept("alice", "full_name", "Alice ", "Alice")])
    assert records.load(["alice"])
    store.history.execute("UPDATE not_kept SET recorded_at = '2020-01-01T00:00:00+00:00'")
    assert records.load(["alice"]) == {}
    assert NotKeptRecords(store.history, API).load(["alice"])  # no age: kept


def test_export_prune_and_verify_through_the_cli(
    store: StateStore, state_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        run_on(store.history, n)
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    state = ["--state-dir", str(state_settings.state_dir)]
    runner = CliRunner()
    before = ["--before", day(2).isoformat()]
    refused = runner.invoke(cli, ["audit", *state, "prune", *before])
    assert refused.exit_code == 1
    assert "--export FILE" in refused.output
    out = tmp_path / "old.jsonl"
    made = runner.invoke(cli, ["audit", *state, "export", *before, "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert "4 events" in made.stdout
    # After a prune the export may be the only copy: a rerun, a typo in the date,
    # replaced it without a word.
    kept = out.read_bytes()
    again = ["audit", *state, "export", "--before", day(0).isoformat(), "--out", str(out)]
    refused = runner.invoke(cli, again)
    assert refused.exit_code == 1
    assert f"{out} exists; pass --force to overwrite it" in refused.output
    assert out.read_bytes() == kept
    assert runner.invoke(cli, [*again, "--force"]).exit_code == 0
    assert out.read_bytes() != kept
    out.write_bytes(kept)
    checked = runner.invoke(cli, ["audit", *state, "verify", "--file", str(out)])
    assert "holds: 4 events" in checked.stdout
    pruned = runner.invoke(cli, ["audit", *state, "prune", *before, "--export", str(out)])
    assert pruned.exit_code == 0, pruned.output
    assert "removed 4 events" in pruned.stdout
    verified = runner.invoke(cli, ["audit", *state, "verify"])
    assert verified.exit_code == 0, verified.output
    # With every event pruned, verify says so; it read "no hashed event yet (0 events
    # from before the chain)", as if nothing had ever been audited.
    everything, rest = ["--before", day(9).isoformat()], tmp_path / "rest.jsonl"
    made = runner.invoke(cli, ["audit", *state, "export", *everything, "--out", str(rest)])
    assert made.exit_code == 0, made.output
    pruned = runner.invoke(cli, ["audit", *state, "prune", *everything, "--export", str(rest)])
    assert pruned.exit_code == 0, pruned.output
    verified = runner.invoke(cli, ["audit", *state, "verify"])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("no event since the prune that cut after event ")


def test_a_prune_of_runs_alone_records_no_cut_and_says_no_start(
    store: StateStore, state_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trial (hist D10): "removed 0 events (to event 0) and 254016 runs …; the kept
    # chain starts after event 0", and a cut row at event 0 with no hash.
    db = store.history
    for n in range(3):
        run_on(db, n)
    first = prune(db, day(3), export_file=None)
    for n in (3, 4):  # runs with no event: all that a second prune removes
        AuditTrail(db, {}, clock=lambda n=n: day(n)).begin_run("suspend")
        db.execute(
            "UPDATE runs SET ended_at = ?, result = 'ok' WHERE ended_at IS NULL", [iso(day(n))]
        )
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    state = ["--state-dir", str(state_settings.state_dir)]
    before = ["--before", day(5).isoformat()]
    pruned = CliRunner().invoke(cli, ["audit", *state, "prune", *before, "--force"])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout == f"removed 0 events and 2 runs before {iso(day(5))}\n"
    assert db.execute("SELECT seq, hash FROM audit_cuts").fetchall() == [(first.last, first.hash)]
    assert [cut.head for cut in verify(db).cuts] == [Head(first.last, first.hash)]


def test_an_export_is_checked_against_a_kept_head(
    store: StateStore, state_settings: Settings, tmp_path: Path
) -> None:
    # `audit verify` sends a pruned kept head to the export that holds it: there
    # it must be checked, not passed over with the export said to hold.
    for n in range(3):
        run_on(store.history, n)
    kept = read_head(store.history)
    run_on(store.history, 3)
    out = tmp_path / "old.jsonl"
    export(store.history, day(3), out)
    assert verify_export(out, kept).last == kept.seq
    runner = CliRunner()
    args = ["audit", "--state-dir", str(state_settings.state_dir), "verify", "--file", str(out)]
    held = runner.invoke(cli, [*args, "--head", str(kept)])
    assert held.exit_code == 0, held.output
    assert f"the kept head, event {kept.seq}, is in the export" in held.stdout
    forged = Head(kept.seq, "0" * 64)
    changed = runner.invoke(cli, [*args, "--head", str(forged)])
    assert changed.exit_code == 1
    assert f"the kept head, event {kept.seq}, is not in the export as it was" in changed.output
    later = Head(kept.seq + 10, "0" * 64)
    outside = runner.invoke(cli, [*args, "--head", str(later)])
    assert outside.exit_code == 1
    assert f"the kept head, event {later.seq}, is not in this export" in outside.output


def test_a_kept_head_the_prune_removed_is_said_pruned_not_rewritten(
    store: StateStore, state_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trial (docs D3): a head kept the day of a routine prune, which the prune then
    # cut at, read "the history up to it was rewritten" (exit 1) ever after.
    for n in range(2):
        run_on(store.history, n)
    earlier = read_head(store.history)
    run_on(store.history, 2)
    kept = read_head(store.history)
    out = tmp_path / "old.jsonl"
    export(store.history, day(9), out)
    cut = prune(store.history, day(9), export_file=out)
    assert cut.last == kept.seq
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    runner = CliRunner()
    state = ["audit", "--state-dir", str(state_settings.state_dir), "verify"]
    at_cut = runner.invoke(cli, [*state, "--head", str(kept)])
    assert at_cut.exit_code == 0, at_cut.output
    assert re.search(
        rf"^the kept head, event {kept.seq}, was pruned on \S+ into {out}: it is the cut,",
        at_cut.stdout,
        re.M,
    )
    # Every cut the chain relies on is named, with the run that made it.
    assert re.search(
        rf"^cut at {kept}\ on \S+: {kept.seq} events removed by `audit prune` run \w{{12}},"
        rf" into {out}$",
        at_cut.stdout,
        re.M,
    )
    # Before the cut the state holds no hash to compare (it passed with any, one that
    # never existed included): not proven, exit 1, and the export proves it or not.
    for head, proven in ((earlier, 0), (Head(earlier.seq, "f" * 64), 1)):
        before = runner.invoke(cli, [*state, "--head", str(head)])
        assert before.exit_code == 1, before.output
        check = f"syncd audit verify --file {out} --head {head}"
        assert before.output.endswith(
            f"syncd: the kept head, event {head.seq}, was pruned on {cut_at(at_cut.stdout)}"
            f" into {out}: the state cannot prove it; `{check}` checks it there\n"
        )
        there = runner.invoke(cli, ["audit", "verify", "--file", str(out), "--head", str(head)])
        assert there.exit_code == proven, there.output
    for forged in (Head(kept.seq, "0" * 64), Head(kept.seq + 5, "0" * 64)):
        rewritten = runner.invoke(cli, [*state, "--head", str(forged)])
        assert rewritten.exit_code == 1
        assert f"the kept head, event {forged.seq}, is not in the audit trail as it was" in (
            rewritten.output
        )


def cut_at(verified: str) -> str:
    (moment,) = re.findall(r"^cut at \S+ on (\S+):", verified, re.M)
    return moment


def test_a_cut_recorded_by_hand_is_shown_as_no_prune_of_syncds(
    store: StateStore, state_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trial (hist D9): a row added to audit_cuts, then the events before it deleted,
    # and verify (even --head) was green without a word. The chain cannot tell it from
    # a prune (the owner may `audit prune --force`): verify shows it for what it is.
    for n in range(3):
        run_on(store.history, n)
    kept = read_head(store.history)
    (hash_of_4,) = store.history.execute("SELECT hash FROM audit WHERE seq = 4").fetchone()
    tamper(
        store,
        "INSERT INTO audit_cuts (run_id, seq, hash, cut_at, before, events, runs)"
        f" VALUES ('fake00000000', 4, '{hash_of_4}', '2026-12-08T01:00:00+00:00',"
        " '2026-12-08T00:57:00+00:00', 4, 0)",
        "DELETE FROM audit WHERE seq <= 4",
    )
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    verified = CliRunner().invoke(
        cli, ["audit", "--state-dir", str(state_settings.state_dir), "verify", "--head", str(kept)]
    )
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.splitlines()[1:] == [
        f"cut at 4:{hash_of_4} on 2026-12-08T01:00:00+00:00: 4 events removed by run"
        " fake00000000, which is no `audit prune` that ended ok, with no export (--force)",
        f"the kept head, event {kept.seq}, is in the chain",
    ]
    # Behind the forged cut, a head that never was in the chain is not passed (exit 0).
    bogus = Head(2, "f" * 64)
    state = ["audit", "--state-dir", str(state_settings.state_dir), "verify"]
    before = CliRunner().invoke(cli, [*state, "--head", str(bogus)])
    assert before.exit_code == 1
    assert before.output.endswith(
        "syncd: the kept head, event 2, was pruned on 2026-12-08T01:00:00+00:00 with no export"
        f" (--force): the state cannot prove it; `syncd audit verify --file EXPORT --head {bogus}`"
        " checks it there\n"
    )


def test_a_prune_keeps_the_runs_that_status_reads(store: StateStore) -> None:
    # The trial (hist D8): after a prune, status said "last success -" and "0 planned"
    # for a held set: the runs it read those from had been pruned.
    db = store.history
    run_on(db, 0)  # the last success
    failed = AuditTrail(db, {}, clock=lambda: day(1))
    failed.begin_run("run")
    failed.end_run(RunResult.HELD, {"users": 1, ActionName.DELETE_EMAIL: 9})
    for n in (2, 3):  # an operator's commands, no converge
        AuditTrail(db, {}, clock=lambda n=n: day(n)).begin_run("suspend")
        db.execute(
            "UPDATE runs SET ended_at = ?, result = 'ok' WHERE ended_at IS NULL", [iso(day(n))]
        )
    prune(db, day(9), export_file=None)
    # A later prune keeps the earlier one's run: its cut names it.
    prune(db, datetime.now(UTC) + timedelta(days=1), export_file=None)
    assert last_successful_run(db) == (iso(day(0)), None)
    assert [run["counts"] for run in recent_runs(db, 10) if run["command"] == "run"] == [
        {"users": 1, ActionName.DELETE_EMAIL: 9}
    ]
    commands = sorted(command for (command,) in db.execute("SELECT command FROM runs"))
    assert commands == ["apply", "audit prune", "run"]
