"""What more than one CLI test module uses."""

from __future__ import annotations

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
from tests.postgres import Cluster
from tests.world import World


def plan(world: World, *args: str, api_url: str | None = None) -> Result:
    """`syncd plan --detailed-exitcode` on the world, against `api_url` if given."""
    arguments = world.cli_args()
    if api_url is not None:
        arguments[arguments.index("--api-url") + 1] = api_url
    return CliRunner().invoke(
        cli, ["plan", *arguments, "--detailed-exitcode", *args], catch_exceptions=False
    )


ROLES_DOC = Path(__file__).resolve().parents[2] / "docs" / "postgresql-roles.md"


@dataclass
class Reader:
    """A role of docs/postgresql-roles.md, "Reading only": a CI job's."""

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
    reading_only = ROLES_DOC.read_text().split("## Reading only", 1)[1]
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
