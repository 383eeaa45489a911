"""docs/postgresql-roles.md, on a real server: an owner that migrates, a daemon that may only
insert into the audit table and read it; `syncd run` warns when it connects as the owner.

The append-only triggers of the audit table do not bind the role that owns it: an
owner may disable them, or drop the table. The test's database belongs to the
role `syncd` (tests/postgres.py), which creates the schema; the daemon's role is
given the grants the document lists, and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from syncd.state.backend import open_store
from syncd.state.schema import HISTORY
from syncd.state.sqlite_backend import SqliteStore
from tests.postgres import Cluster
from tests.world import World, run_syncd

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgresql-roles.md"


@dataclass
class DaemonRole:
    name: str
    url: str
    password_file: Path


def granted_sql(role: str, database: str) -> str:
    """The grants of the document's ```sql block, for `role` on `database`."""
    (block,) = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    return block.replace("syncd_daemon", role).replace("DATABASE syncd ", f"DATABASE {database} ")


def test_the_documented_grants_name_every_table_of_the_schema(tmp_path: Path):
    # The trial (entry 8): audit_cuts, which `syncd audit verify` reads, had no grant,
    # and verify as the daemon's role was refused. A table added later must be granted too.
    granted = {
        name.strip()
        for target in re.findall(r"\bON\s+(.*?)\s+TO\b", granted_sql("r", "d"), re.S)
        if not target.startswith(("DATABASE ", "SCHEMA "))
        for name in target.split(",")
    }
    with SqliteStore(tmp_path) as store, store.session() as session:  # both hold the same
        tables = {
            name
            for db in (session.history, session.cache)
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    assert granted == tables


@pytest.fixture
def daemon_role(pg_world: World, postgres_cluster: Cluster) -> Iterator[DaemonRole]:
    assert pg_world.database is not None
    name = f"daemon_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    with postgres_cluster.admin() as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    password_file = pg_world.root / "daemon-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with open(fd, "w") as handle:
        handle.write(password + "\n")
    url = pg_world.database.url.replace("syncd@", f"{name}@")
    yield DaemonRole(name, url, password_file)
    postgres_cluster.drop_database(pg_world.database.name)
    with postgres_cluster.admin() as admin:
        admin.execute(f"DROP ROLE IF EXISTS {name}")


def run_once(world: World, **env: str) -> subprocess.CompletedProcess[str]:
    """`syncd run --once` (the daemon), its log as JSON lines."""
    return run_syncd(world, "run", "--once", **env)


def events(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [json.loads(line)["event"] for line in done.stderr.splitlines() if line.startswith("{")]


def test_the_daemon_warns_when_it_owns_the_audit_table(pg_world: World):
    done = run_once(pg_world)
    assert done.returncode == 0, done.stderr
    assert "audit_table_owned" in events(done)
    (warning,) = [json.loads(x) for x in done.stderr.splitlines() if "audit_table_owned" in x]
    assert warning["level"] == "warning"
    assert "docs/postgresql-roles.md" in warning["message"]


def grant_documented(world: World, role: DaemonRole) -> None:
    """The document's grants to `role`, given as the owner (after it made the schema)."""
    assert world.database is not None
    with psycopg.connect(
        world.database.url,
        password=world.database.password_file.read_text().strip(),
        autocommit=True,
    ) as owner:
        owner.execute(granted_sql(role.name, world.database.name))


def test_the_commands_of_another_role_than_the_daemons_name_the_daemon(
    pg_world: World, daemon_role: DaemonRole
):
    # The trial (entry 2): the server hides when another role's session began
    # (backend_start is NULL to all but a superuser or pg_read_all_stats), and every
    # command that names the lock's holders stopped with a traceback.
    assert run_once(pg_world).returncode == 0  # the owner makes the schema
    grant_documented(pg_world, daemon_role)
    as_daemon_role = {
        "SYNCD_STATE_URL": daemon_role.url,
        "SYNCD_STATE_PASSWORD_FILE": str(daemon_role.password_file),
    }
    # An active instance and a standby, both of the owner's role.
    with open_store(pg_world.settings(), "run") as active, open_store(pg_world.settings(), "run"):
        held = active.lock("run")
        status = run_syncd(pg_world, "status", **as_daemon_role)
        apply = run_syncd(pg_world, "apply", "--yes", **as_daemon_role)
        held.release()
    assert status.returncode == 0, status.stderr
    assert re.search(r"^daemon +active: syncd run on .* pid \d+", status.stdout, re.M)
    assert re.search(r"^standby +syncd run on .* pid \d+, waiting$", status.stdout, re.M)
    assert apply.returncode != 0
    assert "Traceback" not in apply.stderr
    assert re.search(r"syncd run on .* holds the state at .* \(apply refused", apply.stderr)


def test_a_daemon_role_of_the_documented_grants_runs_unwarned_and_cannot_rewrite(
    pg_world: World, daemon_role: DaemonRole
):
    # The owner creates the schema (any command that writes: the document says which).
    first = run_once(pg_world)
    assert first.returncode == 0, first.stderr
    grant_documented(pg_world, daemon_role)
    pg_world.desire({"version": 1, "users": {"johnsmith": {"full_name": "John Q. Smith"}}})
    done = run_once(
        pg_world,
        SYNCD_STATE_URL=daemon_role.url,
        SYNCD_STATE_PASSWORD_FILE=str(daemon_role.password_file),
    )
    assert done.returncode == 0, done.stderr
    assert "audit_table_owned" not in events(done)
    assert "cycle_finished" in events(done)
    outcomes = pg_world.query("SELECT \"user\" FROM audit WHERE event = 'outcome'")
    assert {"user": "johnsmith"} in outcomes  # it wrote its audit
    verified = run_syncd(
        pg_world,
        "audit",
        "verify",
        SYNCD_STATE_URL=daemon_role.url,
        SYNCD_STATE_PASSWORD_FILE=str(daemon_role.password_file),
    )
    assert verified.returncode == 0, verified.stderr  # it reads the cuts of audit_cuts
    assert verified.stdout.startswith("the chain holds: ")
    with psycopg.connect(
        daemon_role.url,
        password=daemon_role.password_file.read_text().strip(),
        autocommit=True,
    ) as daemon:
        for attempt in (
            "ALTER TABLE audit DISABLE TRIGGER audit_no_update",
            "DELETE FROM audit",
            "UPDATE audit SET result = 'ok'",
            "TRUNCATE audit",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                daemon.execute(attempt)


def test_a_role_that_may_not_migrate_is_told_the_schema_is_behind_and_what_to_do(
    pg_world: World, daemon_role: DaemonRole
):
    # A trial: the GitOps reader's plan, and the daemon after an upgrade, stopped on a
    # raw "permission denied for schema public … CREATE TABLE IF NOT EXISTS schema_migrations".
    assert run_once(pg_world).returncode == 0  # the owner makes the schema
    grant_documented(pg_world, daemon_role)
    behind = HISTORY[-1].name  # as if made by the syncd before it
    deleted = pg_world.query(
        "DELETE FROM schema_migrations WHERE name = ? RETURNING name", (behind,)
    )
    assert deleted == [{"name": behind}]
    as_daemon_role = {
        "SYNCD_STATE_URL": daemon_role.url,
        "SYNCD_STATE_PASSWORD_FILE": str(daemon_role.password_file),
    }
    refused = run_syncd(pg_world, "plan", **as_daemon_role)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"syncd: state {daemon_role.url}: its schema is behind this syncd (it lacks migration"
        f" {behind}), and this role may not migrate it: run this version's `syncd plan` as"
        " the owner role first (docs/postgresql-roles.md, Upgrades): permission denied for"
        " schema public "  # the server's cause, last
    )
    assert refused.stderr.count("\n") == 1
    assert run_syncd(pg_world, "plan").returncode == 0  # as the message says: the owner
    assert run_syncd(pg_world, "plan", **as_daemon_role).returncode == 0


def test_a_prune_by_the_daemons_role_is_refused_in_words_and_leaves_no_run(
    pg_world: World, daemon_role: DaemonRole
):
    # The trial (hist D6): the server's bare "permission denied for table audit_cuts",
    # and an `audit prune` run left open, which status showed as interrupted forever.
    assert run_once(pg_world).returncode == 0  # the owner makes the schema
    grant_documented(pg_world, daemon_role)
    pg_world.desire({"version": 1, "users": {"johnsmith": {"full_name": "John Q. Smith"}}})
    assert run_once(pg_world).returncode == 0  # events to prune
    refused = run_syncd(
        pg_world,
        "audit",
        "prune",
        "--before",
        "2999-01-01",  # every event goes
        "--force",
        SYNCD_STATE_URL=daemon_role.url,
        SYNCD_STATE_PASSWORD_FILE=str(daemon_role.password_file),
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"syncd: state {daemon_role.url}: this role may not prune the audit trail: run `syncd"
        " audit prune` as the role that owns the tables (docs/postgresql-roles.md); nothing"
        " was pruned: permission denied for table audit_cuts"
    )
    assert refused.stderr.count("\n") == 1
    assert pg_world.query("SELECT id FROM runs WHERE command = 'audit prune'") == []
    pruned = run_syncd(
        pg_world, "audit", "prune", "--before", "2999-01-01", "--force"
    )  # the owner
    assert pruned.returncode == 0, pruned.stderr
