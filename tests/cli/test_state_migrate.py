"""`syncd state migrate --to postgresql://…`: the history moves whole, the cache does not."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.postgres import Database
from tests.world import World


def migrate(world: World, database: Database) -> Result:
    env = {"SYNCD_STATE_PASSWORD_FILE": str(database.password_file)}
    return CliRunner(env=env).invoke(
        cli, ["state", "migrate", "--state-dir", str(world.state_dir), "--to", database.url]
    )


def audit(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = CliRunner(env=env).invoke(cli, ["audit", "--output", "json", *args])
    assert done.exit_code == 0, done.output
    events: list[dict[str, object]] = json.loads(done.stdout)
    return events


def test_the_history_moves_whole_and_the_counts_are_checked(world: World, postgres_db: Database):
    applied = CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"])
    assert applied.exit_code == 0, applied.output
    before = audit({}, "--state-dir", str(world.state_dir))

    moved = migrate(world, postgres_db)
    assert moved.exit_code == 0, moved.output
    assert "Copied 1 run, 6 audit events and 0 not-kept records" in moved.output
    assert "the counts match on both sides" in moved.output
    assert postgres_db.url in moved.output

    on_postgres = World(world.sandbox, world.root, postgres_db)
    assert audit(on_postgres.state_env()) == before
    # The ownership ledger is history: it moves too (the address apply added).
    ledger = "SELECT api, username, email, how FROM email_ownership ORDER BY email"
    assert on_postgres.query(ledger) == world.query(ledger)
    assert [row["email"] for row in world.query(ledger)] == ["jane.doe+other@example.com"]
    # The chain moved with its head, and goes on there.
    head = CliRunner().invoke(cli, ["audit", "--state-dir", str(world.state_dir), "head"])
    verified = CliRunner(env=on_postgres.state_env()).invoke(
        cli, ["audit", "verify", "--head", head.stdout.strip()]
    )
    assert verified.exit_code == 0, verified.output
    assert "the chain holds: 6 events" in verified.stdout
    # The cache stayed behind: the first plan reads the accounts, and finds nothing to do.
    gets = world.gets()
    plan = CliRunner(env=on_postgres.state_env()).invoke(
        cli, ["plan", *world.cli_args(), "--detailed-exitcode"]
    )
    assert plan.exit_code == 0, plan.output
    assert world.gets() > gets

    on_postgres.desire({"version": 1, "users": {"johnsmith": {"full_name": "Johnny"}}})
    again = CliRunner(env=on_postgres.state_env()).invoke(
        cli, ["apply", *world.cli_args(), "--yes"]
    )
    assert again.exit_code == 0, again.output
    seqs = [row["seq"] for row in on_postgres.query("SELECT seq FROM audit ORDER BY seq")]
    assert seqs == list(range(1, 9))  # numbered after the copied events


def test_a_pruned_history_moves_with_its_cut(world: World, postgres_db: Database, tmp_path: Path):
    # The cut stayed behind: the next `audit verify` on the target called the prune a
    # removal of events.
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    world.desire({"version": 1, "users": {"johnsmith": {"full_name": "Johnny"}}})
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    (first,) = world.query("SELECT started_at FROM runs ORDER BY started_at LIMIT 1 OFFSET 1")
    state, before = ["--state-dir", str(world.state_dir)], ["--before", first["started_at"]]
    out = str(tmp_path / "first.jsonl")
    for step in (["export", "--out", out], ["prune", "--export", out]):
        done = CliRunner().invoke(cli, ["audit", *state, step[0], *before, *step[1:]])
        assert done.exit_code == 0, done.output

    assert migrate(world, postgres_db).exit_code == 0
    on_postgres = World(world.sandbox, world.root, postgres_db)
    cuts = "SELECT run_id, seq, hash, events FROM audit_cuts"
    assert on_postgres.query(cuts) == world.query(cuts) != []
    verified = CliRunner(env=on_postgres.state_env()).invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "the chain holds: 2 events, 7 to 8" in verified.stdout


def test_a_target_with_a_history_is_refused(world: World, postgres_db: Database):
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    assert migrate(world, postgres_db).exit_code == 0
    twice = migrate(world, postgres_db)
    assert twice.exit_code == 1
    assert "already holds a history (1 run, 6 audit events): refused" in twice.output
    on_postgres = World(world.sandbox, world.root, postgres_db)
    assert len(on_postgres.query("SELECT seq FROM audit")) == 6


def test_nothing_is_copied_while_syncd_holds_the_source(world: World, postgres_db: Database):
    from syncd.state.lock import acquire

    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    with acquire(world.state_dir):
        refused = migrate(world, postgres_db)
    assert refused.exit_code == 1
    assert "holds" in refused.output
    on_postgres = World(world.sandbox, world.root, postgres_db)
    assert on_postgres.query("SELECT COUNT(*) AS n FROM runs") == [{"n": 0}]


def test_a_target_with_a_password_is_refused_as_the_option_given(tmp_path: Path):
    # The trial (entry 12): it said `state_url (--state-url)`, an option migrate lacks.
    url = "postgresql://someone:secretpw@127.0.0.1:5432/syncd"
    done = CliRunner().invoke(cli, ["state", "migrate", "--state-dir", str(tmp_path), "--to", url])
    assert done.exit_code == 1
    assert "Invalid value for '--to': must not hold a password" in done.output
    assert "--state-url" not in done.output
    assert "secretpw" not in done.output


def test_a_target_that_is_a_regular_file_is_said_to_be_no_directory(world: World):
    # The trial (hist D10): "cannot use the directory …: File exists".
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    target = world.root / "afile"
    target.write_text("")
    migrate = ["state", "migrate", "--state-dir", str(world.state_dir), "--to", str(target)]
    done = CliRunner().invoke(cli, migrate)
    assert done.exit_code == 1
    assert done.stderr == f"syncd: {target} is not a directory\n"
