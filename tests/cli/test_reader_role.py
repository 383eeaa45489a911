"""The daemon's PostgreSQL state read by a role of docs/postgresql-roles.md, "Reading only"
(the GitOps workflow's), while the daemon holds it.

`syncd status` reads it. `syncd plan` cannot plan against it: a plan takes the state's
lock where hosts share the state, which the daemon holds for its life, and writes the
live cache, which that role may not; deploy/gitops-workflow.example.yml and
docs/operations.md ("A GitOps workflow") say so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from syncd.state.backend import open_store
from tests.postgres import Cluster
from tests.world import World

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgresql-roles.md"


@dataclass
class Reader:
    url: str
    password_file: Path

    def env(self) -> dict[str, str]:
        return {"SYNCD_STATE_URL": self.url, "SYNCD_STATE_PASSWORD_FILE": str(self.password_file)}


@pytest.fixture
def reader(pg_world: World, postgres_cluster: Cluster) -> Iterator[Reader]:
    """A role given the document's "Reading only" grants, once the daemon made the schema."""
    assert pg_world.database is not None
    pg_world.apply()  # the daemon's state, with its schema and a run
    name, password = f"reader_{secrets.token_hex(4)}", secrets.token_hex(16)
    reading_only = DOC.read_text().split("## Reading only", 1)[1]
    (grants,) = re.findall(r"```\n(.*?)```", reading_only, re.S)[:1]
    with postgres_cluster.admin() as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'".encode())
    database = pg_world.database
    with psycopg.connect(
        database.url, password=database.password_file.read_text().strip(), autocommit=True
    ) as owner:
        owner.execute(
            grants.replace("syncd_reader", name)
            .replace("DATABASE syncd ", f"DATABASE {database.name} ")
            .encode()
        )
    password_file = pg_world.root / "reader-password"
    descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with open(descriptor, "w") as handle:
        handle.write(password + "\n")
    yield Reader(database.url.replace("syncd@", f"{name}@"), password_file)
    postgres_cluster.drop_database(database.name)
    with postgres_cluster.admin() as admin:
        admin.execute(f"DROP ROLE IF EXISTS {name}".encode())


def as_reader(world: World, reader: Reader, *args: str) -> Result:
    env = {"SYNCD_API_URL": world.sandbox.url, "SYNCD_CREDENTIALS_DIR": str(world.credentials_dir)}
    return CliRunner().invoke(cli, list(args), env={**env, **reader.env()})


def test_status_names_the_daemon_it_cannot_see_the_start_of(pg_world: World, reader: Reader):
    # The server shows another role's session without its backend_start: the holder
    # was then an AttributeError, and the workflow's report "could not read" the state.
    store = open_store(pg_world.settings(), "run")
    try:
        with store.lock("run"):
            shown = as_reader(pg_world, reader, "status", "--output", "json")
    finally:
        store.close()
    assert shown.exit_code == 0, (shown.output, shown.exception)
    holder = json.loads(shown.stdout)["daemon"]["active"]
    assert holder.startswith("syncd run on "), holder


def test_a_plan_cannot_use_the_daemons_state_while_it_runs(pg_world: World, reader: Reader):
    desired = ["-f", str(pg_world.desired_file)]
    store = open_store(pg_world.settings(), "run")
    try:
        with store.lock("run"):
            refused = as_reader(pg_world, reader, "plan", *desired)
    finally:
        store.close()
    assert refused.exit_code == 1, (refused.output, refused.exception)
    assert "(plan refused)" in refused.stderr
    # Nor once it stopped: reading an account again writes the cache, which it may not.
    denied = as_reader(pg_world, reader, "plan", "--refresh", *desired)
    assert denied.exit_code == 1
    assert "permission denied for table live_accounts" in denied.stderr
