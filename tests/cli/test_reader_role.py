"""The daemon's PostgreSQL state read by a role of docs/postgresql-roles.md, "Reading only"
(the GitOps workflow's), while the daemon holds it.

`syncd status` reads it, and so does `syncd plan`: a plan takes no lock and, where hosts
share the state, writes nothing, so a pull request's check plans with the daemon's
ownership ledger.
"""

from __future__ import annotations

import json
import re

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from syncd.state.backend import open_store
from tests.cli.conftest import Reader
from tests.world import World


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


PRIMARY, OLD = "jane.doe@example.com", "old@example.com"  # janedoe's (tests/world.py)


def test_a_plan_beside_the_daemon_reads_its_ledger_and_writes_nothing(
    pg_world: World, reader: Reader
):
    # The trial: the plan took the lock, which the daemon holds for its life, and wrote
    # the cache, which this role may not. The workflow planned with a fresh state, so
    # the deletion of an address syncd owns was not shown before the merge.
    owned = {"emails_mode": "owned"}
    pg_world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY, OLD]}}})
    pg_world.apply()  # the daemon's ledger: syncd owns OLD
    pg_world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY]}}})
    cached = "SELECT * FROM live_accounts ORDER BY api, username"
    before, writes = pg_world.query(cached), pg_world.writes()
    store = open_store(pg_world.settings(), "run")
    try:
        with store.lock("run"):
            plan = as_reader(
                pg_world,
                reader,
                "plan",
                "--refresh",
                "--detailed-exitcode",
                "-f",
                str(pg_world.desired_file),
            )
    finally:
        store.close()
    assert plan.exit_code == 2, (plan.output, plan.exception)  # changes pending, all shown
    assert re.search(rf"^ +- +{re.escape(OLD)}$", plan.stdout, re.M), plan.stdout
    assert "ownership_unknown" not in plan.stderr
    assert pg_world.query(cached) == before
    assert pg_world.writes() == writes
