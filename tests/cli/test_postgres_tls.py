"""The PostgreSQL of deploy/kubernetes/: TLS only, checked with verify-full and the CA mounted.

The manifests said `sslmode=verify-full` with no CA: libpq has no default one,
so every connection was refused. With `sslrootcert=` naming the CA, syncd
connects; without it, the refusal is one line. The cluster is the one of
tests/postgres.py with `tls`: a certificate for localhost from a throwaway CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.postgres import Cluster, Database, running_cluster
from tests.world import World, make_world


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[Cluster]:
    try:
        with running_cluster(tls=True) as cluster:
            yield cluster
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture
def tls_world(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_cluster: Cluster
) -> Iterator[World]:
    made = tls_cluster.new_database()
    database = Database(tls_cluster.tls_url(made.name), made.password_file, made.name)
    yield make_world(sandbox, tmp_path, monkeypatch, database)
    tls_cluster.drop_database(made.name)


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner(env=world.state_env()).invoke(
        cli, [command, *world.cli_args(), *rest], catch_exceptions=False
    )


def test_the_server_takes_no_connection_without_tls(tls_world: World, tls_cluster: Cluster):
    # Else the tests below would pass over plain TCP, and prove nothing of verify-full.
    assert tls_world.database is not None
    password = tls_cluster.password_file.read_text().strip()
    plain = tls_world.database.url.split("?")[0] + "?sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain, password=password, connect_timeout=10).close()


def test_syncd_connects_with_verify_full_and_the_mounted_ca(tls_world: World):
    applied = run(tls_world, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert set(tls_world.emails_of("janedoe")) == {
        "jane.doe@example.com",
        "jane.doe+other@example.com",
    }
    (last,) = tls_world.query("SELECT command, result FROM runs")
    assert last == {"command": "apply", "result": "ok"}
    assert run(tls_world, "plan").exit_code == 0


def test_verify_full_without_the_ca_is_one_line_naming_the_database(
    tls_world: World, tmp_path: Path
):
    assert tls_world.database is not None
    without_ca = tls_world.database.url.split("&sslrootcert=")[0]
    # libpq looks for ~/.postgresql/root.crt: an empty home has none.
    result = CliRunner(env={**tls_world.state_env(), "HOME": str(tmp_path)}).invoke(
        cli,
        ["plan", *tls_world.cli_args()],
        catch_exceptions=False,
        env={"SYNCD_STATE_URL": without_ca},
    )
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("syncd: state database postgresql://syncd@localhost:")
    assert "root certificate file" in result.stderr
    assert "Traceback" not in result.output
