"""SYNCD_STATE_URL: a directory or a postgresql:// URL, and no secret of it ever shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.settings import redact_url
from tests.security.conftest import run_syncd

CONNINFO = {
    "libpq": "host=127.0.0.1 password=hunter2 dbname=s1",
    "spaced": "dbname = s1 password = hunter2",
    "one-key": "password=hunter2",
    "unknown-key": "secretive=hunter2 db=s1",
}


@pytest.mark.parametrize("conninfo", CONNINFO.values(), ids=CONNINFO)
def test_a_conninfo_is_refused_without_being_shown(tmp_path: Path, conninfo: str):
    # It became a SQLite directory named with the password, and two replicas so
    # configured would each have been active.
    env = {"SYNCD_STATE_URL": conninfo, "SYNCD_STATE_DIR": str(tmp_path / "state")}
    finished = run_syncd("status", env=env, cwd=tmp_path)
    assert finished.returncode == 1
    assert "hunter2" not in finished.stdout + finished.stderr
    assert "a directory or a postgresql:// URL" in finished.stderr
    assert len(finished.stderr.splitlines()) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["password", "sslpassword"])
def test_a_secret_parameter_of_a_postgresql_url_is_refused(tmp_path: Path, key: str):
    url = f"postgresql://syncd@127.0.0.1:1/s1?sslmode=require&{key}=hunter2"
    env = {"SYNCD_STATE_URL": url, "SYNCD_STATE_DIR": str(tmp_path / "state")}
    finished = run_syncd("status", env=env, cwd=tmp_path)
    assert finished.returncode == 1
    assert "hunter2" not in finished.stdout + finished.stderr
    assert "must not hold a password" in finished.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@h/db", "postgresql://u@h/db"),
        ("postgresql://u@h/db?password=hunter2", "postgresql://u@h/db?password=…"),
        (
            "postgres://u@h/db?sslpassword=hunter2&sslmode=verify-full",
            "postgres://u@h/db?sslpassword=…&sslmode=verify-full",
        ),
        ("postgresql://u@h/db?passfile=/etc/pgpass", "postgresql://u@h/db?passfile=/etc/pgpass"),
    ],
    ids=["userinfo", "password", "sslpassword", "passfile"],
)
def test_every_secret_parameter_is_redacted(url: str, shown: str):
    assert redact_url(url) == shown
